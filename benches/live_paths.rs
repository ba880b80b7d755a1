//! Live restreaming cost, copy path against x264 path: the release
//! `vestibule` binary restreams one str0m publisher's program into a real
//! nginx-rtmp, once from H.264 (ffmpeg copies the video) and once from VP8
//! (ffmpeg decodes it and encodes H.264 with x264), and reports per run the
//! time from `POST /live/start` to `online`, CPU of the ffmpeg child and of
//! the server, and the RTMP output bitrate, plus transcode / copy.
//!
//! Run it in a network namespace that has nothing but loopback: the server
//! is started with `live.allow_private = true` (nginx listens on
//! 127.0.0.1), and the namespace guarantees that neither it nor ffmpeg can
//! reach anything else. The bench refuses to run outside one.
//!
//! ```sh
//! unshare -rn sh -c 'ip link set lo up; cargo bench --bench live_paths -- --seconds 10'
//! ```
//!
//! Options (after `--`): `--seconds 15` (CPU window per run), `--warmup 3`
//! (seconds between `online` and the window), `--width 1280 --height 720
//! --fps 30` (the published picture), `--kbps 2500` (the publisher's video
//! bitrate, both codecs), `--pattern testsrc2` (the lavfi source: a
//! harder one such as `mandelbrot` costs x264 more), `--check 5` (seconds of the delivery check, 0 to
//! skip), `--json FILE` (default `target/live_paths.json`).
//!
//! Needs nginx with libnginx-mod-rtmp and ffmpeg with libx264, libvpx and
//! libopus (scripts/setup-test-deps.sh installs them). Figures are printed,
//! never asserted: the machines are shared and noisy, so compare the ratio
//! of one run rather than absolute numbers across runs.

#[path = "support/procfs.rs"]
mod procfs;
#[path = "../tests/common/rtmp.rs"]
mod rtmp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use vestibule::auth::TokenKeys;
use vestibule::client::encoded::{EncodeSpec, EncodedMedia, VideoCodec};
use vestibule::client::{PublishOptions, Publisher};

use rtmp::Nginx;

const STREAM: &str = "/space/demo/stream/demo";
const WHIP: &str = "/space/demo/stream/demo/whip";
/// The owner of `demo/demo` on a fresh store: only the owner may go live.
const OWNER: &str = "dev";
/// Status polling period while waiting for `online`.
const POLL: Duration = Duration::from_millis(50);
/// How long a live may take to come online before the run is given up.
const ONLINE_LIMIT: Duration = Duration::from_secs(20);
/// Length of the pre-encoded loop: long enough that the loop's restart
/// (a keyframe, the pattern jumping back) is a small part of the window.
const LOOP_SECONDS: u32 = 10;

/// What the user asked for.
#[derive(Debug)]
struct Args {
    seconds: u64,
    warmup: u64,
    width: u32,
    height: u32,
    fps: u32,
    kbps: u32,
    /// lavfi source of both publishers' video.
    pattern: String,
    check: u64,
    json: PathBuf,
}

