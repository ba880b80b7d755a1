//! The built-in pages, compiled into the binary: the lobby page
//! (`index.html`, the `lobby.js` module with the WHIP/WHEP/signal logic,
//! `mix.js` for the owner's program mix, `app.js` for the UI wiring), the
//! plain viewer (`view.html` + `view.js`) and the shared `style.css`. No
//! build step: the files in `web/` are served as they are.

use actix_web::HttpResponse;

const INDEX_HTML: &str = include_str!("web/index.html");
const LOBBY_JS: &str = include_str!("web/lobby.js");
const APP_JS: &str = include_str!("web/app.js");
const MIX_JS: &str = include_str!("web/mix.js");
const VIEW_HTML: &str = include_str!("web/view.html");
const VIEW_JS: &str = include_str!("web/view.js");
const STYLE_CSS: &str = include_str!("web/style.css");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// A static asset: revalidated on every load (a new build replaces it),
/// never sniffed as another type.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// `GET /` and `GET /index.html`.
pub(super) async fn index() -> HttpResponse {
    asset(HTML, INDEX_HTML)
}

/// `GET /lobby.js`.
pub(super) async fn lobby_js() -> HttpResponse {
    asset(JS, LOBBY_JS)
}

/// `GET /app.js`.
pub(super) async fn app_js() -> HttpResponse {
    asset(JS, APP_JS)
}

/// `GET /mix.js`.
pub(super) async fn mix_js() -> HttpResponse {
    asset(JS, MIX_JS)
}

/// `GET /view.html`.
pub(super) async fn view_html() -> HttpResponse {
    asset(HTML, VIEW_HTML)
}

/// `GET /view.js`.
pub(super) async fn view_js() -> HttpResponse {
    asset(JS, VIEW_JS)
}

/// `GET /style.css`.
pub(super) async fn style_css() -> HttpResponse {
    asset(CSS, STYLE_CSS)
}
