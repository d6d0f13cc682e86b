//! Command line: `siprox run`, `siprox check`, `siprox test`, `siprox migrate`, `siprox ctl`,
//! `siprox ping`, `siprox port`.

pub mod ctl;
mod dispatcher;
mod lb;
pub mod port;
pub mod script_test;
mod subscriber;
mod table;

use crate::app;
use crate::config::Config;
use crate::script::{build_engine, check_script, Diagnostic, Source};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "siprox", version, about = "SIP proxy routed by an opensips.cfg-style Rhai script")]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy (embedded defaults without -c).
    Run {
        /// Configuration file (TOML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Check a route script, or a config and its script, without starting.
    Check {
        /// A `.rhai` script or a `.toml` config.
        file: PathBuf,
    },
    /// Run a route script's test cases (TOML test files) without network.
    Test {
        /// Test files (`*.test.toml`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a management command on a running proxy (JSON-RPC to POST /mi), or change the
    /// dispatcher, load_balancer or subscriber table (`siprox ctl dispatcher|lb|subscriber add|rm|list|reload …`).
    Ctl(ctl::CtlArgs),
    /// Apply the database migrations of [db] url (as `siprox run` does) and print them.
    Migrate {
        /// Configuration file (TOML); without it, the default `sqlite://siprox.db`.
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Convert an opensips.cfg into siprox.toml + route.rhai (and port-report.txt listing
    /// every line that still needs porting by hand).
    Port {
        /// The opensips.cfg to convert.
        input: PathBuf,
        /// Where to write the files (created if missing).
        #[arg(short, long, default_value = ".")]
        out_dir: PathBuf,
    },
    /// Send one SIP OPTIONS over UDP and print the answer: exit 0 when a final reply below
    /// 500 came (the proxy's script ran), 1 on a 5xx or no answer (a health check).
    Ping {
        /// HOST[:PORT] or sip:HOST[:PORT] (port 5060 by default; IPv6 in brackets).
        target: String,
        /// How long to wait for a final reply, retransmitting meanwhile (RFC 3261 Timer E).
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// Local address to send from (default: the one the route to the target picks).
        #[arg(long)]
        from: Option<IpAddr>,
    },
}

fn init_logs(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Checks a script or config; prints diagnostics; returns them.
pub fn check(file: &Path) -> Result<Vec<Diagnostic>, String> {
    let (cfg, script) = if file.extension().is_some_and(|e| e == "toml") {
        let cfg = Config::load(file).map_err(|e| e.to_string())?;
        let script = cfg.script_path();
        (cfg, script)
    } else {
        (Config::default(), file.to_path_buf())
    };
    if !script.exists() {
        return Err(format!("{}: no such file", script.display()));
    }
    let registrar = crate::modules::Modules::new(&cfg).registrar();
    let engine = build_engine(app::script_limits(&cfg), &*registrar);
    Ok(check_script(engine, Source::File(&script)))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => {
            let cfg = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("siprox: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logs(cli.log_format, &cfg.core.log_level);
            let workers = match cfg.core.workers {
                0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
                n => n,
            };
            let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("siprox: cannot start runtime: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt.block_on(app::run(cfg, config.is_some())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "siprox failed");
                    eprintln!("siprox: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Ctl(args) => ctl::main(args),
        Command::Port { input, out_dir } => port::main(&input, &out_dir),
        Command::Migrate { config } => migrate(config.as_deref(), cli.log_format),
        Command::Ping { target, timeout_ms, from } => ping(&target, Duration::from_millis(timeout_ms), from),
        Command::Check { file } => match check(&file) {
            Ok(d) if d.is_empty() => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Ok(d) => {
                for x in d {
                    eprintln!("{x}");
                }
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Test { files } => match script_test::run(&files, &mut std::io::stdout().lock()) {
            Ok(s) if s.failed == 0 => ExitCode::SUCCESS,
            Ok(_) => ExitCode::from(1),
            Err(e) => {
                eprintln!("siprox test: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// `siprox ping`: one OPTIONS, its answer printed as `200 OK from 10.0.0.1:5060 in 0.4 ms`.
/// Exit 0 when [`is_healthy`](crate::ha::health::is_healthy), 1 for any other answer or
/// none, 2 for a target that is no address (as clap does for a bad argument).
fn ping(target: &str, timeout: Duration, from: Option<IpAddr>) -> ExitCode {
    use crate::ha::health;
    let addr = match health::parse_target(target) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("siprox ping: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siprox ping: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(health::ping(addr, from, timeout)) {
        Ok(r) => {
            let ms = r.rtt.as_secs_f64() * 1000.0;
            println!("{} {} from {} in {ms:.1} ms", r.code, r.reason, r.from);
            if health::is_healthy(r.code) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("siprox ping: {addr}: {e}");
            ExitCode::from(1)
        }
    }
}

/// `siprox migrate`: applies what the database lacks, prints each migration applied.
fn migrate(config: Option<&Path>, log_format: LogFormat) -> ExitCode {
    let cfg = match load_config(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("siprox: {e}");
            return ExitCode::from(2);
        }
    };
    init_logs(log_format, "warn");
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("siprox: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async {
        let db = match crate::db::Db::open_config(&cfg.db).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("siprox migrate: {e}");
                return ExitCode::from(1);
            }
        };
        let outcome = db.migrate().await;
        db.close().await;
        match outcome {
            Ok(applied) => {
                println!("database {} ({})", db.url(), db.backend().name());
                if applied.is_empty() {
                    println!("up to date: nothing to apply");
                }
                for m in applied {
                    println!("applied {:04} {}", m.version, m.description);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("siprox migrate: {}: {e}", db.url());
                ExitCode::from(1)
            }
        }
    })
}
