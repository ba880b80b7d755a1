//! A str0m WHEP subscriber: server-offer mode (POST an empty body, answer
//! the server's offer by PATCH) or standard client-offer WHEP, then count
//! what arrives (RTP mode, so sequence numbers and payloads are visible as
//! sent). Each subscriber runs on its own thread, or in a
//! [`ReceivePool`] when there are hundreds of them.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc, RtcConfig};

use super::ClientError;
use super::pool::ReceivePool;
use super::recv::{Control, RecvPeer};
use super::stats::ReceiveStats;

/// What the subscriber saw.
#[derive(Debug, Default)]
pub struct SubscriberState {
    /// ICE + DTLS connected.
    pub connected: AtomicBool,
    /// When ICE + DTLS connected.
    pub connected_at: Mutex<Option<Instant>>,
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
    /// Per-stream loss after the first keyframe, latency, first keyframe.
    pub stats: Mutex<ReceiveStats>,
    /// (extended seq, RTP time) of the last video packet.
    last_video: Mutex<Option<(u64, u32)>>,
}

/// A sequence-number step larger than this counts as a jump.
pub const JUMP_SEQ: u64 = 100;
/// An RTP-time step larger than this (2 s at 90 kHz) counts as a jump.
pub const JUMP_TICKS: u32 = 180_000;

impl SubscriberState {
    /// Records one video packet's numbering.
    pub(crate) fn note_video(&self, seq: u64, ts: u32) {
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

/// A WHEP subscriber.
#[derive(Debug)]
pub struct Subscriber {
    /// The server's offer (server-offer mode) or answer (client offer).
    pub offer: String,
    /// `Location` of the WHEP resource, as the server sent it.
    pub location: String,
    /// The resource's absolute URL.
    pub url: String,
    /// `Vestibule-Offer-Number`.
    pub number: u64,
    /// When the POST was sent.
    pub posted: Instant,
    /// From sending the POST to having the server's SDP (and, in
    /// server-offer mode, the PATCH with our answer accepted).
    pub answer_time: Duration,
    /// What arrived.
    pub state: Arc<SubscriberState>,
    driver: Driver,
}

/// Who runs the media of a subscriber.
#[derive(Debug)]
enum Driver {
    /// Its own thread.
    Thread {
        stop: Arc<AtomicBool>,
        control: std::sync::mpsc::Sender<Control>,
        thread: Option<JoinHandle<()>>,
    },
    /// A shared pool thread.
    Pool { pool: ReceivePool, id: u64 },
}

impl Driver {
    /// Starts `peer` on its own thread or in `pool`.
    fn start(peer: RecvPeer, pool: Option<&ReceivePool>) -> Result<Driver, ClientError> {
        Ok(match pool {
            Some(pool) => Driver::Pool {
                id: pool.add(peer),
                pool: pool.clone(),
            },
            None => {
                let stop = Arc::new(AtomicBool::new(false));
                let (control, control_rx) = std::sync::mpsc::channel();
                let thread = spawn_thread(peer, Arc::clone(&stop), control_rx)?;
                Driver::Thread {
                    stop,
                    control,
                    thread: Some(thread),
                }
            }
        })
    }

    fn send(&self, request: Control) -> bool {
        match self {
            Driver::Thread { control, .. } => control.send(request).is_ok(),
            Driver::Pool { pool, id } => pool.control(*id, request),
        }
    }
}

/// A receive-only `Rtc` in RTP mode with one host candidate on a fresh
/// loopback socket.
fn receiver() -> Result<(Rtc, UdpSocket, std::net::SocketAddr), ClientError> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    let mut rtc = RtcConfig::new().set_rtp_mode(true).build(Instant::now());
    let candidate = Candidate::host(local, "udp").map_err(|e| ClientError::Sdp(e.to_string()))?;
    rtc.add_local_candidate(candidate);
    Ok((rtc, socket, local))
}

impl Subscriber {
    /// POSTs to `{base}{endpoint}` (a `/whep` URL) with `token`, answers by
    /// PATCH and starts receiving on its own thread.
    pub async fn connect(
        base: &str,
        endpoint: &str,
        token: &str,
    ) -> Result<Subscriber, ClientError> {
        Self::connect_server_offer(&format!("{base}{endpoint}"), token, None).await
    }

