//! Command line: `siprox run`, `siprox check`, `siprox test`, `siprox migrate`, `siprox ctl`.

pub mod ctl;
mod dispatcher;
mod lb;
pub mod script_test;
mod subscriber;
mod table;

use crate::app;
use crate::config::Config;
use crate::script::{build_engine, check_script, Diagnostic, Source};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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
        Command::Migrate { config } => migrate(config.as_deref(), cli.log_format),
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
