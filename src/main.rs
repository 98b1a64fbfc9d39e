//! The `ocsp-origin` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ocsp_origin::config::MysqlConfig;
use ocsp_origin::config::{Config, FileConfig};
use ocsp_origin::ocsp::Serial;
use ocsp_origin::ops::change::{commit, spread, Change};
use ocsp_origin::ops::push::CacheStep;

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
    /// Load-test a running responder: a CDN cache-drop ratchet with every
    /// answer checked, exported as histograms, interval logs, a plot and a
    /// capacity summary (see `ocsp_origin::bench`).
    Bench(Box<ocsp_origin::bench::BenchArgs>),
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
    /// Manage the MariaDB/MySQL status database named by `[mysql]` in the config.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Revoke a certificate, or every certificate listed in a file (a mass
    /// revocation), in the status database.
    Revoke {
        #[command(flatten)]
        cert: CertArgs,
        #[command(flatten)]
        targets: RevokeTargets,
        /// RFC 5280 reason by its OpenSSL name, any case: keyCompromise,
        /// CACompromise, affiliationChanged, superseded, cessationOfOperation,
        /// certificateHold, removeFromCRL, privilegeWithdrawn, AACompromise,
        /// unspecified. With --serials: the reason of lines that give none
        /// (needed unless every line gives one).
        #[arg(long, required_unless_present = "serials")]
        reason: Option<String>,
        /// Revocation time: RFC 3339 (`2026-11-01T12:00:00Z`), OpenSSL
        /// (`261101120000Z`) or Unix seconds. Default: now. With --serials:
        /// the time of lines that give none.
        #[arg(long)]
        at: Option<String>,
        /// With --serials: rows per transaction, 1 to 10000 [default: 1000].
        #[arg(long, conflicts_with = "serial")]
        batch: Option<usize>,
    },
    /// Release a certificate from hold (only certificateHold can be undone).
    Unrevoke {
        #[command(flatten)]
        cert: CertArgs,
        /// Serial number, hex.
        #[arg(long)]
        serial: String,
    },
}

/// What `revoke` revokes: one serial, or a file of them.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct RevokeTargets {
    /// Serial number, hex.
    #[arg(long)]
    serial: Option<String>,
    /// A file of certificates to revoke, one a line: a hex serial, then
    /// optionally a reason and a time (`0A1B keyCompromise
    /// 2026-11-01T12:00:00Z`); blank lines and `#` comments are skipped.
    /// Every line is checked before anything is written; re-running resumes
    /// an interrupted run.
    #[arg(long, value_name = "FILE")]
    serials: Option<PathBuf>,
}

