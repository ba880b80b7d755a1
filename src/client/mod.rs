//! A str0m-based WHIP client: publishes synthetic VP8 + Opus (or real
//! H.264 or VP8 + Opus from [`encoded::EncodedMedia`]) with a `signal` data
//! channel, talks the signal protocol, and exposes hooks that tests need
//! (corrupting SRTP, vanishing without DELETE). Used by the integration
//! tests, the load tool and the CLI.
//!
//! The HTTP part is async (reqwest); the media part runs on its own thread
//! with a blocking UDP socket, like a real endpoint would.

pub mod encoded;
pub mod pool;
mod recv;
pub mod stats;
pub mod subscriber;
pub mod synthetic;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::media::signal::{self, SignalMessage};
use encoded::{EncodedMedia, VideoCodec};

/// Video frames written per loop wake-up at most (bounds catch-up bursts).
const MAX_FRAMES_PER_WAKE: u32 = 64;
/// Payload types of H.264 (packetization-mode 1) and its RTX when
/// publishing [`EncodedMedia`]: str0m's own for constrained baseline.
const H264_PT: u8 = 108;
const H264_RTX_PT: u8 = 109;
/// RTP ticks of one 20 ms Opus packet at 48 kHz.
const OPUS_TICKS: u64 = 960;

/// Why the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// HTTP transport error.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered something else than 201.
    #[error("server answered {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Body text.
        body: String,
    },
    /// SDP handling failed.
    #[error("sdp: {0}")]
    Sdp(String),
    /// Local socket error.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Publish an Opus track.
    pub audio: bool,
    /// Publish a video track: VP8, or H.264 with `media`.
    pub video: bool,
    /// Open a data channel with this label (`Some("signal")` normally).
    pub channel: Option<String>,
    /// `i=` line for every media section: (purpose, mute), e.g. (2, 2) main + live.
    pub info: Option<(u8, u8)>,
    /// Video frames per second (synthetic media only).
    pub fps: u32,
    /// Bytes per video frame (synthetic media only).
    pub frame_bytes: usize,
    /// Keyframe every this many frames (synthetic media only).
    pub gop: u32,
    /// Real media to replay instead of synthetic VP8 + Opus: the offer then
    /// has the media's codec only for video (H.264 with the stream's own
    /// `profile-level-id`, or VP8) and Opus for audio, and `fps`,
    /// `frame_bytes` and `gop` are ignored.
    /// Keyframe requests are counted but cannot be honoured: the media was
    /// encoded ahead of time with a keyframe every second.
    pub media: Option<Arc<EncodedMedia>>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            channel: Some("signal".into()),
            info: None,
            fps: 30,
            frame_bytes: 1200,
            gop: 60,
            media: None,
        }
    }
}

/// The 201 response of a WHIP POST.
#[derive(Debug, Clone)]
pub struct WhipResponse {
    /// Status code.
    pub status: u16,
    /// `Location`.
    pub location: String,
    /// `ETag`.
    pub etag: Option<String>,
    /// `vestibule_session=...` (name=value part of Set-Cookie).
    pub cookie: Option<String>,
    /// The full `Set-Cookie` header.
    pub set_cookie: Option<String>,
    /// `X-Req-Token`.
    pub req_token: Option<String>,
    /// `Link` headers.
    pub links: Vec<String>,
    /// The SDP answer.
    pub answer: String,
}

/// State shared between the media thread and the caller.
#[derive(Debug, Default)]
pub struct PublisherState {
    /// ICE + DTLS connected.
    pub connected: AtomicBool,
    /// When ICE + DTLS first connected.
    pub connected_at: Mutex<Option<Instant>>,
    /// The data channel opened.
    pub channel_open: AtomicBool,
    /// The media thread ended (disconnected or stopped).
    pub ended: AtomicBool,
    /// RTP datagrams sent.
    pub rtp_sent: AtomicU64,
    /// Keyframe requests (PLI/FIR) received from the server.
    pub keyframe_requests: AtomicU64,
    /// Corrupt the SRTP auth tag of every outgoing RTP packet while set.
    pub corrupt_rtp: AtomicBool,
    /// Signal messages received, as text.
    pub received: Mutex<Vec<String>>,
}

