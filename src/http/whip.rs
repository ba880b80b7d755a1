//! WHIP: the ingress half of a lobby session (API.md "Lobby endpoints").

use actix_web::{HttpRequest, HttpResponse, web};
use vestibule_actors::lobby::LeaveLobby;
use vestibule_actors::session::EndReason;

use super::body::{SDP, SDPFRAG, read_sdp, require_type};
use super::cookie::cleared_cookie;
use super::credentials::{SessionAuth, SessionCaller, Target, require_bearer, session_caller};
use super::error::ApiError;
use super::state::AppState;
use super::streams::{find_stream, stream_key};

/// `POST /whip`: join the lobby with an SDP offer.
pub(super) async fn create(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_bearer(&req, &state)?;
    let key = stream_key(&path)?;
    let _offer = read_sdp(&req, payload).await?;
    if state.is_shutting_down() {
        return Err(ApiError::Unavailable {
            detail: "the server is shutting down",
            retry_after: 5,
        });
    }
    let _row = find_stream(&state, &key).await?;
    // The media plane (str0m workers) answers offers; until it exists the
    // request is refused after every check a client could fail.
    Err(ApiError::NotImplemented(
        "WHIP media is not built in this version",
    ))
}

/// Ends a session and answers once it is out of the directory.
async fn end_session(caller: &SessionCaller) -> Result<(), ApiError> {
    let record = caller.record();
    let known = record
        .lobby
        .send(LeaveLobby {
            session: record.session_id,
            reason: EndReason::Deleted,
        })
        .await?;
    // Two DELETEs racing: the loser finds the session already gone.
    if !known {
        return Err(ApiError::NotFound("no such session"));
    }
    tracing::info!(lobby = %record.stream, participant = %record.participant_id, "session deleted");
    Ok(())
}

/// `DELETE /whip` (cookie alias, the seed's flow): 204.
pub(super) async fn delete_alias(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    let caller = session_caller(
        &req,
        &state,
        &key,
        Target::Alias,
        SessionAuth { teardown: true },
    )?;
    end_session(&caller).await?;
    Ok(HttpResponse::NoContent()
        .cookie(cleared_cookie(&state.settings, &key))
        .finish())
}

/// `DELETE {whip Location}`: 200 (RFC 9725).
pub(super) async fn delete_resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, session) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    let caller = session_caller(
        &req,
        &state,
        &key,
        Target::Resource(&session),
        SessionAuth { teardown: true },
    )?;
    end_session(&caller).await?;
    let mut resp = HttpResponse::Ok();
    if matches!(caller, SessionCaller::Cookie { .. }) {
        resp.cookie(cleared_cookie(&state.settings, &key));
    }
    Ok(resp.finish())
}

/// `PATCH {whip Location}`: trickle ICE and ICE restart only (no SDP updates).
pub(super) async fn patch_resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, session) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    session_caller(
        &req,
        &state,
        &key,
        Target::Resource(&session),
        SessionAuth::default(),
    )?;
    require_type(&req, SDPFRAG)?;
    Err(ApiError::NotImplemented(
        "trickle ICE is not built in this version",
    ))
}

/// `OPTIONS /whip`.
pub(super) async fn options_endpoint() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Accept-Post", SDP))
        .finish()
}

/// `OPTIONS {whip Location}`.
pub(super) async fn options_resource() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Accept-Patch", format!("{SDP}, {SDPFRAG}")))
        .finish()
}
