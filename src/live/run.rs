//! One ffmpeg run: spawn it, turn its `-progress` output into progress
//! events, keep the last lines of its stderr for `lastError`, stop it
//! gracefully (SIGINT lets it finish the FLV and close the RTMP session)
//! and kill it when it does not stop within the grace period. Everything
//! ends in exactly one [`RunEvent::Exited`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use actix::{Message, Recipient};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::oneshot;
use tracing::debug;

/// How long ffmpeg gets to finish after SIGINT before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// When a second SIGINT follows the first. ffmpeg's first SIGINT is only
/// checked between packets, so without input (no source) it would sit in
/// a blocking read; the second one interrupts the read, and ffmpeg still
/// writes its trailer and closes the RTMP session.
const SECOND_INTERRUPT: Duration = Duration::from_millis(500);
/// stderr lines kept for `lastError`.
const KEPT_LINES: usize = 4;

/// What a run reports to its restream.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum RunEvent {
    /// A `-progress` block: FLV bytes written so far by this run.
    Progress {
        /// The run.
        run: u64,
        /// `total_size`.
        total_size: u64,
    },
    /// The process ended.
    Exited {
        /// The run.
        run: u64,
        /// How.
        exit: RunExit,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExit {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Stopped on our request.
    pub requested: bool,
    /// Killed after the grace period.
    pub killed: bool,
    /// The last stderr line, unredacted (the restream redacts it).
    pub last_line: Option<String>,
    /// Could not even start.
    pub spawn_error: Option<String>,
}

/// The handle the restream keeps: dropping it does not stop the run.
#[derive(Debug)]
pub struct RunHandle {
    stop: Option<oneshot::Sender<()>>,
}

impl RunHandle {
    /// Asks ffmpeg to stop (SIGINT, then kill after the grace period).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts ffmpeg with `args`; events go to `events`.
pub fn spawn(
    ffmpeg: PathBuf,
    args: Vec<String>,
    run: u64,
    events: Recipient<RunEvent>,
) -> RunHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    actix::spawn(supervise(ffmpeg, args, run, events, stop_rx));
    RunHandle {
        stop: Some(stop_tx),
    }
}

async fn supervise(
    ffmpeg: PathBuf,
    args: Vec<String>,
    run: u64,
    events: Recipient<RunEvent>,
    mut stop: oneshot::Receiver<()>,
) {
    let spawned = tokio::process::Command::new(&ffmpeg)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            events.do_send(RunEvent::Exited {
                run,
                exit: RunExit {
                    code: None,
                    requested: false,
                    killed: false,
                    last_line: None,
                    spawn_error: Some(e.to_string()),
                },
            });
            return;
        }
    };
    let mut progress = child.stdout.take().map(|s| BufReader::new(s).lines());
    let mut stderr = child.stderr.take().map(|s| BufReader::new(s).lines());
    let mut kept: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
    let mut requested = false;
    let mut killed = false;
    // Fixed when the stop is requested (a sleep re-created per loop turn
    // would restart with every progress line).
    let mut kill_at = tokio::time::Instant::now();
    let mut nudge_at = tokio::time::Instant::now();
    let mut nudged = false;
    let status = loop {
        tokio::select! {
            line = next_line(&mut progress) => match line {
                Some(line) => {
                    if let Some(size) = line.strip_prefix("total_size=").and_then(|v| v.trim().parse().ok()) {
                        events.do_send(RunEvent::Progress { run, total_size: size });
                    }
                }
                None => progress = None,
            },
            line = next_line(&mut stderr) => match line {
                Some(line) if !line.trim().is_empty() => {
                    if kept.len() == KEPT_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
                Some(_) => {}
                None => stderr = None,
            },
            _ = &mut stop, if !requested => {
                requested = true;
                kill_at = tokio::time::Instant::now() + STOP_GRACE;
                nudge_at = tokio::time::Instant::now() + SECOND_INTERRUPT;
                interrupt(&child);
            },
            _ = tokio::time::sleep_until(nudge_at), if requested && !nudged => {
                nudged = true;
                interrupt(&child);
            },
            _ = tokio::time::sleep_until(kill_at), if requested && !killed => {
                killed = true;
                let _ = child.start_kill();
            },
            status = child.wait() => break status,
        }
    };
    // Lines still buffered after exit (the reason is usually the last one).
    if let Some(lines) = stderr.as_mut() {
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_millis(100), lines.next_line()).await
        {
            if !line.trim().is_empty() {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        }
    }
    let code = status.ok().and_then(|s| s.code());
    debug!(run, ?code, requested, killed, "ffmpeg exited");
    events.do_send(RunEvent::Exited {
        run,
        exit: RunExit {
            code,
            requested,
            killed,
            last_line: kept.pop_back(),
            spawn_error: None,
        },
    });
}

type Lines<R> = tokio::io::Lines<BufReader<R>>;

/// The next line of an optional stream; pending forever once it ended.
async fn next_line<R: tokio::io::AsyncRead + Unpin>(
    lines: &mut Option<Lines<R>>,
) -> Option<String> {
    match lines {
        Some(l) => l.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// SIGINT: ffmpeg writes its trailer and closes the RTMP connection.
fn interrupt(child: &tokio::process::Child) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    }
}
