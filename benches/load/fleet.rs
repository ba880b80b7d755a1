//! The simulated users: publishers first, then subscribers joined at the
//! configured rate, each join timed (POST -> answer, -> ICE/DTLS
//! connected, WHEP POST -> first keyframe). Per mode a subscriber is a
//! lobby session (WHIP with a signal channel + server-offer WHEP) or a
//! plain client-offer WHEP viewer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use vestibule::client::pool::ReceivePool;
use vestibule::client::subscriber::Subscriber;
use vestibule::client::{ClientError, PublishOptions, Publisher};

use super::args::{Args, Mode};
use super::target::{Role, Target};

/// How long a join may take to connect and to see its first keyframe.
const JOIN_LIMIT: Duration = Duration::from_secs(15);

/// One subscriber and the session it needs (lobby mode).
#[derive(Debug)]
pub struct Member {
    /// Lobby index.
    pub lobby: usize,
    /// Its WHIP session with the signal channel (lobby mode only), held
    /// so that the session lives as long as its WHEP connection.
    #[allow(dead_code, reason = "held for its lifetime, never read")]
    pub session: Option<Publisher>,
    /// Its WHEP connection.
    pub whep: Subscriber,
}

/// The setup times of one join, ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    /// POST -> answer of its first peer connection.
    pub answer_ms: f64,
    /// POST -> ICE/DTLS connected of that peer connection.
    pub connected_ms: Option<f64>,
    /// WHEP POST -> first keyframe received.
    pub first_keyframe_ms: Option<f64>,
}

/// Why a join failed.
#[derive(Debug)]
pub enum JoinFailure {
    /// The server said 429: a limit, not a knee.
    TooMany,
    /// Anything else.
    Other(String),
}

/// Everyone connected so far.
#[derive(Debug, Default)]
pub struct Fleet {
    /// Publishers, lobby by lobby.
    pub publishers: Vec<Publisher>,
    /// Their setup times.
    pub publisher_setup: Vec<Setup>,
    /// Subscribers.
    pub members: Vec<Member>,
    /// Subscriber setup times, all joins so far.
    pub setup: Vec<Setup>,
    /// Joins refused with 429.
    pub refused: usize,
    /// Other failed joins, with the first few reasons.
    pub failed: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn since_ms(at: Option<Instant>, from: Instant) -> Option<f64> {
    at.map(|a| ms(a.saturating_duration_since(from)))
}

fn failure(e: &ClientError) -> JoinFailure {
    match e {
        ClientError::Status { status: 429, .. } => JoinFailure::TooMany,
        e => JoinFailure::Other(e.to_string()),
    }
}

impl Fleet {
    fn note_failure(&mut self, f: JoinFailure) {
        match f {
            JoinFailure::TooMany => self.refused += 1,
            JoinFailure::Other(e) => self.failed.push(e),
        }
    }

    /// Subscribers of lobby `k` so far.
    pub fn count(&self, k: usize) -> usize {
        self.members.iter().filter(|m| m.lobby == k).count()
    }

    /// Connects every publisher (one after the other: their joins are
    /// not what is measured) and waits until all are connected.
    pub async fn join_publishers(&mut self, target: &Target, args: &Args) -> anyhow::Result<()> {
        for k in 0..args.lobbies {
            for n in 0..args.publishers {
                let token = target.token(k, Role::Publisher(n), args.mode)?;
                let opts = PublishOptions {
                    audio: args.audio,
                    video: true,
                    // Plain WHIP in standard mode; lobby sessions otherwise.
                    channel: (args.mode != Mode::Standard).then(|| "signal".to_string()),
                    // The owner's tracks are main: the program viewers see.
                    info: (n == 0 && args.mode != Mode::Standard).then_some((2, 2)),
                    fps: args.fps,
                    frame_bytes: args.frame_bytes(),
                    gop: args.gop(),
                    media: None,
                };
                match Publisher::connect("", &target.whip_url(k), &token, opts).await {
                    Ok(p) => {
                        self.publisher_setup.push(Setup {
                            answer_ms: ms(p.answer_time),
                            ..Setup::default()
                        });
                        self.publishers.push(p);
                    }
                    Err(e) => anyhow::bail!("publisher {n} of lobby {k}: {e}"),
                }
            }
        }
        for (p, setup) in self.publishers.iter().zip(&mut self.publisher_setup) {
            if !p.wait_connected(JOIN_LIMIT).await {
                anyhow::bail!("a publisher did not connect");
            }
            let at = p.state.connected_at.lock().ok().and_then(|a| *a);
            setup.connected_ms = since_ms(at, p.posted);
        }
        Ok(())
    }

