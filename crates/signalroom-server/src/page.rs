//! A small page at `/` that says what this server is and where its endpoints are.

use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::hub::Hub;

/// The page's routes.
pub(crate) fn router() -> Router<Arc<Hub>> {
    Router::new().route("/", get(index))
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><meta charset=utf-8><title>signalroom</title>",
        "<h1>signalroom</h1><p>An OpenVidu 2.32-compatible signalling server.</p>",
        "<ul><li>WebSocket JSON-RPC: <code>/openvidu</code></li>",
        "<li>REST API: <code>/openvidu/api</code> (HTTP Basic, user <code>OPENVIDUAPP</code>)</li></ul>"
    ))
}
