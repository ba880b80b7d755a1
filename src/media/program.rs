//! A lobby's program on its home worker (API.md "Program selection",
//! "Plain viewers"): which publisher sections are the main video and
//! audio, the plain viewers that watch them and the live tap that feeds
//! ffmpeg. When the lobby picks another source, every viewer's m-line and
//! the tap switch inside the worker: routes move, sequence numbers and RTP
//! time continue, video waits for the new source's keyframe. Nobody
//! renegotiates.

use std::collections::HashMap;
use std::time::Instant;

use actix::Recipient;
use str0m::media::Mid;
use str0m::rtp::RtpPacket;
use tracing::{debug, warn};
use vestibule_actors::StreamKey;
use vestibule_actors::ids::{LiveId, ParticipantId, SessionId, TrackId};
use vestibule_actors::live::TapEvent;
use vestibule_actors::media::{EgressTrack, MediaError, MediaEvent};
use vestibule_actors::program::{Program, ProgramSource};
use vestibule_actors::snapshot::{MediaKind, Purpose};

use super::egress::Egress;
use super::peer::{Peer, PeerOwner, Role};
use super::rtc_config::{build_rtc, new_credentials};
use super::slab::PeerKey;
use super::tap::LiveTap;
use super::worker::Worker;

/// The `i=` label of a viewer's m-lines (the source's user changes).
const PROGRAM_LABEL: &str = "program";

/// One lobby's program on this worker.
#[derive(Debug, Default)]
pub struct ProgramFeed {
    /// The sources, as the lobby last set them.
    pub program: Program,
    /// Plain viewers' peers.
    pub viewers: Vec<PeerKey>,
    /// The live restream's tap, while live.
    pub tap: Option<LiveTap>,
}

fn source_of(program: &Program, kind: MediaKind) -> Option<&ProgramSource> {
    match kind {
        MediaKind::Video => program.video.as_ref(),
        MediaKind::Audio => program.audio.as_ref(),
    }
}

/// (publisher peer, ingress mid) -> the stream whose tap takes it, and as what.
pub type TapRoutes = HashMap<(PeerKey, Mid), (StreamKey, MediaKind, TrackId)>;