enum Control {
    Signal(Vec<u8>),
    /// Add a video section by a type-1 client offer; reply with (id, number) sent.
    AddVideo(Sender<Result<(u64, u64), String>>),
    /// Start an ICE restart: reply with the new local (ufrag, pwd).
    IceRestart(Sender<Result<(String, String), String>>),
    /// Finish it with the server's new credentials, given the last answer SDP.
    IceRestarted {
        answer: String,
        reply: Sender<Result<(), String>>,
    },
    /// Stop the media thread without closing the peer (a vanished client).
    Vanish,
    /// Close the peer politely.
    Close,
}

/// A publishing WHIP client.
#[derive(Debug)]
pub struct Publisher {
    /// The server's 201 response.
    pub response: WhipResponse,
    /// Our sections at connect time: (mid, is video).
    pub mids: Vec<(String, bool)>,
    /// When the POST was sent.
    pub posted: Instant,
    /// Time from sending the POST to having the answer.
    pub answer_time: Duration,
    /// Shared state of the media thread.
    pub state: Arc<PublisherState>,
    control: Sender<Control>,
    thread: Option<JoinHandle<()>>,
    http: reqwest::Client,
    base: String,
}

/// Inserts `i=<purpose> <mute> <label>` after every audio/video `m=` line.
pub fn add_info_lines(sdp: &str, purpose: u8, mute: u8) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        out.push_str(line);
        out.push_str("\r\n");
        if line.starts_with("m=audio") || line.starts_with("m=video") {
            out.push_str(&format!("i={purpose} {mute} test\r\n"));
        }
    }
    out
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

