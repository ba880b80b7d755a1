//! A str0m WHEP subscriber in server-offer mode: POST an empty body, answer
//! the server's offer by PATCH, then count what arrives (RTP mode, so
//! sequence numbers and payloads are visible as sent).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, RtcConfig};

use super::ClientError;

/// What the subscriber saw.
#[derive(Debug, Default)]
pub struct SubscriberState {
    /// ICE + DTLS connected.
    pub connected: AtomicBool,
    /// The media thread ended.
    pub ended: AtomicBool,
    /// Video RTP packets received.
    pub video_packets: AtomicU64,
    /// Audio RTP packets received.
    pub audio_packets: AtomicU64,
    /// Whether the first video packet started a keyframe (None before one).
    pub first_video_keyframe: Mutex<Option<bool>>,
    /// Extended sequence number of the first video packet.
    pub first_video_seq: Mutex<Option<u64>>,
    /// Video packets whose sequence number or RTP time jumped (by more
    /// than [`JUMP_SEQ`] packets or [`JUMP_TICKS`] ticks, either way) from
    /// the previous one: what a source switch without rebasing looks like.
    pub video_jumps: AtomicU64,
    /// (extended seq, RTP time) of the last video packet.
    last_video: Mutex<Option<(u64, u32)>>,
}

/// A sequence-number step larger than this counts as a jump.
pub const JUMP_SEQ: u64 = 100;
/// An RTP-time step larger than this (2 s at 90 kHz) counts as a jump.
pub const JUMP_TICKS: u32 = 180_000;

impl SubscriberState {
    /// Records one video packet's numbering.
    fn note_video(&self, seq: u64, ts: u32) {
        let Ok(mut last) = self.last_video.lock() else {
            return;
        };
        if let Some((prev_seq, prev_ts)) = *last {
            let seq_jump = seq.abs_diff(prev_seq) > JUMP_SEQ;
            let forward = ts.wrapping_sub(prev_ts);
            let backward = prev_ts.wrapping_sub(ts);
            if seq_jump || forward.min(backward) > JUMP_TICKS {
                self.video_jumps.fetch_add(1, Ordering::Relaxed);
            }
        }
        *last = Some((seq, ts));
    }
}

/// A server-offer WHEP subscriber.
#[derive(Debug)]
pub struct Subscriber {
    /// The server's offer.
    pub offer: String,
    /// `Location` of the WHEP resource.
    pub location: String,
    /// `Vestibule-Offer-Number`.
    pub number: u64,
    /// What arrived.
    pub state: Arc<SubscriberState>,
    stop: Arc<AtomicBool>,
    control: std::sync::mpsc::Sender<Control>,
    thread: Option<JoinHandle<()>>,
}

/// Requests to the media thread.
enum Control {
    /// Answer a server offer.
    Answer(String, std::sync::mpsc::Sender<Result<String, String>>),
    /// Send a PLI for every video stream.
    Pli,
}

impl Subscriber {
    /// POSTs to `{base}{endpoint}` (a `/whep` URL) with `token`, answers by
    /// PATCH and starts receiving.
    pub async fn connect(
        base: &str,
        endpoint: &str,
        token: &str,
    ) -> Result<Subscriber, ClientError> {
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{base}{endpoint}"))
            .bearer_auth(token)
            .send()
            .await?;
        let status = resp.status().as_u16();
        if status != 201 {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status { status, body });
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location").unwrap_or_default();
        let number = header("vestibule-offer-number")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let offer = resp.text().await?;

        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let local = socket.local_addr()?;
        let mut rtc = RtcConfig::new().set_rtp_mode(true).build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| ClientError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        // str0m rejects media-level i= lines (API.md "Track metadata"):
        // strip them as every str0m-based client must.
        let cleaned = crate::media::sdp_meta::prepare_offer(&offer)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let parsed =
            SdpOffer::from_sdp_string(&cleaned.sdp).map_err(|e| ClientError::Sdp(e.to_string()))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let patch = http
            .patch(format!("{base}{location}"))
            .bearer_auth(token)
            .header("Content-Type", "application/sdp")
            .body(answer.to_sdp_string())
            .send()
            .await?;
        let status = patch.status().as_u16();
        if status != 201 {
            let body = patch.text().await.unwrap_or_default();
            return Err(ClientError::Status { status, body });
        }

        let (state, stop, control, thread) = spawn_media(rtc, socket, local)?;
        Ok(Subscriber {
            offer,
            location,
            number,
            state,
            stop,
            control,
            thread: Some(thread),
        })
    }