/// Where a status change goes: the database, and the caches told of it.
#[derive(clap::Args)]
struct CertArgs {
    /// Configuration file (its `[mysql]` table names the database, `[redis]` the cache).
    #[arg(long)]
    config: PathBuf,
    /// Issuer name, as in the config.
    #[arg(long)]
    issuer: String,
    /// After the Redis tombstones, wait this long before returning so every
    /// tracking shard has applied the invalidation (it takes well under a
    /// millisecond on a healthy network).
    #[arg(long, default_value_t = ocsp_origin::ops::push::SETTLE_MS)]
    settle_ms: u64,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply the schema migrations not yet applied.
    Migrate {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Import an OpenSSL CA database (index.txt); idempotent, so re-running
    /// resumes an interrupted import.
    Import {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Issuer: its name in the config, or its certificate file.
        #[arg(long)]
        issuer: String,
        /// The index.txt to import.
        #[arg(long)]
        index: PathBuf,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000)]
        chunk: usize,
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
        Command::Bench(args) => {
            let line = std::env::args().collect::<Vec<_>>().join(" ");
            let (report, out) = ocsp_origin::bench::run(&args, line)?;
            print!("{}", ocsp_origin::bench::table(&report));
            println!("exports in {}", out.display());
            match (report.wrong(), report.unjudged()) {
                (0, 0) => Ok(()),
                (0, n) => Err(format!(
                    "{n} answers could not be judged (the change feed's final poll failed): the run fails"
                )),
                (n, _) => Err(format!("{n} wrong answers (see above): the run fails")),
            }
        }
        Command::CheckConfig { file } => {
            let config = read_config(&file, |_| {})?;
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
        Command::Db { command: DbCommand::Migrate { config } } => {
            let (_, m) = mysql_of(&config)?;
            let pool = ocsp_origin::ops::db::connect(&m)?;
            let applied = ocsp_origin::ops::db::migrate(&pool)?;
            if applied.is_empty() {
                println!("schema up to date");
            } else {
                println!("applied migrations {applied:?}");
            }
            Ok(())
        }
        Command::Db { command: DbCommand::Import { config, issuer, index, chunk } } => {
            let (cfg, m) = mysql_of(&config)?;
            let name = issuer_name(&cfg, &issuer)?;
            let pool = ocsp_origin::ops::db::connect(&m)?;
            let s = ocsp_origin::ops::db::import(&pool, &name, &index, chunk, &mut std::io::stderr())?;
            println!(
                "imported {} certificates for issuer {name:?}: {} new, {} changed, {} unchanged, {} kept revoked",
                s.total, s.inserted, s.changed, s.unchanged, s.kept_revoked
            );
            Ok(())
        }
        Command::Revoke {
            cert: CertArgs { config, issuer, settle_ms },
            targets: RevokeTargets { serial, serials },
            reason,
            at,
            batch,
        } => {
            let (cfg, m) = mysql_of(&config)?;
            let name = issuer_name(&cfg, &issuer)?;
            let serial = match (serial, serials) {
                (Some(s), _) => Serial::from_hex(&s).map_err(|e| format!("--serial: {e}"))?,
                (None, Some(file)) => {
                    return revoke_file(&cfg, &m, &name, &file, reason, at, batch.unwrap_or(1000))
                }
                (None, None) => return Err("give --serial or --serials".into()),
            };
            let reason = reason.ok_or("--reason is required with --serial")?;
            let reason =
                ocsp_origin::ops::input::parse_reason(&reason).map_err(|e| format!("--reason: {e}"))?;
            let at = revocation_time(at)?;
            let change = Change::Revoke { reason, at };
            let revision = commit(&cfg, &name, &serial, change).map_err(|e| e.to_string())?;
            println!(
                "revoked {serial} of {name:?} ({}) in the database, revision {revision}",
                reason.openssl_name()
            );
            report_cache(&cfg, &spread(&cfg, &name, &serial, revision, None, settle_ms).cache);
            Ok(())
        }
        Command::Unrevoke { cert: CertArgs { config, issuer, settle_ms }, serial } => {
            let (cfg, _) = mysql_of(&config)?;
            let name = issuer_name(&cfg, &issuer)?;
            let serial = Serial::from_hex(&serial).map_err(|e| format!("--serial: {e}"))?;
            let revision = commit(&cfg, &name, &serial, Change::Release).map_err(|e| e.to_string())?;
            println!("released {serial} of {name:?} from hold in the database, revision {revision}");
            report_cache(&cfg, &spread(&cfg, &name, &serial, revision, None, settle_ms).cache);
            Ok(())
        }
        Command::Serve { config, cores } => {
            let load = move || {
                read_config(&config, |file| {
                    if let Some(c) = cores {
                        file.cores = c;
                    }
                })
            };
            let cfg = load()?;
            ocsp_origin::app::serve(&cfg, Box::new(load), |addr| {
                println!("ocsp-origin listening on http://{addr}")
            })
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
            let load = move || {
                read_config(&dir.join("ocsp-origin.toml"), |file| {
                    file.listen = listen.to_string();
                    file.cores = cores;
                    file.pin = !no_pin;
                })
            };
            let cfg = load()?;
            ocsp_origin::app::serve(&cfg, Box::new(load), |addr| {
                println!("{}", ocsp_origin::demo::instructions(&files, &format!("http://{addr}")));
            })
        }
    }
}

/// `--at`, or now.
fn revocation_time(at: Option<String>) -> Result<u64, String> {
    match at {
        Some(t) => ocsp_origin::ops::input::parse_time(&t)
            .ok_or_else(|| format!("--at: cannot read {t:?} as a time")),
        None => Ok(ocsp_origin::clock::unix_now()),
    }
}

/// The least connect/read/write timeout of `revoke --serials`, ms.
const MASS_REVOCATION_TIMEOUT_MS: u64 = 30_000;