impl Publisher {
    /// POSTs an offer to `{base}{endpoint}` with `token` and starts media.
    pub async fn connect(
        base: &str,
        endpoint: &str,
        token: &str,
        opts: PublishOptions,
    ) -> Result<Publisher, ClientError> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let local = socket.local_addr()?;
        let mut config = RtcConfig::new().clear_codecs().enable_opus(true, false);
        match &opts.media {
            Some(media) if media.codec() == VideoCodec::H264 => config.codec_config().add_h264(
                Pt::from(H264_PT),
                Some(Pt::from(H264_RTX_PT)),
                true,
                media.profile_level_id(),
            ),
            // Synthetic media and real VP8 alike: str0m's VP8 payload
            // types, and its VP8 packetizer in frame mode.
            Some(_) | None => config = config.enable_vp8(true),
        }
        let mut rtc = config.build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| ClientError::Sdp(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        let mut mids = Vec::new();
        if opts.audio {
            mids.push((
                change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None),
                false,
            ));
        }
        if opts.video {
            mids.push((
                change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None),
                true,
            ));
        }
        let channel = opts.channel.clone().map(|label| change.add_channel(label));
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| ClientError::Sdp("nothing to offer".into()))?;
        let mut offer_sdp = offer.to_sdp_string();
        if let Some((purpose, mute)) = opts.info {
            offer_sdp = add_info_lines(&offer_sdp, purpose, mute);
        }
        let posted = Instant::now();
        let response = post_offer(
            &reqwest::Client::new(),
            &format!("{base}{endpoint}"),
            token,
            offer_sdp,
        )
        .await?;
        let answer_time = posted.elapsed();
        let answer = SdpAnswer::from_sdp_string(&response.answer)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| ClientError::Sdp(e.to_string()))?;
        let state = Arc::new(PublisherState::default());
        let (control, control_rx) = mpsc::channel();
        let mid_names = mids.iter().map(|(m, v)| (m.to_string(), *v)).collect();
        let media = MediaLoop {
            rtc,
            socket,
            local,
            mids,
            channel,
            opts,
            state: Arc::clone(&state),
            control: control_rx,
            pending: None,
            restart: None,
            keyframe_requested: false,
            next_id: 1,
            next_number: 1,
        };
        let thread = std::thread::Builder::new()
            .name("whip-client".into())
            .spawn(move || media.run())?;
        Ok(Publisher {
            response,
            mids: mid_names,
            posted,
            answer_time,
            state,
            control,
            thread: Some(thread),
            http: reqwest::Client::new(),
            base: base.to_string(),
        })
    }

    /// RFC 9725 ICE restart: new local credentials PATCHed to the resource
    /// with `If-Match: "*"`; the server's fragment gives its new
    /// credentials. Returns the status and the new `ETag` (and on 200 the
    /// restart is applied locally).
    pub async fn ice_restart(&mut self, token: &str) -> Result<(u16, Option<String>), ClientError> {
        let (tx, rx) = mpsc::channel();
        self.control
            .send(Control::IceRestart(tx))
            .map_err(|_| ClientError::Sdp("media thread gone".into()))?;
        let (ufrag, pwd) = recv_reply(rx).await?;
        let frag = format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n");
        let resp = self
            .http
            .patch(format!("{}{}", self.base, self.response.location))
            .bearer_auth(token)
            .header("Content-Type", "application/trickle-ice-sdpfrag")
            .header("If-Match", "\"*\"")
            .body(frag)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let etag = header(&resp, "etag");
        let body = resp.text().await?;
        if status != 200 {
            return Ok((status, etag));
        }
        let ice = |name: &str| {
            body.lines()
                .find_map(|l| l.trim_end().strip_prefix(name))
                .map(str::to_string)
        };
        let (Some(server_ufrag), Some(server_pwd)) = (ice("a=ice-ufrag:"), ice("a=ice-pwd:"))
        else {
            return Err(ClientError::Sdp(format!(
                "restart fragment without credentials: {body}"
            )));
        };
        let answer = crate::media::sdpfrag::with_ice_credentials(
            &self.response.answer,
            &server_ufrag,
            &server_pwd,
        );
        let (tx, rx) = mpsc::channel();
        self.control
            .send(Control::IceRestarted {
                answer: answer.clone(),
                reply: tx,
            })
            .map_err(|_| ClientError::Sdp("media thread gone".into()))?;
        recv_reply(rx).await?;
        self.response.answer = answer;
        if let Some(tag) = &etag {
            self.response.etag = Some(tag.clone());
        }
        Ok((status, etag))
    }

    /// Waits until ICE + DTLS (and the data channel, if any) are up.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.state.connected.load(Ordering::Acquire)
                && self.state.channel_open.load(Ordering::Acquire)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Sends raw bytes on the data channel.
    pub fn send_signal(&self, bytes: Vec<u8>) {
        let _ = self.control.send(Control::Signal(bytes));
    }

    /// Sends a mute message (type 3) for one of our mids.
    pub fn send_mute(&self, id: u64, mid: &str, mute: bool) {
        self.send_signal(signal::encode(&SignalMessage::Mute {
            id,
            mid: mid.to_string(),
            mute,
        }));
    }

    /// Offers one more video section on the signal channel; returns the
    /// (id, number) of the offer.
    pub async fn add_video(&self) -> Result<(u64, u64), String> {
        let (tx, rx) = mpsc::channel();
        self.control
            .send(Control::AddVideo(tx))
            .map_err(|_| "media thread gone".to_string())?;
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "no reply".to_string())?
    }

    /// The first mid of the given kind.
    pub fn mid(&self, video: bool) -> Option<&str> {
        self.mids
            .iter()
            .find(|(_, v)| *v == video)
            .map(|(m, _)| m.as_str())
    }

    /// The server's media address from the answer's first host candidate.
    pub fn server_media_addr(&self) -> Option<SocketAddr> {
        self.response.answer.lines().find_map(|l| {
            let c = l.strip_prefix("a=candidate:")?;
            let parts: Vec<&str> = c.split_whitespace().collect();
            format!("{}:{}", parts.get(4)?, parts.get(5)?).parse().ok()
        })
    }

    /// Signal messages received so far.
    pub fn received(&self) -> Vec<String> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Stops sending anything, without DELETE or DTLS close: the server
    /// must notice by itself.
    pub fn vanish(&mut self) {
        let _ = self.control.send(Control::Vanish);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// DELETEs the resource with `token`; returns the status.
    pub async fn delete(&mut self, token: &str) -> Result<u16, ClientError> {
        let url = format!("{}{}", self.base, self.response.location);
        let status = self
            .http
            .delete(url)
            .bearer_auth(token)
            .send()
            .await?
            .status()
            .as_u16();
        let _ = self.control.send(Control::Close);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        Ok(status)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Vanish);
    }
}

