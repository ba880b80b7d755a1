//! WHEP: the egress half of a lobby session (API.md "Lobby endpoints").
//! Server-offer mode (the seed's flow) and client-offer mode (standard
//! WHEP, with the draft-03 406 counter-offer) for sessions of the lobby;
//! plain viewers (a Bearer caller without a session in the lobby) are in
//! `viewer.rs`, trickle ICE and ICE restarts in `trickle.rs`.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use vestibule_actors::StreamKey;
use vestibule_actors::ids::WhepId;
use vestibule_actors::session::{
    EndWhep, FinishWhep, GetSessionStatus, OfferWhep, PatchEgressIce, StartWhep, WhepError,
};

use crate::media::sdp_meta;

use super::body::{SDP, SDPFRAG, declares_empty_body, media_type, read_sdp};
use super::credentials::{
    SessionAuth, SessionCaller, Target, optional_bearer, optional_bearer_for_teardown,
    session_caller,
};
use super::error::ApiError;
use super::state::AppState;
use super::streams::stream_key;
use super::{trickle, viewer};

/// How long `POST /whep` waits for the session's signal channel (API.md rule 6).
const SIGNAL_WAIT: Duration = Duration::from_secs(10);
/// Poll interval while waiting.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

impl From<WhepError> for ApiError {
    fn from(e: WhepError) -> Self {
        match e {
            WhepError::NoWhep => ApiError::NotFound("no such WHEP connection"),
            WhepError::NoUsableMedia => {
                ApiError::Unprocessable("no offered media section is usable".into())
            }
            WhepError::NoPendingOffer => ApiError::Conflict {
                detail: "no offer is pending",
                retry_after: None,
            },
            WhepError::Media(m) => m.into(),
        }
    }
}

/// A WHEP resource's ETag: its ICE session's local ufrag, as in the SDP
/// we send (an ICE restart changes it; trickle `If-Match` names it).
pub(super) fn ice_etag(sdp: &str) -> String {
    crate::media::ice::etag_of(crate::media::sdpfrag::ice_ufrag(sdp).unwrap_or_default())
}

/// Adds the request token to a 2xx for a cookie-authenticated request.
fn echo_token(resp: &mut actix_web::HttpResponseBuilder, caller: &SessionCaller) {
    if let Some(token) = caller.echo_req_token() {
        resp.insert_header(("X-Req-Token", token));
    }
}

fn whep_location(state: &AppState, key: &StreamKey, id: &WhepId) -> String {
    state.public_path(&format!(
        "/space/{}/stream/{}/whep/{}",
        key.space,
        key.stream,
        id.reveal()
    ))
}

