//! One negotiated receive-only peer connection and what it counts, with
//! no opinion on who drives it: a [`super::subscriber::Subscriber`] runs
//! it on its own thread (like a real endpoint), a [`super::pool`] thread
//! runs hundreds of them behind one epoll (so that a load run measures the
//! server, not the wake-ups of its clients).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Event, Input, Output, Rtc};

use super::stats::Arrival;
use super::subscriber::SubscriberState;
use super::synthetic;

/// Requests to the thread that drives a [`RecvPeer`].
#[derive(Debug)]
pub(crate) enum Control {
    /// Answer a server offer.
    Answer(String, mpsc::Sender<Result<String, String>>),
    /// Send a PLI for every video stream.
    Pli,
}

/// A negotiated `Rtc` in RTP mode, its socket and its counters.
#[derive(Debug)]
pub(crate) struct RecvPeer {
    rtc: Rtc,
    pub(crate) socket: UdpSocket,
    local: SocketAddr,
    pub(crate) state: Arc<SubscriberState>,
    video_mids: Vec<Mid>,
}

impl RecvPeer {
    pub(crate) fn new(rtc: Rtc, socket: UdpSocket, local: SocketAddr) -> Self {
        Self {
            rtc,
            socket,
            local,
            state: Arc::new(SubscriberState::default()),
            video_mids: Vec::new(),
        }
    }

    /// Carries out one request.
    pub(crate) fn on_control(&mut self, request: Control) {
        match request {
            Control::Answer(offer, reply) => {
                let answer = crate::media::sdp_meta::prepare_offer(&offer)
                    .map_err(|e| e.to_string())
                    .and_then(|p| SdpOffer::from_sdp_string(&p.sdp).map_err(|e| e.to_string()))
                    .and_then(|o| {
                        self.rtc
                            .sdp_api()
                            .accept_offer(o)
                            .map_err(|e| e.to_string())
                    })
                    .map(|a| a.to_sdp_string());
                let _ = reply.send(answer);
            }
            Control::Pli => {
                for mid in &self.video_mids {
                    if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(*mid, None) {
                        rx.request_keyframe(KeyframeRequestKind::Pli);
                    }
                }
            }
        }
    }

    /// Feeds one datagram; false when the peer is dead.
    pub(crate) fn receive(&mut self, at: Instant, source: SocketAddr, data: &[u8]) -> bool {
        match Receive::new(Protocol::Udp, source, self.local, data) {
            Ok(r) => self.rtc.handle_input(Input::Receive(at, r)).is_ok(),
            Err(_) => true,
        }
    }

    /// Advances time; false when the peer is dead.
    pub(crate) fn timeout(&mut self, now: Instant) -> bool {
        self.rtc.handle_input(Input::Timeout(now)).is_ok()
    }

    /// Sends and handles everything str0m has; returns its next timeout,
    /// or `None` when the peer is dead.
    pub(crate) fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(Event::Connected)) => {
                    if let Ok(mut at) = self.state.connected_at.lock() {
                        at.get_or_insert_with(Instant::now);
                    }
                    self.state.connected.store(true, Ordering::Release);
                }
                Ok(Output::Event(Event::RtpPacket(p))) => self.on_rtp(&p),
                Ok(Output::Event(_)) => {}
                Err(_) => return None,
            }
        }
    }

    /// Marks the peer ended.
    pub(crate) fn end(&self) {
        self.state.ended.store(true, Ordering::Release);
    }

    fn on_rtp(&mut self, p: &RtpPacket) {
        let mid = self
            .rtc
            .direct_api()
            .stream_rx(&p.header.ssrc)
            .map(|s| s.mid());
        let kind = mid.and_then(|m| self.rtc.media(m)).map(|m| m.kind());
        let st = &self.state;
        let (video, keyframe_start, stamp) = match kind {
            Some(MediaKind::Video) => {
                if let Some(mid) = mid
                    && !self.video_mids.contains(&mid)
                {
                    self.video_mids.push(mid);
                }
                st.video_packets.fetch_add(1, Ordering::Relaxed);
                st.note_video(*p.seq_no, p.header.timestamp);
                if let Ok(mut first) = st.first_video_keyframe.lock()
                    && first.is_none()
                {
                    *first = Some(str0m::format::detect_vp8_keyframe(&p.payload));
                    if let Ok(mut seq) = st.first_video_seq.lock() {
                        *seq = Some(*p.seq_no);
                    }
                }
                match synthetic::vp8_frame_start(&p.payload) {
                    Some(frame) => (
                        true,
                        frame[0] & 1 == 0,
                        synthetic::send_time_us(frame, true),
                    ),
                    None => (true, false, None),
                }
            }
            Some(MediaKind::Audio) => {
                st.audio_packets.fetch_add(1, Ordering::Relaxed);
                (false, false, synthetic::send_time_us(&p.payload, false))
            }
            None => return,
        };
        let arrived = synthetic::stamp_us(p.timestamp);
        let arrival = Arrival {
            ssrc: *p.header.ssrc,
            seq: *p.seq_no,
            video,
            keyframe_start,
            bytes: p.payload.len(),
            // Stamps outside a plausible range are not ours (real media,
            // or another process's epoch): no latency then.
            latency_us: stamp
                .filter(|s| *s > 0 && *s <= arrived && arrived - s < 60_000_000)
                .map(|s| arrived - s),
            at: p.timestamp,
        };
        if let Ok(mut stats) = st.stats.lock() {
            stats.on_packet(&arrival);
        }
    }
}