/// POSTs an SDP offer; returns the parsed 201 or the error status.
pub async fn post_offer(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    offer: String,
) -> Result<WhipResponse, ClientError> {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .header("Content-Type", "application/sdp")
        .body(offer)
        .send()
        .await?;
    let status = resp.status().as_u16();
    if status != 201 {
        let body = resp.text().await.unwrap_or_default();
        return Err(ClientError::Status { status, body });
    }
    let set_cookie = header(&resp, "set-cookie");
    let response = WhipResponse {
        status,
        location: header(&resp, "location").unwrap_or_default(),
        etag: header(&resp, "etag"),
        cookie: set_cookie
            .as_ref()
            .and_then(|c| c.split(';').next())
            .map(str::to_string),
        set_cookie,
        req_token: header(&resp, "x-req-token"),
        links: resp
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect(),
        answer: resp.text().await?,
    };
    Ok(response)
}

/// The media thread of a [`Publisher`].
struct MediaLoop {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// Our sections: (mid, is video).
    mids: Vec<(Mid, bool)>,
    channel: Option<ChannelId>,
    opts: PublishOptions,
    state: Arc<PublisherState>,
    control: Receiver<Control>,
    pending: Option<(u64, SdpPendingOffer, Mid)>,
    /// An ICE restart whose new remote credentials are awaited.
    restart: Option<SdpPendingOffer>,
    /// The server asked for a keyframe.
    keyframe_requested: bool,
    next_id: u64,
    next_number: u64,
}

