//! Trickle ICE and ICE restarts on a placed peer (RFC 9725 §4.3). The
//! server is ICE-lite, so remote candidates are not needed to connect (we
//! answer the client's checks from wherever they come); they are still
//! given to str0m. The ETag of a resource is its ICE session's local ufrag
//! (quoted); an ICE restart replaces both credentials, so the ETag changes
//! and the demux learns the new ufrag.

use std::time::Instant;

use str0m::{Candidate, IceCreds};
use tracing::debug;
use vestibule_actors::ids::SessionId;
use vestibule_actors::media::{IcePatch, IcePatchResult, MediaError};

use super::peer::Role;
use super::rtc_config::new_credentials;
use super::sdpfrag;
use super::worker::Worker;

/// A resource's ETag for its local ufrag.
pub fn etag_of(ufrag: &str) -> String {
    format!("\"{ufrag}\"")
}

impl Worker {
    /// Applies a trickle PATCH to the session's WHIP (or WHEP) peer.
    pub(super) fn patch_ice(
        &mut self,
        session: SessionId,
        egress: bool,
        patch: IcePatch,
        now: Instant,
    ) -> Result<IcePatchResult, MediaError> {
        let index = if egress {
            &self.egress_of
        } else {
            &self.ingress_of
        };
        let key = *index.get(&session).ok_or(MediaError::NoPeer)?;
        let ours: Vec<String> = self
            .candidates
            .iter()
            .filter_map(|addr| Candidate::host(*addr, "udp").ok())
            .map(|c| c.to_sdp_string())
            .collect();
        let peer = self.peers.get_mut(key).ok_or(MediaError::NoPeer)?;
        let etag = etag_of(&peer.ufrag);
        let restart = patch.is_restart();
        if let Some(tag) = patch.if_match.as_deref()
            && !restart
            && !sdpfrag::if_match_names(tag, &etag)
        {
            return Err(MediaError::PreconditionFailed);
        }
        if !restart {
            // RFC 9725 §4.3.1: a fragment for another ICE session is 422.
            if let Some(ufrag) = &patch.ufrag
                && peer.remote_ufrag.as_ref() != Some(ufrag)
            {
                return Err(MediaError::UfragMismatch);
            }
            add_candidates(&mut peer.rtc, &patch.candidates);
            self.drive(key, now, |peer, d| peer.drain(d));
            self.after_drive(key, now);
            return Ok(IcePatchResult::Trickled);
        }
        if let Role::Egress(e) = &peer.role
            && !e.client_offer
        {
            return Err(MediaError::RestartNotAllowed);
        }
        let (Some(ufrag), Some(pwd)) = (patch.ufrag.clone(), patch.pwd.clone()) else {
            // "*" without new credentials restarts nothing: RFC 9725 wants
            // both; refuse rather than guess.
            return Err(MediaError::MalformedSdp(
                "an ICE restart needs a=ice-ufrag and a=ice-pwd".into(),
            ));
        };
        let local = new_credentials();
        let old_ufrag = std::mem::replace(&mut peer.ufrag, local.ufrag.clone());
        {
            let mut api = peer.rtc.direct_api();
            api.set_local_ice_credentials(local.clone());
            api.set_remote_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: pwd,
            });
        }
        peer.remote_ufrag = Some(ufrag);
        add_candidates(&mut peer.rtc, &patch.candidates);
        let participant = peer.participant;
        let fragment =
            sdpfrag::restart_answer(&local.ufrag, &local.pass, peer.bundle_mid.as_deref(), &ours);
        self.demux.forget(&old_ufrag, &[], key);
        self.demux.add_ufrag(local.ufrag.clone(), key);
        self.drive(key, now, |peer, d| peer.drain(d));
        self.after_drive(key, now);
        self.metrics.family.ice_restarts.inc();
        debug!(worker = self.index, participant = %participant, egress, "ICE restarted");
        Ok(IcePatchResult::Restarted {
            sdpfrag: fragment,
            etag: etag_of(&local.ufrag),
        })
    }
}

/// Gives validated `candidate:` attributes to str0m (already parsed once
/// by the HTTP layer; a failure here only skips that candidate).
fn add_candidates(rtc: &mut str0m::Rtc, candidates: &[String]) {
    for text in candidates {
        if let Ok(candidate) = Candidate::from_sdp_string(text) {
            rtc.add_remote_candidate(candidate);
        }
    }
}
