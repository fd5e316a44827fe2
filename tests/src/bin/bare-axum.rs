//! The ceiling for the API benchmark: a bare axum server whose one endpoint parses a JSON body and
//! answers JSON, with nothing else (no auth, cache, database or metrics).
//!
//! `bare-axum ADDR`

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = Router::new().route(
        "/echo",
        post(|Json(body): Json<Value>| async move {
            Json(json!({"ok": true, "fields": body.as_object().map_or(0, |o| o.len())}))
        }),
    );
    axum::serve(listener, app).await?;
    Ok(())
}