impl MediaLoop {
    fn run(mut self) {
        let started = Instant::now();
        let media = self.opts.media.clone();
        let fps = media.as_ref().map_or(self.opts.fps, |m| m.fps()).max(1);
        let frame_interval = Duration::from_secs(1) / fps;
        let mut next_video = started;
        let mut next_audio = started;
        let mut frame_no: u64 = 0;
        let mut audio_no: u64 = 0;
        let mut buf = vec![0u8; 2000];
        loop {
            // Commands.
            loop {
                match self.control.try_recv() {
                    Ok(Control::Signal(bytes)) => self.write_channel(&bytes),
                    Ok(Control::AddVideo(reply)) => {
                        let _ = reply.send(self.offer_video());
                    }
                    Ok(Control::IceRestart(reply)) => {
                        let _ = reply.send(self.start_ice_restart());
                    }
                    Ok(Control::IceRestarted { answer, reply }) => {
                        let _ = reply.send(self.finish_ice_restart(&answer));
                    }
                    Ok(Control::Vanish) => return self.end(),
                    Ok(Control::Close) => {
                        let _ = self.rtc.close();
                        self.flush_only();
                        return self.end();
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return self.end(),
                }
            }
            let now = Instant::now();
            if self.state.connected.load(Ordering::Acquire) {
                // Stamped on the process-wide epoch so that receivers in
                // this process measure end-to-end latency.
                let send_us = synthetic::stamp_us(now);
                // Catch up on every frame that is due (high frame rates in
                // tests and load runs), polling between writes as str0m's
                // frame mode requires.
                let mut burst = 0;
                while now >= next_video && burst < MAX_FRAMES_PER_WAKE {
                    let frame = match &media {
                        Some(media) => media.access_unit(frame_no).to_vec(),
                        None => {
                            let keyframe = frame_no.is_multiple_of(u64::from(self.opts.gop.max(1)))
                                || std::mem::take(&mut self.keyframe_requested);
                            synthetic::vp8_frame(keyframe, self.opts.frame_bytes, send_us, 320, 240)
                        }
                    };
                    let ts = MediaTime::new(
                        frame_no * 90_000 / u64::from(fps),
                        str0m::media::Frequency::NINETY_KHZ,
                    );
                    self.write_media(true, now, ts, &frame);
                    frame_no += 1;
                    next_video += frame_interval;
                    burst += 1;
                    // str0m releases queued packets on a timeout input, not
                    // on poll alone: without this a burst leaves one packet
                    // per loop wake-up.
                    if self
                        .rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .is_err()
                        || self.poll().is_none()
                    {
                        return self.end();
                    }
                }
                if now >= next_audio {
                    let (samples, packet) = match &media {
                        // Real Opus must be timed by its packet count: a
                        // decoder plays each packet for exactly 20 ms.
                        Some(media) => {
                            (audio_no * OPUS_TICKS, media.opus_packet(audio_no).to_vec())
                        }
                        None => (
                            now.duration_since(started).as_millis() as u64 * 48,
                            synthetic::opus_packet(send_us),
                        ),
                    };
                    let ts = MediaTime::new(samples, str0m::media::Frequency::FORTY_EIGHT_KHZ);
                    self.write_media(false, now, ts, &packet);
                    audio_no += 1;
                    next_audio += Duration::from_millis(20);
                    // As for video: without a timeout input str0m holds
                    // the packet until the next wake-up (measured: 4-8 ms
                    // of added audio latency in the load tool).
                    if self
                        .rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .is_err()
                    {
                        return self.end();
                    }
                }
            }
            let timeout = match self.poll() {
                Some(t) => t,
                None => return self.end(),
            };
            let mut wake = timeout;
            if self.state.connected.load(Ordering::Acquire) {
                wake = wake.min(next_video).min(next_audio);
            }
            let wait = wake
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let _ = self.socket.set_read_timeout(Some(wait));
            let input = match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => match Receive::new(Protocol::Udp, source, self.local, &buf[..n])
                {
                    Ok(r) => Input::Receive(Instant::now(), r),
                    Err(_) => continue,
                },
                Err(_) => Input::Timeout(Instant::now()),
            };
            if self.rtc.handle_input(input).is_err() {
                return self.end();
            }
        }
    }

    fn end(&self) {
        self.state.ended.store(true, Ordering::Release);
    }

