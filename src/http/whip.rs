//! WHIP: the ingress half of a lobby session (API.md "Lobby endpoints").

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use vestibule_actors::StreamKey;
use vestibule_actors::lobby::{LeaveLobby, OpenIngress, OpenIngressError};
use vestibule_actors::registry::JoinLobby;
use vestibule_actors::session::{EndReason, PatchIngressIce};

use super::body::{SDP, SDPFRAG, read_sdp, require_type};
use super::cookie::{cleared_cookie, session_cookie};
use super::credentials::{SessionAuth, SessionCaller, Target, require_bearer, session_caller};
use super::error::ApiError;
use super::state::AppState;
use super::streams::{find_or_create_stream, is_owner, stream_key};
use super::trickle;
use crate::config::IceServer;
use crate::media::ingress::ingress_sections;
use crate::media::sdp_meta;

/// How long a WHIP POST waits for the control and media planes.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// `POST /whip`: join the lobby with an SDP offer.
pub(super) async fn create(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let user = require_bearer(&req, &state)?;
    let key = stream_key(&path)?;
    let offer = read_sdp(&req, payload).await?;
    if state.is_shutting_down() {
        return Err(ApiError::Unavailable {
            detail: "the server is shutting down",
            retry_after: 5,
        });
    }
    let row = find_or_create_stream(&state, &key, &user).await?;
    let prepared =
        sdp_meta::prepare_offer(&offer).map_err(|e| ApiError::MalformedSdp(e.to_string()))?;
    if prepared.media_sections() > state.settings.session.max_media_sections {
        return Err(ApiError::Unprocessable(format!(
            "the offer has more than {} media sections",
            state.settings.session.max_media_sections
        )));
    }
    let sections = ingress_sections(&prepared);
    // 0 means "no limit" (RFC 8841); otherwise server offers must fit.
    let max_message_size = match sdp_meta::max_message_size(&prepared.sdp) {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => vestibule_actors::lobby::DEFAULT_MAX_MESSAGE_SIZE,
    };
    let ticket = state
        .registry
        .send(JoinLobby {
            stream: key.clone(),
            identity: user.identity.clone(),
            is_owner: is_owner(&row, &user),
        })
        .timeout(CREATE_TIMEOUT)
        .await??;
    let record = ticket.record;
    let opened = record
        .lobby
        .send(OpenIngress {
            session: record.session_id,
            offer: prepared.sdp,
            sections,
            max_message_size,
        })
        .timeout(CREATE_TIMEOUT)
        .await;
    let answer = match opened {
        Ok(Ok(answer)) => answer,
        Ok(Err(OpenIngressError::Media(e))) => return Err(e.into()),
        Ok(Err(OpenIngressError::TooManyTracks)) => {
            return Err(ApiError::TooManyRequests {
                detail: "the lobby is full: too many tracks",
                retry_after: 5,
            });
        }
        Ok(Err(OpenIngressError::SessionGone)) => {
            return Err(ApiError::Conflict {
                detail: "the session was replaced while it was created",
                retry_after: None,
            });
        }
        Err(e) => {
            // The lobby may still hold the half-made session: end it.
            record.lobby.do_send(LeaveLobby {
                session: record.session_id,
                reason: EndReason::Rejected,
            });
            return Err(e.into());
        }
    };
    tracing::info!(lobby = %key, participant = %record.participant_id, tracks = answer.media.len(), "whip session created");
    let mut resp = HttpResponse::Created();
    resp.content_type(SDP)
        .insert_header((
            header::LOCATION,
            resource_path(&state, &key, &record.session_id.reveal()),
        ))
        .insert_header((header::ETAG, answer.etag))
        .insert_header(("X-Req-Token", record.req_token.reveal()))
        .cookie(session_cookie(&state.settings, &key, &record.cookie));
    for link in ice_server_links(&state.settings.media.ice_servers) {
        resp.append_header((header::LINK, link));
    }
    Ok(resp.body(answer.sdp))
}

/// The session's resource URL (absolute path, behind the public base path).
fn resource_path(state: &AppState, key: &StreamKey, session: &str) -> String {
    state.public_path(&format!(
        "/space/{}/stream/{}/whip/{session}",
        key.space, key.stream
    ))
}

/// `Link` header values for the configured STUN/TURN servers (RFC 9725 §4.6).
pub(super) fn ice_server_links(servers: &[IceServer]) -> Vec<String> {
    servers
        .iter()
        .map(|s| {
            let mut link = format!("<{}>; rel=\"ice-server\"", s.urls);
            if let (Some(user), Some(credential)) = (&s.username, &s.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    user.replace('"', ""),
                    credential.replace('"', "")
                ));
            }
            link
        })
        .collect()
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
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, session) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    let caller = session_caller(
        &req,
        &state,
        &key,
        Target::Resource(&session),
        SessionAuth::default(),
    )?;
    // API.md "No updates over HTTP": only trickle fragments, never SDP.
    require_type(&req, SDPFRAG)?;
    let patch = trickle::read_patch(&req, payload).await?;
    let result = caller
        .record()
        .session
        .send(PatchIngressIce { patch })
        .await??;
    let token = caller.echo_req_token();
    Ok(trickle::respond(result, |resp| {
        if let Some(token) = token {
            resp.insert_header(("X-Req-Token", token));
        }
    }))
}
