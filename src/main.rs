//! The `ocsp-origin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocsp_origin::config::{Config, FileConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A thread-per-core OCSP origin responder that signs just in time.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a demo CA (P-256) with N certificates and serve OCSP for it.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory for the demo CA files (default: a fresh temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Certificates to issue into the demo database.
        #[arg(long, default_value_t = 1000)]
        certs: usize,
        /// Shards (0 = one per CPU).
        #[arg(long, default_value_t = 0)]
        cores: usize,
        /// Do not pin shards to CPUs (see `pin` in the config reference).
        #[arg(long)]
        no_pin: bool,
    },
    /// Serve OCSP as configured in a TOML file.
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Override `cores` from the file.
        #[arg(long)]
        cores: Option<usize>,
    },
    /// Validate a configuration file (including keys, certificates and status
    /// databases) and exit.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ocsp-origin: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::CheckConfig { file } => {
            let config = Config::load(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let parts =
                ocsp_origin::app::load_parts(&config).map_err(|e| format!("{}: {e}", file.display()))?;
            println!(
                "{}: OK ({} issuer(s), {} shards, listen {})",
                file.display(),
                parts.issuers.len(),
                config.cores,
                config.listen
            );
            Ok(())
        }
        Command::Serve { config, cores } => {
            let text = std::fs::read_to_string(&config).map_err(|e| format!("{}: {e}", config.display()))?;
            let mut file: FileConfig =
                toml::from_str(&text).map_err(|e| format!("{}: {}", config.display(), e.message()))?;
            if let Some(c) = cores {
                file.cores = c;
            }
            let base = config.parent().unwrap_or(std::path::Path::new("."));
            let cfg = Config::validate(file, base).map_err(|e| format!("{}: {e}", config.display()))?;
            serve(&cfg, |addr| println!("ocsp-origin listening on http://{addr}"))
        }
        Command::Demo { listen, dir, certs, cores, no_pin } => {
            if certs < 5 {
                return Err("--certs must be at least 5".into());
            }
            let dir = match dir {
                Some(d) => d,
                None => tempfile::Builder::new()
                    .prefix("ocsp-origin-demo-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?
                    .keep(),
            };
            let files = ocsp_origin::demo::create(&dir, certs)?;
            let text = std::fs::read_to_string(dir.join("ocsp-origin.toml")).map_err(|e| e.to_string())?;
            let mut file: FileConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
            file.listen = listen.to_string();
            file.cores = cores;
            file.pin = !no_pin;
            let cfg = Config::validate(file, &dir).map_err(|e| e.to_string())?;
            serve(&cfg, |addr| {
                println!("{}", ocsp_origin::demo::instructions(&files, &format!("http://{addr}")));
            })
        }
    }
}

fn serve(cfg: &Config, on_ready: impl FnOnce(SocketAddr)) -> Result<(), String> {
    let parts = ocsp_origin::app::load_parts(cfg).map_err(|e| e.to_string())?;
    ocsp_origin::server::run(cfg, parts, on_ready).map_err(|e| e.to_string())
}