    /// Server-offer WHEP to the full `url`: POST with an empty body, PATCH
    /// the answer to the `Location`; media on its own thread or in `pool`.
    pub async fn connect_server_offer(
        url: &str,
        token: &str,
        pool: Option<&ReceivePool>,
    ) -> Result<Subscriber, ClientError> {
        let http = reqwest::Client::new();
        let posted = Instant::now();
        let resp = http.post(url).bearer_auth(token).send().await?;
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

        let (mut rtc, socket, local) = receiver()?;
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
            .patch(resolve(url, &location))
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
        let answer_time = posted.elapsed();
        let peer = RecvPeer::new(rtc, socket, local);
        let state = Arc::clone(&peer.state);
        Ok(Subscriber {
            offer,
            url: resolve(url, &location),
            location,
            number,
            posted,
            answer_time,
            state,
            driver: Driver::start(peer, pool)?,
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
        Self::connect_client_offer_to(&format!("{base}{endpoint}"), token, None).await
    }

    /// Standard WHEP to the full `url` (any WHEP server); media on its own
    /// thread or in `pool`.
    pub async fn connect_client_offer_to(
        url: &str,
        token: &str,
        pool: Option<&ReceivePool>,
    ) -> Result<Subscriber, ClientError> {
        let (mut rtc, socket, local) = receiver()?;
        let mut change = rtc.sdp_api();
        change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| ClientError::Sdp("nothing to offer".into()))?;
        let posted = Instant::now();
        let resp = reqwest::Client::new()
            .post(url)
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
        let answer_time = posted.elapsed();
        let cleaned = crate::media::sdp_meta::prepare_offer(&body)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let answer = SdpAnswer::from_sdp_string(&cleaned.sdp)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let peer = RecvPeer::new(rtc, socket, local);
        let state = Arc::clone(&peer.state);
        Ok(Subscriber {
            offer: body,
            url: resolve(url, &location),
            location,
            number: 0,
            posted,
            answer_time,
            state,
            driver: Driver::start(peer, pool)?,
        })
    }

    /// Answers a server offer (from the signal channel) on this connection.
    pub async fn answer(&self, offer: &str) -> Result<String, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.driver.send(Control::Answer(offer.to_string(), tx)) {
            return Err("media thread gone".to_string());
        }
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "no answer".to_string())?
    }

    /// Sends one PLI for every video stream (keyframe request toward the server).
    pub fn request_keyframe(&self) {
        self.driver.send(Control::Pli);
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

    /// DELETEs the WHEP resource; returns the status.
    pub async fn delete(&self, token: &str) -> Result<u16, ClientError> {
        let status = reqwest::Client::new()
            .delete(&self.url)
            .bearer_auth(token)
            .send()
            .await?
            .status()
            .as_u16();
        Ok(status)
    }
}

/// `location` (absolute, or a path) resolved against the request `url`.
fn resolve(url: &str, location: &str) -> String {
    url::Url::parse(url)
        .and_then(|u| u.join(location))
        .map_or_else(|_| location.to_string(), String::from)
}

/// Runs a [`RecvPeer`] on its own thread, blocking on its socket.
fn spawn_thread(
    mut peer: RecvPeer,
    stop: Arc<AtomicBool>,
    control: std::sync::mpsc::Receiver<Control>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("whep-client".into())
        .spawn(move || {
            let mut buf = vec![0u8; 2000];
            while !stop.load(Ordering::Acquire) {
                while let Ok(request) = control.try_recv() {
                    peer.on_control(request);
                }
                let Some(timeout) = peer.drain() else { break };
                let wait = timeout
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), Duration::from_millis(50));
                let _ = peer.socket.set_read_timeout(Some(wait));
                let alive = match peer.socket.recv_from(&mut buf) {
                    Ok((n, source)) => peer.receive(Instant::now(), source, &buf[..n]),
                    Err(_) => peer.timeout(Instant::now()),
                };
                if !alive {
                    break;
                }
            }
            peer.end();
        })
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        match &mut self.driver {
            Driver::Thread { stop, thread, .. } => {
                stop.store(true, Ordering::Release);
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Driver::Pool { pool, id } => pool.remove(*id),
        }
    }
}