impl Worker {
    /// The lobby picked new program sources.
    pub(super) fn set_program(&mut self, stream: StreamKey, program: Program, now: Instant) {
        let feed = self.programs.entry(stream.clone()).or_default();
        let old = std::mem::replace(&mut feed.program, program.clone());
        let viewers = feed.viewers.clone();
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let new = source_of(&program, kind);
            if source_of(&old, kind) == new {
                continue;
            }
            self.metrics
                .family
                .program_switches
                .with_label_values(&[kind.as_str()])
                .inc();
            for &viewer in &viewers {
                self.switch_viewer(viewer, kind, new, now);
            }
        }
        self.route_tap(&stream, now);
    }

    /// Points a viewer's m-line of `kind` at `source`.
    fn switch_viewer(
        &mut self,
        viewer: PeerKey,
        kind: MediaKind,
        source: Option<&ProgramSource>,
        now: Instant,
    ) {
        let Some(egress) = self.peers.get_mut(viewer).and_then(|p| p.egress_mut()) else {
            return;
        };
        let Some(index) = egress
            .outs
            .iter()
            .position(|o| o.program && o.track.kind == kind && o.open && !o.stopped)
        else {
            return;
        };
        if let Some(out) = egress.outs.get_mut(index) {
            if let Some(source) = source {
                out.track.publisher = source.publisher;
                out.track.mid.clone_from(&source.mid);
                out.source_mid = Mid::from(source.mid.as_str());
            }
            out.seq.switch();
            out.ts.switch();
            out.waiting_keyframe = kind == MediaKind::Video;
        }
        self.routes.retain(|_, subs| {
            subs.retain(|&(sub, i)| sub != viewer || i != index);
            !subs.is_empty()
        });
        if source.is_some() {
            self.open_route(viewer, index, now);
        }
    }

    /// Creates a plain viewer's peer from its offer; answers the SDP.
    pub(super) fn open_viewer(
        &mut self,
        stream: StreamKey,
        viewer: SessionId,
        offer: &str,
        events: Recipient<MediaEvent>,
        now: Instant,
    ) -> Result<String, MediaError> {
        let program = self
            .programs
            .get(&stream)
            .map(|f| f.program.clone())
            .unwrap_or_default();
        let track = |kind: MediaKind| {
            let source = source_of(&program, kind);
            EgressTrack {
                // Stable for the connection: the msid does not follow the source.
                track: TrackId::random(),
                // Without a source the m-line waits; a session id no
                // ingress has never resolves to a route.
                publisher: source.map_or_else(SessionId::random, |s| s.publisher),
                participant: ParticipantId::random(),
                mid: source.map(|s| s.mid.clone()).unwrap_or_default(),
                kind,
                purpose: Purpose::Main,
                mute: false,
                user_id: PROGRAM_LABEL.to_string(),
            }
        };
        let tracks = [track(MediaKind::Audio), track(MediaKind::Video)];
        let creds = new_credentials();
        let ufrag = creds.ufrag.clone();
        let mut rtc = build_rtc(&self.codecs, &self.cert, creds, &self.candidates, now);
        let (egress, answer) = Egress::answer_viewer_offer(&mut rtc, offer, tracks, now)?;
        let opened = egress.open_outs();
        let owner = PeerOwner {
            session: viewer,
            participant: ParticipantId::random(),
            events,
        };
        let mut peer = Peer::new(
            owner,
            rtc,
            ufrag,
            self.limits.clone(),
            Role::Egress(egress),
            now,
        );
        peer.remote_ufrag = super::sdpfrag::ice_ufrag(offer).map(str::to_string);
        peer.bundle_mid = super::sdpfrag::first_mid(&answer).map(str::to_string);
        let key = self.place(peer, now);
        for out in opened {
            self.open_route(key, out, now);
        }
        self.programs.entry(stream).or_default().viewers.push(key);
        Ok(answer)
    }

    /// A peer is going away: forget it as a viewer and as a tap source.
    pub(super) fn forget_viewer(&mut self, key: PeerKey) {
        for feed in self.programs.values_mut() {
            feed.viewers.retain(|&v| v != key);
        }
        self.tap_routes
            .retain(|(publisher, _), _| *publisher != key);
    }

    /// Starts the live tap of a program.
    pub(super) fn open_tap(
        &mut self,
        stream: StreamKey,
        live: LiveId,
        ports: (u16, u16),
        events: Recipient<TapEvent>,
        now: Instant,
    ) {
        match LiveTap::new(live, ports.0, ports.1, events) {
            Ok(tap) => {
                self.programs.entry(stream.clone()).or_default().tap = Some(tap);
                self.route_tap(&stream, now);
                debug!(worker = self.index, lobby = %stream, "live tap opened");
            }
            Err(e) => {
                warn!(worker = self.index, lobby = %stream, cause = %e, "live tap socket failed")
            }
        }
    }

    /// The stream whose tap belongs to `live`.
    fn tap_stream(&self, live: LiveId) -> Option<StreamKey> {
        self.programs
            .iter()
            .find(|(_, f)| f.tap.as_ref().is_some_and(|t| t.live == live))
            .map(|(s, _)| s.clone())
    }

    /// ffmpeg (re)started: gate and request a keyframe.
    pub(super) fn refresh_tap(&mut self, live: LiveId, now: Instant) {
        let Some(stream) = self.tap_stream(live) else {
            return;
        };
        let Some(feed) = self.programs.get_mut(&stream) else {
            return;
        };
        let wants = feed.tap.as_mut().is_some_and(LiveTap::refresh);
        let video = feed.program.video.clone();
        if wants
            && let Some(video) = video
            && let Some(&publisher) = self.ingress_of.get(&video.publisher)
        {
            self.request_keyframe(publisher, Mid::from(video.mid.as_str()), now);
        }
    }

    /// ffmpeg is gone: the tap stops writing until the next refresh.
    pub(super) fn pause_tap(&mut self, live: LiveId) {
        if let Some(stream) = self.tap_stream(live)
            && let Some(tap) = self.programs.get_mut(&stream).and_then(|f| f.tap.as_mut())
        {
            tap.pause();
        }
    }

    /// Stops a live tap.
    pub(super) fn close_tap(&mut self, live: LiveId, now: Instant) {
        if let Some(stream) = self.tap_stream(live) {
            if let Some(feed) = self.programs.get_mut(&stream) {
                feed.tap = None;
            }
            self.route_tap(&stream, now);
        }
    }

    /// The lobby closed.
    pub(super) fn clear_program(&mut self, stream: &StreamKey, now: Instant) {
        if self.programs.remove(stream).is_some() {
            self.route_tap(stream, now);
        }
    }

    /// Rebuilds the tap routes of one stream from its program.
    fn route_tap(&mut self, stream: &StreamKey, _now: Instant) {
        self.tap_routes.retain(|_, (s, _, _)| s != stream);
        let Some(feed) = self.programs.get_mut(stream) else {
            return;
        };
        let Some(tap) = feed.tap.as_mut() else {
            return;
        };
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let source = source_of(&feed.program, kind);
            tap.set_source(kind, source.map(|s| s.track));
            if let Some(source) = source
                && let Some(&publisher) = self.ingress_of.get(&source.publisher)
            {
                self.tap_routes.insert(
                    (publisher, Mid::from(source.mid.as_str())),
                    (stream.clone(), kind, source.track),
                );
            }
        }
        tap.report();
    }

    /// Hands one packet to the tap that takes it, if any; returns whether
    /// the source should be asked for a keyframe.
    pub(super) fn tap_packet(
        &mut self,
        publisher: PeerKey,
        mid: Mid,
        packet: &RtpPacket,
        now: Instant,
    ) -> bool {
        let Some((stream, kind, track)) = self.tap_routes.get(&(publisher, mid)) else {
            return false;
        };
        let Some(tap) = self.programs.get_mut(stream).and_then(|f| f.tap.as_mut()) else {
            return false;
        };
        let peers = &mut self.peers;
        tap.forward(*kind, *track, packet, now, |pt| {
            let peer = peers.get_mut(publisher)?;
            peer.rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| *p.pt() == pt)
                .copied()
        })
        .want_keyframe
    }
}
