//! The practical HTTP limit: an axum endpoint on the check path that reads the request and
//! answers `{"locked":false}` without any work. Same runtime, same framework as Deadbolt.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::routing::post;
use axum::Router;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let app = Router::new().route(
        "/nl3/api/v1/accountProtectionCheck",
        post(|_body: Bytes| async {
            ([(CONTENT_TYPE, "application/json")], r#"{"locked":false}"#)
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("{{\"listening\":\"{}\"}}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
