//! The built-in web page, compiled into the binary.

use actix_web::HttpResponse;

const INDEX_HTML: &str = include_str!("web/index.html");

/// `GET /`.
pub(super) async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(INDEX_HTML)
}
