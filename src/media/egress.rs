//! The WHEP (egress) role of a peer: one send-only m-line per lobby track,
//! the pending server offer, and per m-line forwarding state.

use std::collections::HashMap;
use std::time::Instant;

use str0m::format::PayloadParams;
use vestibule_actors::ids::TrackId;

use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind as StrMediaKind, Mid};
use str0m::rtp::Ssrc;
use vestibule_actors::ids::SessionId;
use vestibule_actors::media::{EgressTrack, MediaError};
use vestibule_actors::snapshot::MediaKind;

use super::forward::{PtMap, SeqRebase, TsRebase};
use super::sdp_meta::{self, EgressLabel};

/// Egress RTX cache per video stream: browsers NACK within about a second,
/// older packets are useless to resend and cost memory per subscriber.
const RTX_CACHE_PACKETS: usize = 256;
const RTX_CACHE_AGE: std::time::Duration = std::time::Duration::from_millis(1000);
/// str0m's default cap on the share of bandwidth spent on resends.
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

/// Trims the RTX cache of a freshly opened sender stream.
fn trim_rtx_cache(rtc: &mut Rtc, ssrc: Ssrc) {
    if let Some(tx) = rtc.direct_api().stream_tx(&ssrc) {
        tx.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, RTX_RATIO_CAP);
    }
}

/// The codec each track's publisher sends (once known): egress m-lines
/// offer only it and its RTX.
pub type SourceCodecs = HashMap<TrackId, PayloadParams>;

/// One egress m-line carrying one lobby track.
#[derive(Debug)]
pub struct OutTrack {
    /// What it carries (source session + ingress mid, labels).
    pub track: EgressTrack,
    /// Its mid on the subscriber's connection.
    pub mid: Mid,
    /// Publisher ingress mid, parsed once.
    pub source_mid: Mid,
    /// Set once the subscriber's answer made it sendable.
    pub open: bool,
    /// Cached sender SSRC (str0m looks streams up by scanning mids).
    pub tx_ssrc: Option<Ssrc>,
    /// Publisher PT -> our PT.
    pub pt_map: PtMap,
    /// Sequence-number rebasing.
    pub seq: SeqRebase,
    /// RTP-time rebasing (the identity unless the source switches).
    pub ts: TsRebase,
    /// A plain viewer's program m-line: msid stream id `program`, and its
    /// source changes without renegotiation.
    pub program: bool,
    /// Video waits for a keyframe before anything is forwarded.
    pub waiting_keyframe: bool,
    /// When the m-line opened (time to first keyframe).
    pub opened_at: Option<Instant>,
    /// Stopped by a renegotiation: nothing is forwarded to it again. Outs
    /// are never removed, so route indexes stay valid.
    pub stopped: bool,
}

impl OutTrack {
    fn new(track: EgressTrack, mid: Mid) -> Self {
        Self {
            source_mid: Mid::from(track.mid.as_str()),
            waiting_keyframe: track.kind == MediaKind::Video,
            track,
            mid,
            open: false,
            tx_ssrc: None,
            pt_map: PtMap::default(),
            seq: SeqRebase::default(),
            ts: TsRebase::default(),
            program: false,
            opened_at: None,
            stopped: false,
        }
    }
}

/// The msid stream id of a plain viewer's m-lines (API.md "Plain viewers").
pub const PROGRAM_STREAM_ID: &str = "program";

/// A WHEP peer's extra state.
#[derive(Debug, Default)]
pub struct Egress {
    /// The m-lines that carry tracks, in offer order.
    pub outs: Vec<OutTrack>,
    /// The offer awaiting the subscriber's answer.
    pending: Option<SdpPendingOffer>,
    /// Inactive m-lines of an empty lobby, reused for the first tracks.
    placeholders: Vec<(Mid, MediaKind)>,
    /// Source codecs of the tracks offered so far.
    sources: SourceCodecs,
    /// The remote description is known (first answer applied, or the
    /// connection started from the client's offer).
    answered: bool,
    /// Started from the client's offer (standard WHEP): the client may
    /// restart ICE; a server-offer connection may not (API.md).
    pub client_offer: bool,
}

fn str0m_kind(kind: MediaKind) -> StrMediaKind {
    match kind {
        MediaKind::Audio => StrMediaKind::Audio,
        MediaKind::Video => StrMediaKind::Video,
    }
}