    /// Standard WHEP (client-offer mode): POSTs a recvonly audio + video
    /// offer to `{base}{endpoint}` with `token` (a plain viewer when the
    /// token's user has no session in the lobby) and starts receiving.
    pub async fn connect_client_offer(
        base: &str,
        endpoint: &str,
        token: &str,
    ) -> Result<Subscriber, ClientError> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let local = socket.local_addr()?;
        let mut rtc = RtcConfig::new().set_rtp_mode(true).build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| ClientError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| ClientError::Sdp("nothing to offer".into()))?;
        let resp = reqwest::Client::new()
            .post(format!("{base}{endpoint}"))
            .bearer_auth(token)
            .header("Content-Type", "application/sdp")
            .body(offer.to_sdp_string())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.text().await.unwrap_or_default();
        if status != 201 {
            return Err(ClientError::Status { status, body });
        }
        let cleaned = crate::media::sdp_meta::prepare_offer(&body)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let answer = SdpAnswer::from_sdp_string(&cleaned.sdp)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let (state, stop, control, thread) = spawn_media(rtc, socket, local)?;
        Ok(Subscriber {
            offer: body,
            location,
            number: 0,
            state,
            stop,
            control,
            thread: Some(thread),
        })
    }

    /// Answers a server offer (from the signal channel) on this connection.
    pub async fn answer(&self, offer: &str) -> Result<String, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.control
            .send(Control::Answer(offer.to_string(), tx))
            .map_err(|_| "media thread gone".to_string())?;
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "no answer".to_string())?
    }

    /// Sends one PLI for every video stream (keyframe request toward the server).
    pub fn request_keyframe(&self) {
        let _ = self.control.send(Control::Pli);
    }

    /// Waits until ICE + DTLS are up.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.state.connected.load(Ordering::Acquire) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

type MediaThread = (
    Arc<SubscriberState>,
    Arc<AtomicBool>,
    std::sync::mpsc::Sender<Control>,
    JoinHandle<()>,
);

/// Runs the receive loop of a negotiated `Rtc` on its own thread.
fn spawn_media(
    mut rtc: str0m::Rtc,
    socket: UdpSocket,
    local: std::net::SocketAddr,
) -> Result<MediaThread, ClientError> {
    let state = Arc::new(SubscriberState::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
    let (control, control_rx) = std::sync::mpsc::channel::<Control>();
    let thread = std::thread::Builder::new()
        .name("whep-client".into())
        .spawn(move || {
            let mut buf = vec![0u8; 2000];
            let mut video_mids: Vec<str0m::media::Mid> = Vec::new();
            while !sp.load(Ordering::Acquire) {
                while let Ok(request) = control_rx.try_recv() {
                    match request {
                        Control::Answer(offer, reply) => {
                            let answer = crate::media::sdp_meta::prepare_offer(&offer)
                                .map_err(|e| e.to_string())
                                .and_then(|p| {
                                    SdpOffer::from_sdp_string(&p.sdp).map_err(|e| e.to_string())
                                })
                                .and_then(|o| {
                                    rtc.sdp_api().accept_offer(o).map_err(|e| e.to_string())
                                })
                                .map(|a| a.to_sdp_string());
                            let _ = reply.send(answer);
                        }
                        Control::Pli => {
                            for mid in &video_mids {
                                if let Some(rx) = rtc.direct_api().stream_rx_by_mid(*mid, None) {
                                    rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
                                }
                            }
                        }
                    }
                }
                let timeout = loop {
                    match rtc.poll_output() {
                        Ok(Output::Timeout(t)) => break Some(t),
                        Ok(Output::Transmit(t)) => {
                            let _ = socket.send_to(&t.contents, t.destination);
                        }
                        Ok(Output::Event(Event::Connected)) => {
                            st.connected.store(true, Ordering::Release)
                        }
                        Ok(Output::Event(Event::RtpPacket(p))) => {
                            let mid = rtc.direct_api().stream_rx(&p.header.ssrc).map(|s| s.mid());
                            let kind = mid.and_then(|m| rtc.media(m)).map(|m| m.kind());
                            if kind == Some(MediaKind::Video) {
                                if let Some(mid) = mid
                                    && !video_mids.contains(&mid)
                                {
                                    video_mids.push(mid);
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
                            } else if kind == Some(MediaKind::Audio) {
                                st.audio_packets.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Output::Event(_)) => {}
                        Err(_) => break None,
                    }
                };
                let Some(timeout) = timeout else { break };
                let wait = timeout
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), Duration::from_millis(50));
                let _ = socket.set_read_timeout(Some(wait));
                let input = match socket.recv_from(&mut buf) {
                    Ok((n, source)) => {
                        match Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                            Ok(r) => Input::Receive(Instant::now(), r),
                            Err(_) => continue,
                        }
                    }
                    Err(_) => Input::Timeout(Instant::now()),
                };
                if rtc.handle_input(input).is_err() {
                    break;
                }
            }
            st.ended.store(true, Ordering::Release);
        })?;
    Ok((state, stop, control, thread))
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
