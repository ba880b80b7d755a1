//! An nginx-rtmp server in the foreground (one process, everything under
//! a temp folder, ports of its own) and ffprobe/ffmpeg readers of what
//! reaches it: the receiving end of the live tests.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::free_port;

const RTMP_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// A running nginx with the RTMP module: application `live`.
pub struct Nginx {
    child: Child,
    /// RTMP port on 127.0.0.1.
    pub rtmp_port: u16,
    /// HTTP port of the `/stat` page.
    pub stat_port: u16,
    _dir: tempfile::TempDir,
}

/// Whether nginx, its RTMP module and ffmpeg exist; under `CI=true` their
/// absence fails the test instead of skipping it.
pub fn tools_present() -> bool {
    let present =
        Path::new(RTMP_MODULE).exists() && which("nginx") && which("ffmpeg") && which("ffprobe");
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "nginx-rtmp or ffmpeg missing under CI=true (run scripts/setup-test-deps.sh)"
        );
        eprintln!("skipped: nginx with libnginx-mod-rtmp and ffmpeg are needed");
    }
    present
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args([
            "-c",
            &format!("command -v {program} || test -x /usr/sbin/{program}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Nginx {
    /// Starts nginx and waits until its RTMP port accepts.
    pub fn start() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let (rtmp_port, stat_port) = (free_port(), free_port());
        let conf = format!(
            "load_module {RTMP_MODULE};\n\
             user root;\n\
             daemon off;\nmaster_process off;\nworker_processes 1;\npid logs/nginx.pid;\n\
             error_log logs/error.log info;\nevents {{ worker_connections 64; }}\n\
             rtmp {{ access_log off; server {{ listen 127.0.0.1:{rtmp_port}; chunk_size 4096;\n\
               application live {{ live on; record off; }} }} }}\n\
             http {{ access_log off; client_body_temp_path tmp/body; proxy_temp_path tmp/proxy;\n\
               fastcgi_temp_path tmp/fcgi; uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
               server {{ listen 127.0.0.1:{stat_port}; location /stat {{ rtmp_stat all; }} }} }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("conf");
        let nginx = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let prefix = dir.path().display().to_string();
        let child = Command::new(nginx)
            .args([
                "-p",
                &prefix,
                "-c",
                "nginx.conf",
                "-e",
                &format!("{prefix}/logs/error.log"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", rtmp_port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(30));
        }
        Nginx {
            child,
            rtmp_port,
            stat_port,
            _dir: dir,
        }
    }

    /// nginx's pid (one process: `master_process off`), for CPU figures.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rtmp://127.0.0.1:PORT/live`.
    pub fn endpoint(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.rtmp_port)
    }

    /// The URL a reader plays `key` from.
    pub fn play_url(&self, key: &str) -> String {
        format!("{}/{key}", self.endpoint())
    }

    /// The `/stat` XML.
    pub async fn stat(&self) -> String {
        match reqwest::get(format!("http://127.0.0.1:{}/stat", self.stat_port)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether someone publishes `key` now.
    pub async fn is_publishing(&self, key: &str) -> bool {
        let stat = self.stat().await;
        stat.contains(&format!("<name>{key}</name>")) && stat.contains("<publishing/>")
    }

    /// nginx's error log (publish/play lines at level info).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command with a time limit; stdout as bytes (empty on failure).
pub async fn run_for(program: &str, args: &[String], limit: Duration) -> Vec<u8> {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) => out.stdout,
        _ => Vec::new(),
    }
}

/// ffprobe's streams of a URL or file (JSON `streams` array).
pub async fn probe_streams(url: &str) -> Vec<Value> {
    let args: Vec<String> = [
        "-v",
        "error",
        "-rw_timeout",
        "8000000",
        "-show_entries",
        "stream=codec_type,codec_name,profile,width,height,sample_rate,channels",
        "-of",
        "json",
        url,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_for("ffprobe", &args, Duration::from_secs(15)).await;
    serde_json::from_slice::<Value>(&out)
        .ok()
        .and_then(|v| v.get("streams").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// The stream of `kind` in a probe.
pub fn stream_of<'a>(streams: &'a [Value], kind: &str) -> Option<&'a Value> {
    streams
        .iter()
        .find(|s| s.get("codec_type").and_then(Value::as_str) == Some(kind))
}

/// Mean R, G, B of one decoded frame of `url`, scaled to 64x48.
pub async fn mean_rgb(url: &str) -> Option<[f64; 3]> {
    let args: Vec<String> = [
        "-v",
        "error",
        "-rw_timeout",
        "8000000",
        "-i",
        url,
        "-frames:v",
        "1",
        "-vf",
        "scale=64:48",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_for("ffmpeg", &args, Duration::from_secs(15)).await;
    if out.len() < 64 * 48 * 3 {
        return None;
    }
    let mut sum = [0f64; 3];
    for px in out.chunks_exact(3) {
        for (s, v) in sum.iter_mut().zip(px) {
            *s += f64::from(*v);
        }
    }
    let n = (out.len() / 3) as f64;
    Some(sum.map(|s| s / n))
}

/// `seconds` of mono 16 kHz audio of `url` as samples in [-1, 1].
pub async fn audio_samples(url: &str, seconds: u32) -> Vec<f32> {
    let args: Vec<String> = [
        "-v",
        "error",
        "-rw_timeout",
        "8000000",
        "-i",
        url,
        "-vn",
        "-t",
        &seconds.to_string(),
        "-ac",
        "1",
        "-ar",
        "16000",
        "-f",
        "s16le",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run_for("ffmpeg", &args, Duration::from_secs(20)).await;
    out.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// Power at `hz` (Goertzel) of samples taken at `rate`.
pub fn power_at(samples: &[f32], rate: f32, hz: f32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for &x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The frequency (in `step` Hz bins from `step` to `max`) with most power.
pub fn peak_frequency(samples: &[f32], rate: f32, step: f32, max: f32) -> f32 {
    let mut best = (0f32, 0f32);
    let mut hz = step;
    while hz <= max {
        let p = power_at(samples, rate, hz);
        if p > best.1 {
            best = (hz, p);
        }
        hz += step;
    }
    best.0
}
