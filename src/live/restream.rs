//! `Restream`: the actor that supervises one live output of a lobby.
//!
//! It opens the program tap on the lobby's home worker, and runs ffmpeg
//! whenever the program has a source: the tap reports the media it writes,
//! and a change of the video source (or of any codec) restarts ffmpeg so
//! the FLV headers (codec, size, profile) are always right; an audio-only
//! source change keeps ffmpeg running (the tap rebases). Failures restart
//! with capped exponential back-off while the live is wanted, each start
//! re-checking the destination. Without any source the output holds (no
//! ffmpeg, `source: "none"`), reports `lastError: "no source"` after
//! `live.no_source_grace_s`, and resumes as soon as a source appears.
//!
//! Status: `online` means ffmpeg's output grew within the last
//! [`ONLINE_WINDOW`]. Keys and output URLs are redacted from everything
//! this actor stores or logs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::{Actor, ActorContext as _, ActorFutureExt as _, Addr, AsyncContext as _, Context};
use actix::{Handler, SpawnHandle, WrapFuture as _};
use tracing::{info, warn};
use vestibule_actors::StreamKey;
use vestibule_actors::ids::{LiveId, TrackId};
use vestibule_actors::live::{LiveStatus, QueryLive, StopLive, TapEvent, TapMedia};
use vestibule_actors::lobby::{DetachLive, Lobby};
use vestibule_actors::media::{MediaPort, WorkerCmd};

use super::destination::{Destination, redact};
use super::ffmpeg::{self, TapPorts, VideoMode};
use super::metrics::LiveMetrics;
use super::run::{self, RunEvent, RunExit, RunHandle};
use crate::config::LiveConfig;

/// Output growth within this window counts as online.
const ONLINE_WINDOW: Duration = Duration::from_secs(3);
/// First and largest restart delays.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run online this long resets the back-off.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Keyframe re-requests after an ffmpeg start: ffmpeg binds its ports some
/// time after the spawn, and a keyframe sent before that is lost.
const START_KEYFRAMES: [Duration; 2] = [Duration::from_millis(700), Duration::from_millis(2000)];

/// Everything a restream is created with.
#[derive(Debug)]
pub struct RestreamSetup {
    /// Its id.
    pub id: LiveId,
    /// The lobby's stream (for the tap and logs).
    pub stream: StreamKey,
    /// The lobby.
    pub lobby: Addr<Lobby>,
    /// The lobby's home worker.
    pub home: usize,
    /// The media workers.
    pub media: MediaPort,
    /// Where to push.
    pub destination: Destination,
    /// `live.*`.
    pub config: Arc<LiveConfig>,
    /// Where SDP files go.
    pub work_dir: PathBuf,
    /// Metric families.
    pub metrics: LiveMetrics,
    /// ffmpeg's ports.
    pub ports: TapPorts,
}

/// Why the current run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopCause {
    /// The live ends.
    Stop,
    /// The media changed: start again at once.
    Switch,
    /// The program has no source: hold.
    NoSource,
}

impl StopCause {
    fn label(self) -> &'static str {
        match self {
            StopCause::Stop => "stopped",
            StopCause::Switch => "switched",
            StopCause::NoSource => "no_source",
        }
    }
}

/// The ffmpeg run in progress.
#[derive(Debug)]
struct Current {
    run: u64,
    handle: RunHandle,
    /// What it was started for.
    sdp: String,
    video_track: Option<TrackId>,
    output_url: String,
    sdp_path: PathBuf,
    started: Instant,
    /// FLV bytes so far.
    bytes: u64,
    last_growth: Option<Instant>,
    online_since: Option<Instant>,
    stopping: Option<StopCause>,
}

/// The restream actor.
#[derive(Debug)]
pub struct Restream {
    setup: RestreamSetup,
    /// Media the tap writes now (video, audio).
    sources: (Option<TapMedia>, Option<TapMedia>),
    current: Option<Current>,
    /// A destination check + spawn is in flight.
    starting: bool,
    /// A back-off restart is scheduled.
    retry: Option<SpawnHandle>,
    wanted: bool,
    runs: u64,
    started_at: String,
    bytes_done: u64,
    restarts: u32,
    last_error: Option<String>,
    backoff: Duration,
    no_source_since: Option<Instant>,
    /// The status label the gauge currently counts this restream under.
    gauge: &'static str,
}