/// `revoke --serials FILE`: checks every line, then revokes in batches (see
/// `db::revoke_many`). Nothing is pushed to Redis per serial: a million
/// tombstones would flood the cache and every shard's invalidation stream,
/// and the change feed already carries every committed change to every
/// responder.
fn revoke_file(
    cfg: &Config,
    m: &MysqlConfig,
    name: &str,
    file: &std::path::Path,
    reason: Option<String>,
    at: Option<String>,
    batch: usize,
) -> Result<(), String> {
    let bound_ms = cfg.feed.bound_ms;
    let baseline = cfg.response.profile == ocsp_origin::config::Profile::Baseline;
    if !(1..=10_000).contains(&batch) {
        return Err(format!("--batch: {batch} rows per transaction; use 1 to 10000"));
    }
    let reason = reason
        .map(|r| ocsp_origin::ops::input::parse_reason(&r).map_err(|e| format!("--reason: {e}")))
        .transpose()?;
    let at = revocation_time(at)?;
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let list =
        ocsp_origin::ops::serials_file::parse(&text, &file.display().to_string(), reason, at, baseline)?;
    // `[mysql] timeout_ms` bounds a lookup on the request path (1 s); one
    // batch of a mass revocation on a busy primary may rightly take longer.
    let mut m = m.clone();
    m.timeout_ms = m.timeout_ms.max(MASS_REVOCATION_TIMEOUT_MS);
    let pool = ocsp_origin::ops::db::connect(&m)?;
    let s = ocsp_origin::ops::db::revoke_many(&pool, name, &list, batch, file, &mut std::io::stderr())?;
    println!(
        "{}: {} certificates of {name:?}: {} revoked, {} already revoked, {} not found",
        file.display(),
        s.total,
        s.revoked,
        s.already_revoked,
        s.not_found
    );
    if s.not_found > 0 {
        let named: Vec<String> = s.not_found_serials.iter().map(|x| x.to_string()).collect();
        let more = s.not_found - named.len();
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        println!("not in the database: {}{more}", named.join(", "));
    }
    println!(
        "cache: nothing pushed to Redis per serial: every responder picks each change up from the \
         database's change feed within feed.bound_ms ({bound_ms} ms) of its commit"
    );
    Ok(())
}

/// Reads and validates a config file after `overrides` (command-line flags)
/// are applied; used at start and again by every reload.
fn read_config(path: &std::path::Path, overrides: impl FnOnce(&mut FileConfig)) -> Result<Config, String> {
    Config::load_with(path, overrides).map_err(|e| {
        // A file that cannot be read is named by the error itself.
        if e.field == path.display().to_string() {
            e.to_string()
        } else {
            format!("{}: {e}", path.display())
        }
    })
}

/// What the fast path of a status change did (see `ops::change`): a Redis
/// failure is a warning, not an error: the database has the change and the
/// change feed makes it every node's answer.
fn report_cache(cfg: &Config, cache: &Result<CacheStep, String>) {
    match cache {
        Ok(CacheStep::NotShared { bound_ms }) => {
            println!("no shared cache configured: every server sees it through the change feed within {bound_ms} ms")
        }
        Ok(CacheStep::Tombstoned) => {
            println!("cache: tombstoned in Redis; every tracking server has dropped its copy")
        }
        Err(e) => eprintln!(
            "ocsp-origin: warning: the Redis fast path failed ({e}); the change is recorded in the database \
             and every server sees it through the change feed within feed.bound_ms ({} ms), which also \
             writes its Redis tombstones once Redis answers",
            cfg.feed.bound_ms
        ),
    }
}

/// The validated config and its `[mysql]` table.
fn mysql_of(path: &std::path::Path) -> Result<(Config, MysqlConfig), String> {
    let cfg = read_config(path, |_| {})?;
    let m = cfg
        .mysql
        .clone()
        .ok_or_else(|| format!("{}: no [mysql] table: nothing to manage", path.display()))?;
    Ok((cfg, m))
}

/// An issuer named in the config, or identified by its certificate file.
fn issuer_name(cfg: &Config, given: &str) -> Result<String, String> {
    if cfg.issuers.iter().any(|i| i.name == given) {
        return Ok(given.to_string());
    }
    let path = std::path::Path::new(given);
    if path.is_file() {
        let want = std::fs::read(path).map_err(|e| format!("{given}: {e}"))?;
        let want =
            ocsp_origin::ocsp::issuer::parse_certificate(&want).map_err(|e| format!("{given}: {e}"))?;
        for i in &cfg.issuers {
            let have = std::fs::read(&i.cert)
                .ok()
                .and_then(|b| ocsp_origin::ocsp::issuer::parse_certificate(&b).ok());
            if have.as_ref() == Some(&want) {
                return Ok(i.name.clone());
            }
        }
        return Err(format!("--issuer: {given} is not the certificate of any configured issuer"));
    }
    Err(format!("--issuer: no issuer named {given:?} in the config"))
}
