//! Operations: health, readiness, metrics.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::state::AppState;

/// `GET /health`: 200 while serving.
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /ready`: 200 when the media workers run, else 503; the body lists
/// each subsystem's state.
pub(super) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let media = state.media.is_available();
    let shutting_down = state.is_shutting_down();
    let body = json!({
        "http": if shutting_down { "stopping" } else { "ok" },
        "store": "ok",
        "media": if media { "ok" } else { "unavailable" },
        "live": if state.live.is_available() { "ok" } else { "unavailable" },
    });
    if media && !shutting_down {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