impl Restream {
    /// A restream that starts pushing once the tap reports media.
    pub fn new(setup: RestreamSetup) -> Self {
        Self {
            setup,
            sources: (None, None),
            current: None,
            starting: false,
            retry: None,
            wanted: true,
            runs: 0,
            started_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            bytes_done: 0,
            restarts: 0,
            last_error: None,
            backoff: BACKOFF_FIRST,
            no_source_since: Some(Instant::now()),
            gauge: "offline",
        }
    }

    fn worker(&self, cmd: WorkerCmd) {
        let _ = self.setup.media.send(self.setup.home, cmd);
    }

    fn is_online(&self, now: Instant) -> bool {
        self.current.as_ref().is_some_and(|c| {
            c.stopping.is_none()
                && c.last_growth
                    .is_some_and(|t| now.duration_since(t) < ONLINE_WINDOW)
        })
    }

    /// Keeps the status gauge in step.
    fn update_gauge(&mut self, now: Instant) {
        let label = if self.is_online(now) {
            "online"
        } else {
            "offline"
        };
        if label != self.gauge {
            self.setup
                .metrics
                .lives
                .with_label_values(&[self.gauge])
                .dec();
            self.setup.metrics.lives.with_label_values(&[label]).inc();
            self.gauge = label;
        }
    }

    /// The SDP and video track ffmpeg should run with now, if any source.
    fn desired(&self) -> Option<(String, Option<TrackId>)> {
        let (video, audio) = (self.sources.0.as_ref(), self.sources.1.as_ref());
        if video.is_none() && audio.is_none() {
            return None;
        }
        Some((
            ffmpeg::sdp(video, audio, self.setup.ports),
            video.map(|v| v.track),
        ))
    }

