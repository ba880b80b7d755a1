//! WHEP: the egress half of a lobby session, and plain viewers.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::body::{SDP, SDPFRAG};
use super::credentials::{SessionAuth, Target, optional_bearer, session_caller};
use super::error::ApiError;
use super::state::AppState;
use super::streams::stream_key;

const NOT_BUILT: ApiError = ApiError::NotImplemented("WHEP is not built in this version");

/// Authenticates a WHEP request: a Bearer token (session member or plain
/// viewer) or the session cookie with its request token.
fn authenticate(
    req: &HttpRequest,
    state: &AppState,
    path: &(String, String),
) -> Result<(), ApiError> {
    let key = stream_key(path)?;
    if optional_bearer(req, state)?.is_some() {
        return Ok(());
    }
    session_caller(req, state, &key, Target::Alias, SessionAuth::default()).map(|_| ())
}

/// `POST /whep` (server-offer or client-offer mode), `PATCH /whep` (the
/// answer to a server offer) and `DELETE /whep`.
pub(super) async fn alias(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authenticate(&req, &state, &path)?;
    Err(NOT_BUILT)
}

/// `PATCH` and `DELETE` on a WHEP resource.
pub(super) async fn resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, _whep) = path.into_inner();
    authenticate(&req, &state, &(space, stream))?;
    Err(NOT_BUILT)
}

/// `HEAD /whep`: 200 with the SDP content type, no auth (API.md).
pub(super) async fn head() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, SDP))
        .finish()
}

/// `OPTIONS /whep`.
pub(super) async fn options_endpoint() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Accept-Post", SDP))
        .finish()
}

/// `OPTIONS {whep Location}`.
pub(super) async fn options_resource() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Accept-Patch", format!("{SDP}, {SDPFRAG}")))
        .finish()
}
