//! A tiny HTTP server for the local cluster's tests (image `localcluster.test/echo`): it answers
//! who and where it is, and can be told to fail its health check, exit, allocate memory or touch
//! files (and stat them), so that tests see what the kubelet does about it.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

type Params = Query<HashMap<String, String>>;

#[derive(Default)]
struct App {
    unhealthy: AtomicBool,
    hog: Mutex<Vec<Vec<u8>>>,
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Allocates and touches `mb` MiB so the pages count against the cgroup.
fn allocate(app: &App, mb: u64) {
    for _ in 0..mb {
        let chunk = vec![1u8; 1 << 20];
        if let Ok(mut hog) = app.hog.lock() {
            hog.push(chunk);
        }
    }
}

fn param<'a>(q: &'a Params, key: &str) -> Result<&'a str, (StatusCode, String)> {
    q.get(key).map(String::as_str).ok_or((StatusCode::BAD_REQUEST, format!("missing query parameter {key}")))
}

fn failed(e: std::io::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn identity() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            l.starts_with("Uid:")
                || l.starts_with("Gid:")
                || l.starts_with("Groups:")
                || l.starts_with("CapEff:")
                || l.starts_with("NoNewPrivs:")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn fetch(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or(response))
}

async fn exit(q: Params) -> String {
    let code: i32 = q.get("code").and_then(|c| c.parse().ok()).unwrap_or(0);
    println!("exiting with {code} as asked");
    std::process::exit(code)
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { format!("{}\n", std::env::var("HOSTNAME").unwrap_or_default()) }))
        .route(
            "/healthz",
            get(|State(app): State<Arc<App>>| async move {
                if app.unhealthy.load(Ordering::Relaxed) {
                    (StatusCode::INTERNAL_SERVER_ERROR, "unhealthy")
                } else {
                    (StatusCode::OK, "ok")
                }
            }),
        )
        .route(
            "/fail",
            get(|State(app): State<Arc<App>>| async move {
                app.unhealthy.store(true, Ordering::Relaxed);
                "health now fails"
            }),
        )
        .route("/exit", get(exit))
        .route(
            "/alloc",
            get(|State(app): State<Arc<App>>, q: Params| async move {
                let mb = param(&q, "mb")?.parse::<u64>().map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
                allocate(&app, mb);
                Ok::<_, (StatusCode, String)>(format!("allocated {mb} MiB"))
            }),
        )
        .route(
            "/write",
            get(|q: Params| async move {
                std::fs::write(param(&q, "path")?, "written\n").map(|_| "ok".to_owned()).map_err(failed)
            }),
        )
        .route("/read", get(|q: Params| async move { std::fs::read_to_string(param(&q, "path")?).map_err(failed) }))
        .route(
            "/stat",
            get(|q: Params| async move {
                use std::os::unix::fs::MetadataExt as _;
                let m = std::fs::metadata(param(&q, "path")?).map_err(failed)?;
                Ok::<_, (StatusCode, String)>(format!("mode={:04o} uid={} gid={}", m.mode() & 0o7777, m.uid(), m.gid()))
            }),
        )
        .route("/env", get(|| async { std::env::vars().map(|(k, v)| format!("{k}={v}\n")).collect::<String>() }))
        .route("/args", get(|| async { std::env::args().collect::<Vec<_>>().join("\n") }))
        .route("/id", get(|| async { identity() }))
        .route(
            "/fetch",
            get(|q: Params| async move {
                fetch(param(&q, "addr")?, q.get("path").map(String::as_str).unwrap_or("/")).map_err(failed)
            }),
        )
        .route(
            "/resolve",
            get(|q: Params| async move {
                use std::net::ToSocketAddrs as _;
                let name = param(&q, "name")?;
                let addr = (name, 80)
                    .to_socket_addrs()
                    .map_err(failed)?
                    .next()
                    .ok_or((StatusCode::NOT_FOUND, name.to_owned()))?;
                Ok::<_, (StatusCode, String)>(addr.ip().to_string())
            }),
        )
        .with_state(app)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = Arc::new(App::default());
    if let Some(mb) = env_num("ALLOC_MB") {
        allocate(&app, mb);
    }
    if let Some(ms) = env_num("EXIT_AFTER_MS") {
        let code = env_num("EXIT_CODE").unwrap_or(0) as i32;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            println!("exiting with {code} as told");
            std::process::exit(code);
        });
    }
    let port = env_num("PORT").unwrap_or(8080) as u16;
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!("lc-echo listening on {port} as {}", identity().replace('\n', ", "));
    let ignore_term = std::env::var("IGNORE_SIGTERM").is_ok_and(|v| v == "1");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let server = tokio::spawn(std::future::IntoFuture::into_future(axum::serve(listener, router(app))));
    loop {
        term.recv().await;
        println!("SIGTERM received");
        if !ignore_term {
            server.abort();
            return Ok(());
        }
    }
}