    /// Brings ffmpeg in line with the sources.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        if !self.wanted {
            return;
        }
        let desired = self.desired();
        if desired.is_some() {
            self.no_source_since = None;
            if self.last_error.as_deref() == Some(NO_SOURCE) {
                self.last_error = None;
            }
        } else if self.no_source_since.is_none() {
            self.no_source_since = Some(Instant::now());
        }
        match (self.current.as_mut(), desired) {
            (Some(current), None) => {
                // A switch already under way became a loss of every source.
                if current.stopping == Some(StopCause::Switch) {
                    current.stopping = Some(StopCause::NoSource);
                }
                stop_run(current, StopCause::NoSource);
            }
            (Some(current), Some((sdp, video))) => {
                if current.sdp != sdp || current.video_track != video {
                    stop_run(current, StopCause::Switch);
                }
            }
            (None, Some(_)) if !self.starting && self.retry.is_none() => self.start(ctx),
            (None, _) => {}
        }
    }

    /// Checks the destination, then spawns ffmpeg.
    fn start(&mut self, ctx: &mut Context<Self>) {
        self.starting = true;
        let destination = self.setup.destination.clone();
        let config = Arc::clone(&self.setup.config);
        ctx.spawn(
            async move { destination.check(&config).await }
                .into_actor(self)
                .map(|checked, act, ctx| {
                    act.starting = false;
                    match checked {
                        Ok(url) => act.spawn_run(url, ctx),
                        Err(e) => {
                            act.setup.metrics.refused.inc();
                            act.last_error = Some(e.to_string());
                            warn!(lobby = %act.setup.stream, cause = %e, "live destination refused");
                            act.schedule_retry(ctx);
                        }
                    }
                }),
        );
    }

    fn spawn_run(&mut self, output_url: String, ctx: &mut Context<Self>) {
        if !self.wanted || self.current.is_some() {
            return;
        }
        let Some((sdp, video_track)) = self.desired() else {
            return;
        };
        self.runs += 1;
        let run = self.runs;
        let sdp_path = self
            .setup
            .work_dir
            .join(format!("live-{}-{run}.sdp", self.setup.id.bucket(1 << 30)));
        if let Err(e) = std::fs::write(&sdp_path, &sdp) {
            self.last_error = Some(format!("cannot write the SDP file: {e}"));
            self.schedule_retry(ctx);
            return;
        }
        let (video, audio) = (self.sources.0.as_ref(), self.sources.1.as_ref());
        let mode = video.map_or("none", |v| VideoMode::for_codec(&v.codec).as_str());
        let args = ffmpeg::arguments(&sdp_path, video, audio, &self.setup.config, &output_url);
        let handle = run::spawn(
            self.setup.config.ffmpeg_path.clone(),
            args,
            run,
            ctx.address().recipient(),
        );
        self.setup.metrics.runs.with_label_values(&[mode]).inc();
        info!(lobby = %self.setup.stream, run, mode, host = self.setup.destination.host(), "live ffmpeg started");
        self.current = Some(Current {
            run,
            handle,
            sdp,
            video_track,
            output_url,
            sdp_path,
            started: Instant::now(),
            bytes: 0,
            last_growth: None,
            online_since: None,
            stopping: None,
        });
        self.worker(WorkerCmd::RefreshTap {
            live: self.setup.id,
        });
        for delay in START_KEYFRAMES {
            ctx.run_later(delay, move |act, _ctx| {
                if act
                    .current
                    .as_ref()
                    .is_some_and(|c| c.run == run && c.bytes == 0)
                {
                    act.worker(WorkerCmd::RefreshTap { live: act.setup.id });
                }
            });
        }
    }

    fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
        if !self.wanted || self.retry.is_some() {
            return;
        }
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        self.retry = Some(ctx.run_later(delay, |act, ctx| {
            act.retry = None;
            act.restarts += 1;
            act.setup.metrics.restarts.inc();
            act.reconcile(ctx);
        }));
    }

    fn on_exit(&mut self, current: Current, exit: RunExit, ctx: &mut Context<Self>) {
        let _ = std::fs::remove_file(&current.sdp_path);
        // Nobody listens on the ports until the next run.
        self.worker(WorkerCmd::PauseTap {
            live: self.setup.id,
        });
        self.bytes_done += current.bytes;
        if current
            .online_since
            .is_some_and(|t| t.elapsed() >= HEALTHY_RUN)
        {
            self.backoff = BACKOFF_FIRST;
        }
        let reason = match (current.stopping, &exit) {
            (
                _,
                RunExit {
                    spawn_error: Some(_),
                    ..
                },
            ) => "spawn_failed",
            (Some(_), RunExit { killed: true, .. }) => "killed",
            (Some(cause), _) => cause.label(),
            (None, _) => "failed",
        };
        self.setup.metrics.exits.with_label_values(&[reason]).inc();
        match current.stopping {
            Some(StopCause::Stop) => {}
            Some(StopCause::Switch | StopCause::NoSource) => self.reconcile(ctx),
            None => {
                let why = exit
                    .spawn_error
                    .map(|e| format!("ffmpeg could not start: {e}"))
                    .or(exit.last_line)
                    .unwrap_or_else(|| format!("ffmpeg exited with code {:?}", exit.code));
                let why = redact(&why, &self.setup.destination, Some(&current.output_url));
                warn!(lobby = %self.setup.stream, run = current.run, code = ?exit.code, error = %why, "live ffmpeg failed");
                self.last_error = Some(why);
                self.schedule_retry(ctx);
            }
        }
        if !self.wanted {
            ctx.stop();
        }
    }

    fn tick(&mut self, _ctx: &mut Context<Self>) {
        let now = Instant::now();
        if let Some(since) = self.no_source_since
            && now.duration_since(since) >= Duration::from_secs(self.setup.config.no_source_grace_s)
            && self.last_error.as_deref() != Some(NO_SOURCE)
        {
            self.last_error = Some(NO_SOURCE.to_string());
        }
        self.update_gauge(now);
    }

    fn source_label(&self) -> String {
        self.sources
            .0
            .as_ref()
            .or(self.sources.1.as_ref())
            .map_or_else(|| "none".to_string(), |m| m.track.to_string())
    }
}

