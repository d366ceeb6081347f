//! The chat page at `/`: a person picks a session and a name and chats with everyone in it
//! (browsers and bots alike). It runs the real, unmodified openvidu-browser 2.32.2, embedded in
//! the binary with its licence, so it is also a live demonstration of compatibility.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::config::DEFAULT_SECRET;
use crate::hub::Hub;

const INDEX: &str = include_str!("../assets/chat/index.html");
const SCRIPT: &str = include_str!("../assets/chat/chat.js");
/// The signal history module for openvidu-browser pages (an ES module).
const HISTORY_MODULE: &str = include_str!("../assets/history/signalroom-history.js");
/// `static/js/openvidu-browser-2.32.2.min.js` of the npm package `openvidu-browser@2.32.2`.
const OPENVIDU_BROWSER: &str = include_str!("../assets/openvidu-browser/openvidu-browser-2.32.2.min.js");
const OPENVIDU_BROWSER_LICENSE: &str = include_str!("../assets/openvidu-browser/LICENSE");
/// signalroom's requests and streams for openvidu-browser, an ES module, and its types.
const EXTRAS: &str = include_str!("../assets/js/signalroom.js");
const EXTRAS_TYPES: &str = include_str!("../assets/js/signalroom.d.ts");

/// The page's routes.
pub(crate) fn router() -> Router<Arc<Hub>> {
    Router::new()
        .route("/", get(|| async { with_type("text/html; charset=utf-8", INDEX) }))
        .route("/chat.js", get(|| async { with_type(JAVASCRIPT, SCRIPT) }))
        .route("/signalroom-history.js", get(|| async { with_type(JAVASCRIPT, HISTORY_MODULE) }))
        .route("/chat/config.json", get(config))
        .route("/openvidu-browser-2.32.2.min.js", get(|| async { with_type(JAVASCRIPT, OPENVIDU_BROWSER) }))
        .route("/openvidu-browser/LICENSE", get(|| async { with_type(TEXT, OPENVIDU_BROWSER_LICENSE) }))
        .route("/signalroom.js", get(|| async { with_type(JAVASCRIPT, EXTRAS) }))
        .route("/signalroom.d.ts", get(|| async { with_type(TYPESCRIPT, EXTRAS_TYPES) }))
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const TYPESCRIPT: &str = "application/typescript; charset=utf-8";

fn with_type(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

/// What the page may know: the development secret, when the server runs with it (anybody knows
/// it, and the server warns about it at start), so that the page works at once in development.
async fn config(State(hub): State<Arc<Hub>>) -> Json<serde_json::Value> {
    if hub.config.secret == DEFAULT_SECRET {
        Json(json!({ "developmentSecret": DEFAULT_SECRET }))
    } else {
        Json(json!({}))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_loads_the_embedded_bundle_and_its_script() {
        assert!(super::INDEX.contains(r#"<script src="/openvidu-browser-2.32.2.min.js"></script>"#));
        assert!(super::INDEX.contains(r#"<script type="module" src="/chat.js"></script>"#));
        assert!(super::SCRIPT.contains("from '/signalroom-history.js'"));
        assert!(super::HISTORY_MODULE.contains("export function withHistory"));
        assert!(super::OPENVIDU_BROWSER.len() > 300_000);
        assert!(super::OPENVIDU_BROWSER_LICENSE.contains("Apache License"));
        assert!(super::EXTRAS.contains("export function attach(session"));
        assert!(super::EXTRAS_TYPES.contains("export function attach(session: Session"));
    }
}
