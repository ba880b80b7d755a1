//! The HTTP surface: one route table, thin handlers, one error type.
//!
//! Handler shape: extract and validate (credentials, content type, size,
//! SDP sanity) -> one message to an actor (or one store call) -> build the
//! response. Middleware order, outermost first: request metrics, CORS, the
//! per-IP rate limit (so 429s are counted and carry CORS headers).

pub mod body;
pub mod cookie;
pub mod cors;
pub mod credentials;
pub mod error;
mod live;
mod ops;
pub mod rate_limit;
pub mod request_metrics;
pub mod state;
mod streams;
mod trickle;
mod viewer;
mod web_page;
mod whep;
mod whip;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::web::{self, ServiceConfig};
use actix_web::{App, HttpRequest, HttpResponse};

use error::ApiError;

/// A valid space or stream id: `^[A-Za-z0-9._-]{1,64}$`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `Allow` of the lobby endpoints and resources.
const WHIP_ENDPOINT_ALLOW: &str = "POST, DELETE, GET, OPTIONS";
const WHIP_RESOURCE_ALLOW: &str = "PATCH, DELETE, GET, OPTIONS";
const WHEP_ENDPOINT_ALLOW: &str = "POST, PATCH, DELETE, GET, HEAD, OPTIONS";
const WHEP_RESOURCE_ALLOW: &str = "PATCH, DELETE, GET, HEAD, OPTIONS";
const LIVE_ALLOW: &str = "POST, GET, DELETE";
const STREAM_ALLOW: &str = "PUT, GET, DELETE";

fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}

/// `OPTIONS` on a WHIP or WHEP endpoint (RFC 9725): what POST takes; never ICE servers.
async fn options_endpoint() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Accept-Post", body::SDP))
        .finish()
}

/// `OPTIONS` on a WHIP or WHEP resource: what PATCH takes.
async fn options_resource() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Accept-Patch", format!("{}, {}", body::SDP, body::SDPFRAG)))
        .finish()
}

async fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

async fn not_found(_req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route"))
}

/// Mounts every route of API.md. `with_metrics` also serves `/metrics`
/// (false when `metrics.port` moves it to its own listener).
pub fn configure(cfg: &mut ServiceConfig, with_metrics: bool) {
    cfg.route("/health", web::get().to(ops::health))
        .route("/ready", web::get().to(ops::ready));
    if with_metrics {
        cfg.route("/metrics", web::get().to(ops::metrics));
    }
    cfg.route("/", web::get().to(web_page::index))
        .route("/index.html", web::get().to(web_page::index))
        .route("/lobby.js", web::get().to(web_page::lobby_js))
        .route("/app.js", web::get().to(web_page::app_js))
        .route("/mix.js", web::get().to(web_page::mix_js))
        .route("/view.html", web::get().to(web_page::view_html))
        .route("/view.js", web::get().to(web_page::view_js))
        .route("/style.css", web::get().to(web_page::style_css))
        .route("/space/{space}/streams", web::get().to(streams::list))
        .service(
            web::resource("/space/{space}/stream/{stream}")
                .route(web::put().to(streams::put))
                .route(web::get().to(streams::get))
                .route(web::delete().to(streams::delete))
                .default_service(not_allowed(STREAM_ALLOW)),
        )
        .service(
            web::resource("/space/{space}/stream/{stream}/whip")
                .route(web::post().to(whip::create))
                .route(web::delete().to(whip::delete_alias))
                .route(web::get().to(no_content))
                .route(web::method(actix_web::http::Method::OPTIONS).to(options_endpoint))
                .default_service(not_allowed(WHIP_ENDPOINT_ALLOW)),
        )
        .service(
            web::resource("/space/{space}/stream/{stream}/whip/{session}")
                .route(web::patch().to(whip::patch_resource))
                .route(web::delete().to(whip::delete_resource))
                .route(web::get().to(no_content))
                .route(web::method(actix_web::http::Method::OPTIONS).to(options_resource))
                .default_service(not_allowed(WHIP_RESOURCE_ALLOW)),
        )
        .service(
            web::resource("/space/{space}/stream/{stream}/whep")
                .route(web::post().to(whep::create))
                .route(web::patch().to(whep::patch_alias))
                .route(web::delete().to(whep::delete_alias))
                .route(web::get().to(no_content))
                .route(web::head().to(whep::head))
                .route(web::method(actix_web::http::Method::OPTIONS).to(options_endpoint))
                .default_service(not_allowed(WHEP_ENDPOINT_ALLOW)),
        )
        .service(
            web::resource("/space/{space}/stream/{stream}/whep/{whep}")
                .route(web::patch().to(whep::patch_resource))
                .route(web::delete().to(whep::delete_resource))
                .route(web::get().to(no_content))
                .route(web::head().to(whep::head))
                .route(web::method(actix_web::http::Method::OPTIONS).to(options_resource))
                .default_service(not_allowed(WHEP_RESOURCE_ALLOW)),
        );
    cfg.service(
        web::resource("/space/{space}/stream/{stream}/live")
            .route(web::post().to(live::start))
            .route(web::get().to(live::alias))
            .route(web::delete().to(live::alias))
            .default_service(not_allowed(LIVE_ALLOW)),
    )
    .service(
        web::resource("/space/{space}/stream/{stream}/live/start")
            .route(web::post().to(live::start))
            .default_service(not_allowed("POST")),
    )
    .service(
        web::resource("/space/{space}/stream/{stream}/live/{live}")
            .route(web::get().to(live::resource))
            .route(web::delete().to(live::resource))
            .default_service(not_allowed("GET, DELETE")),
    )
    .default_service(web::to(not_found));
}

/// The whole application: state, middleware and routes. `with_metrics`
/// serves `/metrics` here (false when `metrics.port` gives it a listener).
pub fn app(
    state: state::AppState,
    limiter: rate_limit::IpRateLimiter,
    with_metrics: bool,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(state))
        .app_data(web::Data::new(limiter))
        .wrap(from_fn(rate_limit::rate_limit))
        .wrap(from_fn(cors::cors))
        .wrap(from_fn(request_metrics::request_metrics))
        .configure(|cfg| configure(cfg, with_metrics))
}

/// `GET /metrics` for the separate metrics listener.
pub async fn metrics_handler(state: web::Data<state::AppState>) -> HttpResponse {
    ops::metrics(state).await
}
