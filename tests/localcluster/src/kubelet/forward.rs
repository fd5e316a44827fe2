//! A TCP forwarder: how pods reach the API server, which listens on the host's 127.0.0.1 with a
//! certificate for 127.0.0.1 only (host side: gateway -> 127.0.0.1; pod side: the pod's
//! 127.0.0.1 -> gateway, run in the pod's network namespace as its sandbox process).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

pub async fn serve(listener: TcpListener, to: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            match TcpStream::connect(to).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::debug!(%to, error = %e, "forward target unreachable"),
            }
        });
    }
}