/// Parses `--name value` pairs; `--bench` (added by `cargo bench`) is
/// ignored, anything else unknown is an error so a typo does not silently
/// measure the defaults.
fn args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 15,
        warmup: 3,
        width: 1280,
        height: 720,
        fps: 30,
        kbps: 2500,
        // A moving picture with a counter: a solid colour would leave x264
        // (and the VP8 decoder) almost nothing to do.
        pattern: "testsrc2".into(),
        check: 5,
        json: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/live_paths.json"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        let small =
            || number().and_then(|v| u32::try_from(v).map_err(|_| format!("{flag}: too large")));
        match flag.as_str() {
            "--seconds" => a.seconds = number()?.max(1),
            "--warmup" => a.warmup = number()?,
            "--width" => a.width = small()?,
            "--height" => a.height = small()?,
            "--fps" => a.fps = small()?.max(1),
            "--kbps" => a.kbps = small()?.max(50),
            "--check" => a.check = number()?,
            "--json" => a.json = PathBuf::from(value),
            "--pattern" => a.pattern = value.clone(),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// A TCP port that was free a moment ago (`rtmp.rs` needs this name).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A random alphanumeric string (JWT key, stream keys).
fn random_string(len: usize) -> String {
    use rand::Rng as _;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The server process, with its log file for failure reports.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    /// Starts the release binary (`cargo bench` builds it with the bench
    /// profile, which inherits release) and waits for `/health`.
    async fn start(dir: &Path, key: &str, rtmp_port: u16) -> Server {
        let port = free_port();
        let log = dir.join("server.log");
        let stderr = std::fs::File::create(&log).expect("server log file");
        let child = Command::new(env!("CARGO_BIN_EXE_vestibule"))
            .arg("serve")
            .env("VESTIBULE__SERVER__HOST", "127.0.0.1")
            .env("VESTIBULE__SERVER__PORT", port.to_string())
            .env("VESTIBULE__SERVER__DATA_DIR", dir.join("data"))
            .env("VESTIBULE__SECURITY__JWT__KEY", key)
            .env("VESTIBULE__MEDIA__BIND", "127.0.0.1")
            .env("VESTIBULE__MEDIA__PORT_BASE", "0")
            .env("VESTIBULE__HTTP__RATE_LIMIT_PER_IP", "0")
            .env("VESTIBULE__LIVE__ALLOW_PRIVATE", "true")
            .env(
                "VESTIBULE__LIVE__ALLOWED_PORTS",
                format!("1935,{rtmp_port}"),
            )
            .env("VESTIBULE__LOG__LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vestibule");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        for _ in 0..400 {
            if reqwest::get(format!("{}/health", server.base))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become healthy:\n{}", server.log_tail());
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM (the server stops its lives and their ffmpeg), then a kill
    /// if it is still there after 10 s.
    fn stop(mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One measured run.
#[derive(Debug)]
struct RunSpec {
    /// `copy` or `x264`: the server's video mode label.
    mode: &'static str,
    codec: VideoCodec,
    media: Arc<EncodedMedia>,
}

/// CPU and output counters at one instant.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    ffmpeg_cpu: f64,
    server_cpu: f64,
    nginx_cpu: f64,
    /// This process: the str0m publisher (and the polling).
    bench_cpu: f64,
    host: (u64, u64),
    bytes_out: u64,
}

/// What the delivery check saw at the RTMP end.
#[derive(Debug, Default, Clone, Copy)]
struct Delivery {
    /// Video frames per wall second a reader receives.
    fps: f64,
    /// Media time per wall second (1.0 = real time).
    speed: f64,
}

async fn live_status(server: &Server, token: &str, location: &str) -> Option<Value> {
    reqwest::Client::new()
        .get(server.url(location))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The restreaming ffmpeg: the process whose command line holds the
/// stream key and whose parent is the server (the delivery check's reader
/// also names the key, but is our child).
fn ffmpeg_pid(key: &str, server: u32) -> Option<u32> {
    let out = Command::new("pgrep").args(["-f", key]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|&pid| procfs::parent_pid(pid) == Some(server))
}

/// How the ffmpeg treats video, from its command line (`-c:v copy` or
/// `-c:v libx264`): proof that a run measured the path it is named after.
/// Only the codec is taken; the line also holds the stream key.
fn video_encoder(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let at = args.iter().position(|a| *a == b"-c:v")?;
    args.get(at + 1)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

async fn sample(server: &Server, token: &str, location: &str, ffmpeg: u32, nginx: u32) -> Sample {
    let bytes_out = live_status(server, token, location)
        .await
        .and_then(|s| s["bytesOut"].as_u64())
        .unwrap_or(0);
    Sample {
        at: Instant::now(),
        ffmpeg_cpu: procfs::cpu_seconds(ffmpeg),
        server_cpu: procfs::cpu_seconds(server.pid()),
        nginx_cpu: procfs::cpu_seconds(nginx),
        bench_cpu: procfs::cpu_seconds(std::process::id()),
        host: procfs::host_ticks(),
        bytes_out,
    }
}

/// Plays `url` with a copying ffmpeg for `seconds` and measures received
/// frames and media time per wall second between its progress reports,
/// skipping the first second (the join burst of a reader).
async fn delivery(url: &str, seconds: u64) -> Option<Delivery> {
    let mut child = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-nostats",
            "-rw_timeout",
            "8000000",
            "-i",
            url,
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "null",
            "-progress",
            "pipe:1",
            "-stats_period",
            "0.5",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // (wall, frames, media µs) at each `progress=` line.
    let mut reports: Vec<(Instant, u64, u64)> = Vec::new();
    let (mut frame, mut out_us) = (0u64, 0u64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds + 3);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, lines.next_line()).await {
        if let Some(v) = line.strip_prefix("frame=") {
            frame = v.trim().parse().unwrap_or(frame);
        } else if let Some(v) = line.strip_prefix("out_time_us=") {
            out_us = v.trim().parse().unwrap_or(out_us);
        } else if line.starts_with("progress=") {
            reports.push((Instant::now(), frame, out_us));
        }
    }
    let _ = child.kill().await;
    let first = reports.first()?.0;
    let steady: Vec<_> = reports
        .into_iter()
        .filter(|r| r.0.duration_since(first) >= Duration::from_secs(1))
        .collect();
    let (a, b) = (steady.first()?, steady.last()?);
    let wall = b.0.duration_since(a.0).as_secs_f64();
    if wall < 1.0 {
        return None;
    }
    Some(Delivery {
        fps: (b.1.saturating_sub(a.1)) as f64 / wall,
        speed: (b.2.saturating_sub(a.2)) as f64 / 1e6 / wall,
    })
}

/// One run: publish, go live, wait for `online`, measure, stop.
async fn run(
    args: &Args,
    spec: &RunSpec,
    server: &Server,
    nginx: &Nginx,
    token: &str,
) -> Result<Value, String> {
    let opts = PublishOptions {
        media: Some(Arc::clone(&spec.media)),
        ..PublishOptions::default()
    };
    let mut publisher = Publisher::connect(&server.base, WHIP, token, opts)
        .await
        .map_err(|e| format!("publish: {e}"))?;
    if !publisher.wait_connected(Duration::from_secs(10)).await {
        return Err("the publisher did not connect".into());
    }
    // Let the lobby settle (track published, program chosen).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = live(args, spec, server, nginx, token).await;
    let _ = publisher.delete(token).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    result
}

/// The live part of a run, with the publisher sending.
async fn live(
    args: &Args,
    spec: &RunSpec,
    server: &Server,
    nginx: &Nginx,
    token: &str,
) -> Result<Value, String> {
    let http = reqwest::Client::new();
    let key = format!("bench{}{}", spec.mode, random_string(16));
    let started = Instant::now();
    let resp = http
        .post(server.url(&format!("{STREAM}/live/start")))
        .bearer_auth(token)
        .json(&json!({"rtmpEndpoint": nginx.endpoint(), "rtmpKey": key}))
        .send()
        .await
        .map_err(|e| format!("live/start: {e}"))?;
    if resp.status().as_u16() != 201 {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(format!("live/start answered {status}: {body}"));
    }
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or("live/start without Location")?;
    let result = measure(args, spec, server, nginx, token, &key, &location, started).await;
    let _ = http
        .delete(server.url(&location))
        .bearer_auth(token)
        .send()
        .await;
    // ffmpeg gets SIGINT, finishes the FLV and exits; wait for it so the
    // next run starts on a quiet machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ffmpeg_pid(&key, server.pid()).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    result
}

#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename the arguments"
)]
async fn measure(
    args: &Args,
    spec: &RunSpec,
    server: &Server,
    nginx: &Nginx,
    token: &str,
    key: &str,
    location: &str,
    started: Instant,
) -> Result<Value, String> {
    let mut last = Value::Null;
    let to_online = loop {
        if let Some(status) = live_status(server, token, location).await {
            if status["status"] == "online" {
                break started.elapsed();
            }
            last = status;
        }
        if started.elapsed() > ONLINE_LIMIT {
            return Err(format!(
                "not online within {ONLINE_LIMIT:?}: {last}\n{}",
                server.log_tail()
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    let ffmpeg = ffmpeg_pid(key, server.pid()).ok_or("no ffmpeg child with the key")?;
    let encoder = video_encoder(ffmpeg).unwrap_or_default();
    let expected = if spec.mode == "copy" {
        "copy"
    } else {
        "libx264"
    };
    if encoder != expected {
        return Err(format!("ffmpeg runs -c:v {encoder:?}, not {expected}"));
    }
    let nginx_pid = nginx.pid();
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let a = sample(server, token, location, ffmpeg, nginx_pid).await;
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let b = sample(server, token, location, ffmpeg, nginx_pid).await;
    let status = live_status(server, token, location)
        .await
        .unwrap_or(Value::Null);
    let same_ffmpeg = ffmpeg_pid(key, server.pid()) == Some(ffmpeg);
    let delivered = if args.check > 0 {
        delivery(&nginx.play_url(key), args.check).await
    } else {
        None
    };
    let wall = b.at.duration_since(a.at).as_secs_f64();
    let pct = |x: f64, y: f64| (y - x) * 100.0 / wall;
    let (busy, total) = (b.host.0 - a.host.0, b.host.1 - a.host.1);
    let host_busy_pct = if total > 0 {
        busy as f64 * 100.0 / total as f64
    } else {
        0.0
    };
    let out_kbps = b.bytes_out.saturating_sub(a.bytes_out) as f64 * 8.0 / wall / 1000.0;
    Ok(json!({
        "mode": spec.mode,
        "source_codec": format!("{:?}", spec.codec),
        "time_to_online_ms": (to_online.as_secs_f64() * 1000.0).round(),
        "window_s": wall,
        "ffmpeg_cpu_pct": pct(a.ffmpeg_cpu, b.ffmpeg_cpu),
        "server_cpu_pct": pct(a.server_cpu, b.server_cpu),
        "nginx_cpu_pct": pct(a.nginx_cpu, b.nginx_cpu),
        "publisher_cpu_pct": pct(a.bench_cpu, b.bench_cpu),
        "host_busy_pct": host_busy_pct,
        "output_kbps": out_kbps,
        "delivered_fps": delivered.map(|d| d.fps),
        "delivered_speed": delivered.map(|d| d.speed),
        "ffmpeg_restarted": !same_ffmpeg || status["restarts"].as_u64().unwrap_or(0) > 0,
        "last_error": status["lastError"].clone(),
    }))
}

/// Encodes the two sources before anything runs, so encoding does not
/// share the CPU with a measured run.
fn encode(args: &Args, dir: &Path) -> Vec<RunSpec> {
    [("copy", VideoCodec::H264), ("x264", VideoCodec::Vp8)]
        .into_iter()
        .map(|(mode, codec)| {
            let sub = dir.join(mode);
            std::fs::create_dir_all(&sub).expect("media dir");
            let spec = EncodeSpec {
                width: args.width,
                height: args.height,
                fps: args.fps,
                pattern: Some(args.pattern.clone()),
                seconds: LOOP_SECONDS,
                codec,
                video_kbps: Some(args.kbps),
                ..EncodeSpec::default()
            };
            let started = Instant::now();
            let media = EncodedMedia::generate(&sub, &spec)
                .unwrap_or_else(|e| panic!("encoding the {codec:?} source: {e}"));
            eprintln!(
                "encoded {codec:?} {}x{}@{} {} kb/s in {:.1} s: {media:?}",
                args.width,
                args.height,
                args.fps,
                args.kbps,
                started.elapsed().as_secs_f64()
            );
            RunSpec {
                mode,
                codec,
                media: Arc::new(media),
            }
        })
        .collect()
}

fn number(run: &Value, field: &str) -> f64 {
    run[field].as_f64().unwrap_or(f64::NAN)
}

fn print_table(runs: &[Value]) {
    println!(
        "{:<5} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>6}",
        "mode",
        "online ms",
        "ffmpeg%",
        "server%",
        "nginx%",
        "client%",
        "host%",
        "out kb/s",
        "rx fps",
        "speed"
    );
    for r in runs {
        if let Some(error) = r["error"].as_str() {
            println!("{:<5} failed: {error}", r["mode"].as_str().unwrap_or("?"));
            continue;
        }
        println!(
            "{:<5} {:>10.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.0} {:>8.1} {:>6.2}",
            r["mode"].as_str().unwrap_or("?"),
            number(r, "time_to_online_ms"),
            number(r, "ffmpeg_cpu_pct"),
            number(r, "server_cpu_pct"),
            number(r, "nginx_cpu_pct"),
            number(r, "publisher_cpu_pct"),
            number(r, "host_busy_pct"),
            number(r, "output_kbps"),
            number(r, "delivered_fps"),
            number(r, "delivered_speed"),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("live_paths: {e}");
            std::process::exit(2);
        }
    };
    if !procfs::loopback_only_netns() {
        eprintln!(
            "live_paths: run me in a loopback-only network namespace (the server may push to \
             private addresses here):\n  unshare -rn sh -c 'ip link set lo up; cargo bench \
             --bench live_paths -- --seconds 10'"
        );
        std::process::exit(2);
    }
    if !rtmp::tools_present() {
        std::process::exit(2);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let specs = encode(&args, dir.path());
    let nginx = Nginx::start();
    let key = random_string(48);
    let server = Server::start(dir.path(), &key, nginx.rtmp_port).await;
    let token = TokenKeys::new(key.as_bytes(), true, Duration::ZERO)
        .issue(OWNER, None, false, None, Duration::from_secs(3600))
        .expect("token");

    let mut runs = Vec::new();
    for spec in &specs {
        eprintln!("run {}: {:?} source", spec.mode, spec.codec);
        let result = run(&args, spec, &server, &nginx, &token).await;
        runs.push(result.unwrap_or_else(|e| json!({"mode": spec.mode, "error": e})));
    }
    server.stop();
    drop(nginx);

    let ffmpeg_pct = |mode: &str| {
        runs.iter()
            .find(|r| r["mode"] == mode && r["error"].is_null())
            .map(|r| number(r, "ffmpeg_cpu_pct"))
    };
    let ratio = match (ffmpeg_pct("x264"), ffmpeg_pct("copy")) {
        (Some(t), Some(c)) if c > 0.0 => Some(t / c),
        _ => None,
    };
    println!(
        "live_paths: {} {}x{}@{} fps, {} kb/s sources, {} s windows",
        args.pattern, args.width, args.height, args.fps, args.kbps, args.seconds
    );
    print_table(&runs);
    match ratio {
        Some(r) => println!("ffmpeg CPU, transcode / copy: {r:.1}x"),
        None => println!("ffmpeg CPU, transcode / copy: n/a"),
    }
    let report = json!({
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "source_kbps": args.kbps,
        "pattern": args.pattern,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "runs": runs,
        "transcode_over_copy_ffmpeg_cpu": ratio,
    });
    if let Some(parent) = args.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let text = serde_json::to_vec_pretty(&report).unwrap_or_default();
    if let Err(e) = std::fs::write(&args.json, text) {
        eprintln!("live_paths: {}: {e}", args.json.display());
    }
}