impl Egress {
    /// Builds the first server offer on a fresh `Rtc`: a send-only m-line
    /// per track, or one inactive audio and one inactive video m-line for
    /// an empty lobby. Returns the state and the annotated offer SDP.
    pub fn offer(
        rtc: &mut Rtc,
        tracks: Vec<EgressTrack>,
        sources: SourceCodecs,
    ) -> Result<(Egress, String), MediaError> {
        let mut change = rtc.sdp_api();
        let mut outs = Vec::new();
        let mut placeholders = Vec::new();
        for track in tracks {
            let mid = change.add_media(
                str0m_kind(track.kind),
                Direction::SendOnly,
                Some(track.participant.to_string()),
                Some(track.track.to_string()),
                None,
            );
            outs.push(OutTrack::new(track, mid));
        }
        if outs.is_empty() {
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let mid = change.add_media(str0m_kind(kind), Direction::Inactive, None, None, None);
                placeholders.push((mid, kind));
            }
        }
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| MediaError::MalformedSdp("nothing to offer".into()))?;
        let egress = Egress {
            outs,
            pending: Some(pending),
            placeholders,
            sources,
            answered: false,
            client_offer: false,
        };
        let sdp = egress.annotate(rtc, &offer.to_sdp_string());
        Ok((egress, sdp))
    }

    /// Takes a client's offer (standard WHEP): each offered receive-only
    /// audio/video m-line that str0m could answer gets the next lobby track
    /// of its kind; the rest stay unused until a renegotiation. Returns the
    /// state and the annotated answer, or `None` when no offered m-line is
    /// usable (no common codec): the caller counter-offers.
    pub fn answer_client_offer(
        rtc: &mut Rtc,
        offer: &str,
        tracks: Vec<EgressTrack>,
        sources: SourceCodecs,
        now: Instant,
    ) -> Result<Option<(Egress, String)>, MediaError> {
        let Some((egress, answer)) = Self::accept_client_offer(rtc, offer, tracks, sources, now)?
        else {
            return Ok(None);
        };
        let sdp = egress.annotate(rtc, &answer);
        Ok(Some((egress, sdp)))
    }

    /// [`Egress::answer_client_offer`] before annotation: the state and the
    /// raw answer.
    fn accept_client_offer(
        rtc: &mut Rtc,
        offer: &str,
        tracks: Vec<EgressTrack>,
        sources: SourceCodecs,
        now: Instant,
    ) -> Result<Option<(Egress, String)>, MediaError> {
        let parsed = str0m::change::SdpOffer::from_sdp_string(offer)
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?
            .to_sdp_string();
        let usable = sending_sections(&answer);
        if usable.is_empty() {
            return Ok(None);
        }
        let mut outs = Vec::new();
        let mut unused: Vec<(Mid, MediaKind)> = usable;
        for track in tracks {
            let Some(i) = unused.iter().position(|(_, k)| *k == track.kind) else {
                continue;
            };
            let (mid, _) = unused.remove(i);
            let mut out = OutTrack::new(track, mid);
            // The answer made the m-line sendable right away.
            out.tx_ssrc = rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|s| s.ssrc());
            out.open = out.tx_ssrc.is_some();
            if let Some(ssrc) = out.tx_ssrc {
                trim_rtx_cache(rtc, ssrc);
            }
            out.opened_at = Some(now);
            outs.push(out);
        }
        let egress = Egress {
            outs,
            pending: None,
            placeholders: unused,
            sources,
            answered: true,
            client_offer: true,
        };
        Ok(Some((egress, answer)))
    }

    /// Takes a plain viewer's offer: its (at most one) audio and video
    /// receive-only m-lines carry the program's `audio` and `video`. Every
    /// common codec stays in the answer, because the program's source (and
    /// with it the codec) can change without renegotiation.
    pub fn answer_viewer_offer(
        rtc: &mut Rtc,
        offer: &str,
        program: [EgressTrack; 2],
        now: Instant,
    ) -> Result<(Egress, String), MediaError> {
        let offered = sdp_meta::sections_in_direction(offer, &["a=recvonly", "a=sendrecv"]);
        for kind in [MediaKind::Audio, MediaKind::Video] {
            if offered.iter().filter(|(_, k)| *k == kind).count() > 1 {
                return Err(MediaError::TooManyViewerSections);
            }
        }
        let Some((mut egress, answer)) =
            Self::accept_client_offer(rtc, offer, program.to_vec(), SourceCodecs::new(), now)?
        else {
            return Err(MediaError::NoCodec("audio or video"));
        };
        for out in &mut egress.outs {
            out.program = true;
        }
        let sdp = egress.annotate(rtc, &answer);
        Ok((egress, sdp))
    }

    /// Builds the next server offer that brings the m-lines to `desired`:
    /// new tracks reuse an inactive placeholder of their kind or get a new
    /// send-only m-line, gone tracks are stopped, labels follow mute and
    /// purpose. `None` when nothing changed.
    pub fn renegotiate(
        &mut self,
        rtc: &mut Rtc,
        desired: Vec<EgressTrack>,
        sources: SourceCodecs,
    ) -> Result<Option<String>, MediaError> {
        if self.pending.is_some() {
            return Err(MediaError::OfferOutstanding);
        }
        self.sources.extend(sources);
        let mut change = rtc.sdp_api();
        let mut relabelled = false;
        for out in self.outs.iter_mut().filter(|o| !o.stopped) {
            match desired.iter().find(|t| t.track == out.track.track) {
                Some(now) => {
                    relabelled |= now.mute != out.track.mute || now.purpose != out.track.purpose;
                    out.track.mute = now.mute;
                    out.track.purpose = now.purpose;
                }
                None => {
                    change.stop_media(out.mid);
                    out.stopped = true;
                    out.open = false;
                }
            }
        }
        for track in desired {
            if self
                .outs
                .iter()
                .any(|o| !o.stopped && o.track.track == track.track)
            {
                continue;
            }
            let mid = match self.placeholders.iter().position(|(_, k)| *k == track.kind) {
                Some(i) => {
                    let (mid, _) = self.placeholders.remove(i);
                    change.set_direction(mid, Direction::SendOnly);
                    mid
                }
                None => change.add_media(
                    str0m_kind(track.kind),
                    Direction::SendOnly,
                    Some(track.participant.to_string()),
                    Some(track.track.to_string()),
                    None,
                ),
            };
            self.outs.push(OutTrack::new(track, mid));
        }
        if !change.has_changes() && !relabelled {
            return Ok(None);
        }
        // A label-only change still needs an offer (the i= mute field);
        // str0m has nothing to change then, so no pending offer exists and
        // the answer is accepted without one.
        let Some((offer, pending)) = change.apply() else {
            return Ok(None);
        };
        self.pending = Some(pending);
        Ok(Some(self.annotate(rtc, &offer.to_sdp_string())))
    }

    /// Adds the `i=` line of API.md "Track metadata" to every m-line we
    /// generated, plus session-level `msid-semantic` and complete candidates.
    fn annotate(&self, rtc: &Rtc, sdp: &str) -> String {
        let restricted = sdp_meta::restrict_codecs(sdp, |mid| {
            let out = self
                .outs
                .iter()
                .filter(|o| !o.stopped)
                .find(|o| o.mid.to_string() == mid)?;
            let source = self.sources.get(&out.track.track)?;
            let ours = rtc.codec_config().match_params(*source)?;
            let mut allowed = vec![*ours.pt()];
            allowed.extend(ours.resend().map(|pt| *pt));
            Some(allowed)
        });
        let labelled = sdp_meta::annotate_egress(&restricted, |mid| {
            self.outs
                .iter()
                .filter(|o| !o.stopped)
                .find(|o| o.mid.to_string() == mid)
                .map(|o| EgressLabel {
                    purpose: o.track.purpose,
                    mute: o.track.mute,
                    user_id: o.track.user_id.clone(),
                    msid: Some(if o.program {
                        format!("{PROGRAM_STREAM_ID} {}", o.track.track)
                    } else {
                        format!("{} {}", o.track.participant, o.track.track)
                    }),
                })
        });
        sdp_meta::complete_candidates(&sdp_meta::ensure_msid_semantic(&labelled))
    }

    /// Applies the subscriber's answer to the pending offer and opens the
    /// m-lines it accepted. Returns the indexes of newly opened outs.
    pub fn accept_answer(
        &mut self,
        rtc: &mut Rtc,
        answer: &str,
        now: Instant,
    ) -> Result<Vec<usize>, MediaError> {
        let pending = self.pending.take().ok_or(MediaError::NoPendingOffer)?;
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| MediaError::MalformedSdp(e.to_string()))?;
        self.answered = true;
        let mut opened = Vec::new();
        for (i, out) in self.outs.iter_mut().enumerate() {
            if out.open || out.stopped {
                continue;
            }
            // A subscriber that rejected the m-line (port 0) has no stream for it.
            let Some(ssrc) = rtc
                .direct_api()
                .stream_tx_by_mid(out.mid, None)
                .map(|s| s.ssrc())
            else {
                continue;
            };
            out.tx_ssrc = Some(ssrc);
            trim_rtx_cache(rtc, ssrc);
            out.open = true;
            out.opened_at = Some(now);
            opened.push(i);
        }
        Ok(opened)
    }

    /// The live out carrying `mid` on this connection.
    pub fn out_by_mid(&self, mid: Mid) -> Option<usize> {
        self.outs.iter().position(|o| o.mid == mid && !o.stopped)
    }

    /// Egress mids of open video outs.
    pub fn open_video_mids(&self) -> impl Iterator<Item = Mid> + '_ {
        self.outs
            .iter()
            .filter(|o| o.open && !o.stopped && o.track.kind == MediaKind::Video)
            .map(|o| o.mid)
    }

    /// Indexes of outs that are open (for route setup).
    pub fn open_outs(&self) -> Vec<usize> {
        self.outs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.open && !o.stopped)
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether the remote description is known. Until then connectivity
    /// checks are not answered: a browser applies its answer (and starts
    /// checking) before its PATCH arrives, and an early success makes it
    /// send its DTLS ClientHello to a peer that cannot use it yet, which
    /// costs a 1 s retransmit. Unanswered checks are simply retried.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Whether an offer awaits an answer.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The sources this peer subscribes to: (publisher session, ingress mid, out index).
    pub fn sources(&self) -> impl Iterator<Item = (SessionId, Mid, usize)> + '_ {
        self.outs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.track.publisher, o.source_mid, i))
    }
}

/// The audio/video m-lines of an answer on which we send (enabled and
/// `sendonly` or `sendrecv` from our side), with their mids.
fn sending_sections(answer: &str) -> Vec<(Mid, MediaKind)> {
    sdp_meta::sections_in_direction(answer, &["a=sendonly", "a=sendrecv"])
        .into_iter()
        .map(|(mid, kind)| (Mid::from(mid.as_str()), kind))
        .collect()
}