/// `lastError` of a live that has had no source for the grace period.
const NO_SOURCE: &str = "no source";

fn stop_run(current: &mut Current, cause: StopCause) {
    if current.stopping.is_none() {
        current.stopping = Some(cause);
        current.handle.stop();
    }
}

impl Actor for Restream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.setup.metrics.starts.inc();
        self.setup
            .metrics
            .lives
            .with_label_values(&[self.gauge])
            .inc();
        self.worker(WorkerCmd::OpenTap {
            stream: self.setup.stream.clone(),
            live: self.setup.id,
            video_port: self.setup.ports.video,
            audio_port: self.setup.ports.audio,
            events: ctx.address().recipient(),
        });
        ctx.run_interval(Duration::from_millis(500), |act, ctx| act.tick(ctx));
        info!(lobby = %self.setup.stream, host = self.setup.destination.host(), "live started");
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.worker(WorkerCmd::CloseTap {
            live: self.setup.id,
        });
        if let Some(mut current) = self.current.take() {
            // Not normally reached (the actor waits for the exit); the run
            // task still stops ffmpeg on its own.
            stop_run(&mut current, StopCause::Stop);
            let _ = std::fs::remove_file(&current.sdp_path);
        }
        self.setup
            .metrics
            .lives
            .with_label_values(&[self.gauge])
            .dec();
        info!(lobby = %self.setup.stream, "live stopped");
    }
}

impl Handler<TapEvent> for Restream {
    type Result = ();
    fn handle(&mut self, msg: TapEvent, ctx: &mut Context<Self>) {
        let TapEvent::Sources { video, audio } = msg;
        self.sources = (video, audio);
        self.reconcile(ctx);
    }
}

impl Handler<RunEvent> for Restream {
    type Result = ();
    fn handle(&mut self, msg: RunEvent, ctx: &mut Context<Self>) {
        match msg {
            RunEvent::Progress { run, total_size } => {
                let Some(current) = self.current.as_mut().filter(|c| c.run == run) else {
                    return;
                };
                if total_size > current.bytes {
                    let now = Instant::now();
                    self.setup
                        .metrics
                        .bytes_out
                        .inc_by(total_size - current.bytes);
                    current.bytes = total_size;
                    current.last_growth = Some(now);
                    if current.online_since.is_none() {
                        current.online_since = Some(now);
                        self.setup
                            .metrics
                            .time_to_online
                            .observe(now.duration_since(current.started).as_secs_f64());
                    }
                    self.update_gauge(now);
                }
            }
            RunEvent::Exited { run, exit } => {
                if self.current.as_ref().is_some_and(|c| c.run == run)
                    && let Some(current) = self.current.take()
                {
                    self.on_exit(current, exit, ctx);
                    self.update_gauge(Instant::now());
                }
            }
        }
    }
}

impl Handler<StopLive> for Restream {
    type Result = ();
    fn handle(&mut self, msg: StopLive, ctx: &mut Context<Self>) {
        if !self.wanted {
            return;
        }
        self.wanted = false;
        info!(lobby = %self.setup.stream, reason = msg.reason, "live stopping");
        self.setup.lobby.do_send(DetachLive { id: self.setup.id });
        self.worker(WorkerCmd::CloseTap {
            live: self.setup.id,
        });
        if let Some(retry) = self.retry.take() {
            ctx.cancel_future(retry);
        }
        match self.current.as_mut() {
            Some(current) => stop_run(current, StopCause::Stop),
            None => ctx.stop(),
        }
    }
}

impl Handler<QueryLive> for Restream {
    type Result = actix::MessageResult<QueryLive>;
    fn handle(&mut self, _msg: QueryLive, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        actix::MessageResult(LiveStatus {
            status: if self.is_online(now) {
                "online"
            } else {
                "offline"
            },
            source: self.source_label(),
            rtmp_host: self.setup.destination.host().to_string(),
            started_at: self.started_at.clone(),
            bytes_out: self.bytes_done + self.current.as_ref().map_or(0, |c| c.bytes),
            restarts: self.restarts,
            last_error: self.last_error.clone(),
        })
    }
}
