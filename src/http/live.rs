//! Live: restream the lobby's program to RTMP (start / status / stop).

use actix_web::{HttpRequest, HttpResponse, web};
use vestibule_actors::StreamKey;

use super::credentials::{SessionAuth, Target, optional_bearer, session_caller};
use super::error::ApiError;
use super::state::AppState;
use super::streams::{find_stream, is_owner, stream_key};

const NOT_BUILT: ApiError =
    ApiError::NotImplemented("live restreaming is not built in this version");

/// Only the stream's owner may control its live output: by Bearer token, or
/// by the owner's session cookie + request token.
async fn require_owner(
    req: &HttpRequest,
    state: &AppState,
    key: &StreamKey,
) -> Result<(), ApiError> {
    let row = find_stream(state, key).await?;
    let owner = match optional_bearer(req, state)? {
        Some(user) => is_owner(&row, &user),
        None => {
            session_caller(req, state, key, Target::Alias, SessionAuth::default())?
                .record()
                .is_owner
        }
    };
    if !owner {
        return Err(ApiError::Forbidden(
            "only the stream owner controls its live output",
        ));
    }
    Ok(())
}

/// `POST /live/start` and `POST /live`.
pub(super) async fn start(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}

/// `GET /live`.
pub(super) async fn status(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}

/// `DELETE /live`.
pub(super) async fn stop(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}

/// `GET /live/{liveId}`.
pub(super) async fn status_resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, _live) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}

/// `DELETE /live/{liveId}`.
pub(super) async fn stop_resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, _live) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}