/// `POST /whep`: with an empty body, the server offers every other
/// participant's tracks (server-offer mode); with an SDP offer, standard
/// WHEP (client-offer mode), or a 406 counter-offer when no offered m-line
/// is usable (draft-03).
pub(super) async fn create(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    if let Some(user) = optional_bearer(&req, &state)?
        && viewer::is_viewer_request(&state, &key, &user)
    {
        let location = |id: &WhepId| whep_location(&state, &key, id);
        return viewer::create(&req, &key, user, payload, &state, location).await;
    }
    let caller = session_caller(&req, &state, &key, Target::Alias, SessionAuth::default())?;
    let session = caller.record().session.clone();
    if !declares_empty_body(&req) {
        let offer = read_sdp(&req, payload).await?;
        let offer =
            sdp_meta::prepare_offer(&offer).map_err(|e| ApiError::MalformedSdp(e.to_string()))?;
        match session.send(OfferWhep { offer: offer.sdp }).await? {
            Ok((id, answer)) => {
                let mut resp = HttpResponse::Created();
                resp.content_type(SDP)
                    .insert_header((header::LOCATION, whep_location(&state, &key, &id)))
                    .insert_header((header::ETAG, ice_etag(&answer)));
                echo_token(&mut resp, &caller);
                return Ok(resp.body(answer));
            }
            Err(WhepError::NoUsableMedia) => {
                let offer = session
                    .send(StartWhep {
                        counter_offer: true,
                    })
                    .await??;
                let mut resp = HttpResponse::NotAcceptable();
                resp.content_type(SDP)
                    .insert_header((
                        header::LOCATION,
                        whep_location(&state, &key, &offer.whep_id),
                    ))
                    .insert_header(("Vestibule-Offer-Number", offer.number.to_string()));
                echo_token(&mut resp, &caller);
                return Ok(resp.body(offer.sdp));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let started = Instant::now();
    while !session.send(GetSessionStatus).await?.signal_open {
        if started.elapsed() >= SIGNAL_WAIT {
            return Err(ApiError::Conflict {
                detail: "the session's signal channel is not open",
                retry_after: Some(1),
            });
        }
        tokio::time::sleep(SIGNAL_POLL).await;
    }
    let offer = session
        .send(StartWhep {
            counter_offer: false,
        })
        .await??;
    let mut resp = HttpResponse::Created();
    resp.content_type(SDP)
        .insert_header((
            header::LOCATION,
            whep_location(&state, &key, &offer.whep_id),
        ))
        .insert_header((header::ETAG, ice_etag(&offer.sdp)))
        .insert_header(("Vestibule-Offer-Number", offer.number.to_string()));
    echo_token(&mut resp, &caller);
    Ok(resp.body(offer.sdp))
}

/// Applies an SDP answer (PATCH on the alias or the resource): 201.
async fn answer(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    key: &StreamKey,
    whep_id: Option<WhepId>,
) -> Result<HttpResponse, ApiError> {
    if media_type(req).is_some_and(|t| t == SDPFRAG) {
        return patch_ice(req, payload, state, key, whep_id).await;
    }
    let caller = session_caller(req, state, key, Target::Alias, SessionAuth::default())?;
    let sdp = read_sdp(req, payload).await?;
    let counter_offer = caller
        .record()
        .session
        .send(FinishWhep { whep_id, sdp })
        .await??;
    // draft-03: the answer to a 406 counter-offer gets 204; the seed's
    // server-offer flow answers 201.
    let mut resp = if counter_offer {
        HttpResponse::NoContent()
    } else {
        HttpResponse::Created()
    };
    echo_token(&mut resp, &caller);
    Ok(resp.finish())
}

/// Trickle ICE or an ICE restart on a WHEP connection: a plain viewer's
/// (Bearer without a lobby session, resource URL only) or the session's.
async fn patch_ice(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    key: &StreamKey,
    whep_id: Option<WhepId>,
) -> Result<HttpResponse, ApiError> {
    if let Some(user) = optional_bearer(req, state)?
        && viewer::is_viewer_request(state, key, &user)
    {
        let id = whep_id.ok_or(ApiError::NotFound("no such WHEP connection"))?;
        let patch = trickle::read_patch(req, payload).await?;
        return viewer::patch_ice(key, &user, id, patch, state).await;
    }
    let caller = session_caller(req, state, key, Target::Alias, SessionAuth::default())?;
    let patch = trickle::read_patch(req, payload).await?;
    let result = caller
        .record()
        .session
        .send(PatchEgressIce { whep_id, patch })
        .await??;
    Ok(trickle::respond(result, |resp| echo_token(resp, &caller)))
}

/// `PATCH /whep`: the answer to the pending server offer.
pub(super) async fn patch_alias(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    answer(&req, payload, &state, &key, None).await
}

/// `PATCH {whep Location}`.
pub(super) async fn patch_resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, whep) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    let id = WhepId::parse(&whep).ok_or(ApiError::NotFound("no such WHEP connection"))?;
    answer(&req, payload, &state, &key, Some(id)).await
}

/// `DELETE /whep` (204) and `DELETE {whep Location}` (200): ends the WHEP
/// connection only.
async fn end(
    req: &HttpRequest,
    state: &AppState,
    key: &StreamKey,
    whep_id: Option<WhepId>,
) -> Result<(), ApiError> {
    let caller = session_caller(
        req,
        state,
        key,
        Target::Alias,
        SessionAuth { teardown: true },
    )?;
    caller.record().session.send(EndWhep { whep_id }).await??;
    Ok(())
}

/// `DELETE /whep`.
pub(super) async fn delete_alias(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let key = stream_key(&path)?;
    end(&req, &state, &key, None).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE {whep Location}`.
pub(super) async fn delete_resource(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (space, stream, whep) = path.into_inner();
    let key = stream_key(&(space, stream))?;
    let id = WhepId::parse(&whep).ok_or(ApiError::NotFound("no such WHEP connection"))?;
    if let Some(user) = optional_bearer_for_teardown(&req, &state)?
        && viewer::is_viewer_request(&state, &key, &user)
    {
        return viewer::delete(&key, &user, id, &state).await;
    }
    end(&req, &state, &key, Some(id)).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `HEAD /whep`: 200 with the SDP content type, no auth (API.md).
pub(super) async fn head() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, SDP))
        .finish()
}
