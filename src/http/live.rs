//! Live: restream the lobby's program to RTMP (start / status / stop).
//! Credentials are checked now; the restream itself arrives with the live
//! subsystem and answers 501 until then.

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

/// `POST /live/start`, `POST /live`, `GET /live`, `DELETE /live`.
pub(super) async fn alias(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}

/// `GET /live/{liveId}`, `DELETE /live/{liveId}`.
pub(super) async fn resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, _live) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    require_owner(&req, &state, &key).await?;
    Err(NOT_BUILT)
}