    /// Drains str0m; returns its next timeout, or None when the peer died.
    fn poll(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Some(t),
                Ok(Output::Transmit(t)) => {
                    let mut data: Vec<u8> = t.contents.into();
                    if is_rtp(&data) {
                        self.state.rtp_sent.fetch_add(1, Ordering::Relaxed);
                        if self.state.corrupt_rtp.load(Ordering::Relaxed)
                            && let Some(last) = data.last_mut()
                        {
                            *last ^= 0xff;
                        }
                    }
                    let _ = self.socket.send_to(&data, t.destination);
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(_) => return None,
            }
        }
    }

    fn flush_only(&mut self) {
        for _ in 0..32 {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(_)) => {}
                _ => return,
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                if let Ok(mut at) = self.state.connected_at.lock() {
                    at.get_or_insert_with(Instant::now);
                }
                self.state.connected.store(true, Ordering::Release);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.state.connected.store(false, Ordering::Release);
            }
            Event::ChannelOpen(id, _) if self.channel.is_none_or(|c| c == id) => {
                self.channel = Some(id);
                self.state.channel_open.store(true, Ordering::Release);
            }
            Event::ChannelClose(id) if self.channel == Some(id) => {
                self.state.channel_open.store(false, Ordering::Release);
            }
            Event::KeyframeRequest(_) => {
                // Like a real encoder: a PLI/FIR makes the next synthetic
                // frame a keyframe. Pre-encoded media has a fixed 1 s GOP
                // and only counts the request.
                self.keyframe_requested = true;
                self.state.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            }
            Event::ChannelData(data) => {
                if let Ok(SignalMessage::Answer { number, sdp, .. }) =
                    signal::decode(&data.data, 1 << 20)
                {
                    self.on_answer(number, &sdp);
                }
                if let Ok(mut r) = self.state.received.lock() {
                    r.push(String::from_utf8_lossy(&data.data).into_owned());
                }
            }
            _ => {}
        }
        if self.opts.channel.is_none() {
            // No channel requested: treat the peer as ready once connected.
            let connected = self.state.connected.load(Ordering::Acquire);
            self.state.channel_open.store(connected, Ordering::Release);
        }
    }

    fn write_channel(&mut self, bytes: &[u8]) {
        if let Some(id) = self.channel
            && let Some(mut ch) = self.rtc.channel(id)
        {
            let _ = ch.write(true, bytes);
        }
    }

    fn write_media(&mut self, video: bool, now: Instant, ts: MediaTime, data: &[u8]) {
        let codec = match (video, self.opts.media.as_ref().map(|m| m.codec())) {
            (false, _) => Codec::Opus,
            (true, Some(VideoCodec::H264)) => Codec::H264,
            (true, Some(VideoCodec::Vp8) | None) => Codec::Vp8,
        };
        let mids: Vec<Mid> = self
            .mids
            .iter()
            .filter(|(_, v)| *v == video)
            .map(|(m, _)| *m)
            .collect();
        for mid in mids {
            let Some(writer) = self.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer
                .payload_params()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let _ = writer.write(pt, now, ts, data.to_vec());
        }
    }

    /// str0m's ICE restart: new local credentials in a new offer, which
    /// WHIP never sends whole (RFC 9725 carries only the credentials).
    fn start_ice_restart(&mut self) -> Result<(String, String), String> {
        let mut change = self.rtc.sdp_api();
        let creds = change.ice_restart(true);
        let (_offer, pending) = change.apply().ok_or("no change")?;
        self.restart = Some(pending);
        Ok((creds.ufrag, creds.pass))
    }

    /// Applies the server's restart answer (the last answer with the new
    /// credentials in place).
    fn finish_ice_restart(&mut self, answer: &str) -> Result<(), String> {
        let pending = self.restart.take().ok_or("no restart pending")?;
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| e.to_string())?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())
    }

    fn offer_video(&mut self) -> Result<(u64, u64), String> {
        if self.pending.is_some() {
            return Err("an offer is outstanding".into());
        }
        let mut change = self.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, pending) = change.apply().ok_or("no change")?;
        let mut sdp = offer.to_sdp_string();
        if let Some((purpose, mute)) = self.opts.info {
            sdp = add_info_lines(&sdp, purpose, mute);
        }
        let (id, number) = (self.next_id, self.next_number);
        self.next_id += 1;
        self.next_number += 1;
        self.pending = Some((number, pending, mid));
        let bytes = signal::encode(&SignalMessage::Offer {
            id,
            number,
            sdp,
            whep: None,
        });
        self.write_channel(&bytes);
        Ok((id, number))
    }

    fn on_answer(&mut self, number: u64, sdp: &str) {
        let Some((expected, _, _)) = &self.pending else {
            return;
        };
        if *expected != number {
            return;
        }
        let Some((_, pending, mid)) = self.pending.take() else {
            return;
        };
        let Ok(answer) = SdpAnswer::from_sdp_string(sdp) else {
            return;
        };
        if self.rtc.sdp_api().accept_answer(pending, answer).is_ok() {
            self.mids.push((mid, true));
        }
    }
}

/// Waits for a media-thread reply without blocking the async runtime.
async fn recv_reply<T: Send + 'static>(rx: Receiver<Result<T, String>>) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
        .await
        .map_err(|e| ClientError::Sdp(e.to_string()))?
        .map_err(|_| ClientError::Sdp("no reply from the media thread".into()))?
        .map_err(ClientError::Sdp)
}

/// RTP (not RTCP) per RFC 5761: version 2 and a payload type outside 64..=95.
fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && datagram[0] >> 6 == 2 && !(64..=95).contains(&(datagram[1] & 0x7f))
}
