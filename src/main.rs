//! The `vestibule` command: `serve` runs the server, `token` prints a JWT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use vestibule::auth::{TokenKeys, is_valid_user_id, load_or_generate_key};
use vestibule::config::Settings;
use vestibule::http::is_valid_name;
use vestibule::{server, telemetry};

/// A WebRTC lobby server: WHIP in, WHEP out, restream to RTMP.
#[derive(Debug, Parser)]
#[command(name = "vestibule", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve {
        /// Configuration file layered over the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a JWT signed with the configured (or generated) key.
    Token {
        /// The userId claim.
        #[arg(long)]
        user: String,
        /// The home claim: the user's home server domain.
        #[arg(long)]
        home: Option<String>,
        /// Add `role: admin`.
        #[arg(long)]
        admin: bool,
        /// Add `view: SPACE/STREAM` (plain viewer of that stream).
        #[arg(long, value_name = "SPACE/STREAM")]
        view: Option<String>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Configuration file layered over the embedded defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = Settings::load(config.as_deref())?;
    telemetry::init(&settings.log);
    let system = actix::System::new();
    system.block_on(server::run(settings))?;
    Ok(())
}

fn token(
    user: &str,
    home: Option<&str>,
    admin: bool,
    view: Option<&str>,
    ttl: Duration,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    if !is_valid_user_id(user) {
        anyhow::bail!("--user must match ^[A-Za-z0-9._@:+-]{{1,128}}$");
    }
    if let Some(view) = view {
        let ok = view
            .split_once('/')
            .is_some_and(|(s, st)| is_valid_name(s) && is_valid_name(st));
        if !ok {
            anyhow::bail!("--view must be SPACE/STREAM");
        }
    }
    let settings = Settings::load(config.as_deref())?;
    let (key, _) = load_or_generate_key(
        settings.security.jwt.key.as_deref(),
        &settings.server.data_dir,
    )?;
    let keys = TokenKeys::new(&key, settings.security.jwt.require_exp, Duration::ZERO);
    println!("{}", keys.issue(user, home, admin, view, ttl)?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => serve(config),
        Command::Token {
            user,
            home,
            admin,
            view,
            ttl,
            config,
        } => token(&user, home.as_deref(), admin, view.as_deref(), ttl, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