    /// Joins subscribers until every lobby has `per_lobby`, starting
    /// `args.join_rate` joins per second (they overlap), and waits for
    /// each to see its first keyframe or give up.
    pub async fn join_subscribers(
        &mut self,
        target: &Arc<Target>,
        args: &Args,
        pool: &ReceivePool,
        per_lobby: usize,
    ) {
        let mut joins = JoinSet::new();
        let gap = Duration::from_secs_f64(1.0 / args.join_rate);
        let mut next = Instant::now();
        let have: Vec<usize> = (0..args.lobbies).map(|k| self.count(k)).collect();
        // Interleave lobbies so that each fills at the same pace.
        for n in 0..per_lobby {
            for (k, had) in have.iter().enumerate() {
                if n < *had {
                    continue;
                }
                tokio::time::sleep_until(next.into()).await;
                next += gap;
                let (target, pool, mode) = (Arc::clone(target), pool.clone(), args.mode);
                joins.spawn(async move { join_one(&target, &pool, mode, k, n).await });
            }
        }
        while let Some(done) = joins.join_next().await {
            match done {
                Ok(Ok((member, setup))) => {
                    self.members.push(member);
                    self.setup.push(setup);
                }
                Ok(Err(f)) => self.note_failure(f),
                Err(e) => self.failed.push(e.to_string()),
            }
        }
    }
}

/// One subscriber of lobby `k`, number `n`.
async fn join_one(
    target: &Target,
    pool: &ReceivePool,
    mode: Mode,
    k: usize,
    n: usize,
) -> Result<(Member, Setup), JoinFailure> {
    let token = target
        .token(k, Role::Subscriber(n), mode)
        .map_err(|e| JoinFailure::Other(e.to_string()))?;
    let (session, whep, mut setup) = match mode {
        Mode::Lobby => {
            let opts = PublishOptions {
                audio: false,
                video: false,
                ..PublishOptions::default()
            };
            let session = Publisher::connect("", &target.whip_url(k), &token, opts)
                .await
                .map_err(|e| failure(&e))?;
            let mut setup = Setup {
                answer_ms: ms(session.answer_time),
                ..Setup::default()
            };
            if !session.wait_connected(JOIN_LIMIT).await {
                return Err(JoinFailure::Other("WHIP session did not connect".into()));
            }
            let at = session.state.connected_at.lock().ok().and_then(|a| *a);
            setup.connected_ms = since_ms(at, session.posted);
            let whep = Subscriber::connect_server_offer(&target.whep_url(k), &token, Some(pool))
                .await
                .map_err(|e| failure(&e))?;
            (Some(session), whep, setup)
        }
        Mode::Viewers | Mode::Standard => {
            let whep = Subscriber::connect_client_offer_to(&target.whep_url(k), &token, Some(pool))
                .await
                .map_err(|e| failure(&e))?;
            let setup = Setup {
                answer_ms: ms(whep.answer_time),
                ..Setup::default()
            };
            (None, whep, setup)
        }
    };
    let deadline = Instant::now() + JOIN_LIMIT;
    loop {
        let connected = *whep
            .state
            .connected_at
            .lock()
            .map_err(|_| JoinFailure::Other("lock".into()))?;
        let keyframe = whep
            .state
            .stats
            .lock()
            .ok()
            .and_then(|s| s.first_keyframe_at);
        if session.is_none() && setup.connected_ms.is_none() {
            setup.connected_ms = since_ms(connected, whep.posted);
        }
        if keyframe.is_some() {
            setup.first_keyframe_ms = since_ms(keyframe, whep.posted);
            break;
        }
        if Instant::now() > deadline || whep.state.ended.load(Ordering::Acquire) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((
        Member {
            lobby: k,
            session,
            whep,
        },
        setup,
    ))
}
