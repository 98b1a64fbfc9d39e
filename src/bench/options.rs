//! The `ocsp-origin bench` command line: [`BenchArgs`] with what each flag
//! means and defaults to, and the parsers for the list-valued flags
//! (`--target`, `--cpus`). Checks that need the config or several flags
//! together happen when the run starts ([`cdn_purger`] for the CDN ratchet's).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::cdn::{self, Purger};

/// `ocsp-origin bench` options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server's configuration file: issuers (certificates to build requests
    /// and verify answers), the status source (index.txt or MySQL) the serials
    /// and expected statuses are read from, the listen address and prefix.
    #[arg(long)]
    pub config: PathBuf,
    /// Server addresses, comma-separated, or the flag given more than once
    /// (default: the config's `listen`). Connection i goes to target i mod n,
    /// so every thread reaches every target when --connections is at least
    /// --threads × targets.
    #[arg(long, value_name = "ADDR[,ADDR...]")]
    pub target: Vec<String>,
    /// Directory for the exports (default `bench-out/<unix time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Generator threads (glommio executors).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pin generator threads to these CPUs (`8-15` or `0,2,4`); default unpinned.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Connections over all threads (one request in flight each).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Open loop: requests/s at a fraction of 1 (a stage with fraction f aims
    /// for f × rate). Without it the run is closed-loop (as fast as answers come).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds per stage.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Ratchet stages: fractions of the CDN's traffic (and of the keyspace cold),
    /// e.g. `1/16,1/8,1/4,1/2,1`. Without it: one stage with `--cold` cold.
    /// With --cdn-purge: the share of the CDN's cache each stage purges first.
    #[arg(long)]
    pub ratchet: Option<String>,
    /// Without --ratchet: the share of the keyspace that is cold (0 = all warm).
    #[arg(long, default_value_t = 0.0)]
    pub cold: f64,
    /// Serials per stage (default: the most the status source allows for the
    /// warm set plus every stage's cold serials, at most 100000).
    #[arg(long)]
    pub keyspace: Option<usize>,
    /// Zipf exponent of serial popularity (0 = uniform).
    #[arg(long, default_value_t = 1.0)]
    pub zipf: f64,
    /// Walk each stage's serials in order instead of by popularity: no serial
    /// is asked for twice until they run out (a pure miss storm when cold).
    #[arg(long)]
    pub sequential: bool,
    /// Share of requests sent as POST (real traffic was ~75%).
    #[arg(long, default_value_t = 0.75)]
    pub post_share: f64,
    /// Share of GETs spelled with a client quirk (raw base64, URL-safe, no
    /// padding, `//`, query string, `+` as space).
    #[arg(long, default_value_t = 0.2)]
    pub quirk_share: f64,
    /// Passes over the warm set before the first stage (0 = no warm-up).
    #[arg(long, default_value_t = 2)]
    pub warm_passes: usize,
    /// Longest warm-up, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub warm_secs: f64,
    /// Per-request timeout, milliseconds (an answer later than this is an error).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Do not check answers (only for a non-OCSP ceiling such as a static file).
    #[arg(long)]
    pub no_verify: bool,
    /// Certificates read from the status source at most.
    #[arg(long, default_value_t = 2_000_000)]
    pub max_serials: usize,
    /// Capacity plan: shards the server runs (default: the config's `cores`).
    #[arg(long)]
    pub server_cores: Option<usize>,
    /// Capacity plan: signing sessions (default: the config's signer threads).
    #[arg(long)]
    pub hsm_sessions: Option<usize>,
    /// Capacity plan: cores per node.
    #[arg(long, default_value_t = 16)]
    pub node_cores: usize,
    /// Capacity plan: requests/s arriving at the CDN.
    #[arg(long, default_value_t = 100_000.0)]
    pub target_rps: f64,
    /// Capacity plan: the CDN's normal hit ratio.
    #[arg(long, default_value_t = 0.98)]
    pub cdn_hit_ratio: f64,
    /// Fetch the server's own histograms and metrics from its admin listener
    /// after the run (default: the config's `[admin] listen`, if any).
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// With `[mysql]`: how often the change follower reads `ocsp_changes`
    /// on the primary, ms.
    #[arg(long, default_value_t = 20)]
    pub change_poll_ms: u64,
    /// With `[mysql]`: the bound under test, ms. An answer to a request sent
    /// this long after the follower saw a change must carry the change's
    /// status (or a newer one); before that the old status is allowed.
    #[arg(long, default_value_t = 1000)]
    pub change_bound_ms: u64,
    /// The CDN ratchet: the targets are a CDN (Varnish with xkey) in front of
    /// the origin, purged at this URL (`http://IP:PORT/`). Needs --ratchet:
    /// each stage first purges its fraction f of the origin's 256 bucket tags
    /// (buckets 0 .. round(f·256)-1), then sends --rate requests/s over the
    /// whole warm keyspace (no stage is cold by keyspace); the warm-up walks
    /// every request form (POST, each GET spelling) so the CDN holds them all.
    #[arg(long, value_name = "URL")]
    pub cdn_purge: Option<String>,
    /// With --cdn-purge: the origin's `[cdn] tag_prefix`.
    #[arg(long, default_value = "ocsp-")]
    pub cdn_tag_prefix: String,
    /// With --cdn-purge: most tags in one purge request.
    #[arg(long, default_value_t = 64)]
    pub cdn_purge_batch: usize,
}

/// How long one purge request may take: a purge of many objects is not a
/// client's request, so `--timeout-ms` does not apply.
const PURGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The purger for `--cdn-purge`, checked against the other flags; `None`
/// without it.
pub(super) fn cdn_purger(args: &BenchArgs) -> Result<Option<Purger>, String> {
    let Some(url) = &args.cdn_purge else { return Ok(None) };
    if args.ratchet.is_none() {
        return Err("--cdn-purge needs --ratchet (the share of the cache each stage purges)".into());
    }
    if !(1..=cdn::BUCKETS).contains(&args.cdn_purge_batch) {
        return Err(format!("--cdn-purge-batch must be in [1, {}]", cdn::BUCKETS));
    }
    cdn::check_prefix(&args.cdn_tag_prefix)?;
    let (addr, path) = cdn::parse_purge_url(url)?;
    Ok(Some(Purger {
        addr,
        host: addr.to_string(),
        path,
        prefix: args.cdn_tag_prefix.clone(),
        batch: args.cdn_purge_batch,
        timeout: PURGE_TIMEOUT,
    }))
}

/// Parses the `--target` values (each a comma-separated list) into
/// addresses; none given: `default`.
pub fn parse_targets(values: &[String], default: SocketAddr) -> Result<Vec<SocketAddr>, String> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for v in values {
        for part in v.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(format!("--target {v:?}: empty address in the list"));
            }
            let addr: SocketAddr = part
                .parse()
                .map_err(|_| format!("--target {v:?}: {part:?} is not IP:PORT (e.g. 127.0.0.1:8080)"))?;
            if out.contains(&addr) {
                return Err(format!("--target: {addr} is given twice"));
            }
            out.push(addr);
        }
    }
    if out.is_empty() {
        out.push(default);
    }
    Ok(out)
}

/// Parses `8-15`, `0,2,4-6`.
pub fn parse_cpus(text: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {text:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list {text:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("8-11").unwrap(), vec![8, 9, 10, 11]);
        assert_eq!(parse_cpus("0, 2,4-5").unwrap(), vec![0, 2, 4, 5]);
        assert!(parse_cpus("5-3").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn target_lists() {
        let d: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(parse_targets(&[], d).unwrap(), vec![d]);
        let t = parse_targets(&["127.0.0.1:1, 127.0.0.1:2".into(), "[::1]:3".into()], d).unwrap();
        assert_eq!(t.iter().map(|a| a.port()).collect::<Vec<_>>(), vec![1, 2, 3]);
        for (bad, want) in [
            ("127.0.0.1:1,", "empty address"),
            ("localhost", "is not IP:PORT"),
            ("127.0.0.1:1,127.0.0.1:1", "given twice"),
        ] {
            let e = parse_targets(&[bad.into()], d).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(extra: &[&str]) -> BenchArgs {
        use clap::Parser;
        let argv = ["bench", "--config", "c.toml"].iter().chain(extra);
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{extra:?}: {e}")).bench
    }

    #[test]
    fn cdn_purge_options() {
        let a = parse(&[]);
        assert!(a.cdn_purge.is_none() && cdn_purger(&a).unwrap().is_none());
        assert_eq!((a.cdn_tag_prefix.as_str(), a.cdn_purge_batch), ("ocsp-", 64));

        let a = parse(&["--cdn-purge", "http://127.0.0.1:6081/", "--ratchet", "1/16,1/8,1/4,1/2,1"]);
        let p = cdn_purger(&a).unwrap().unwrap();
        assert_eq!(p.addr.to_string(), "127.0.0.1:6081");
        assert_eq!((p.path.as_str(), p.prefix.as_str(), p.batch), ("/", "ocsp-", 64));
        // Stage fractions of the ratchet → buckets purged → requests of <= 64 tags.
        let fractions = super::super::keyspace::parse_fractions(a.ratchet.as_deref().unwrap()).unwrap();
        let buckets: Vec<usize> = fractions.iter().map(|f| cdn::buckets_for(f.1)).collect();
        assert_eq!(buckets, vec![16, 32, 64, 128, 256]);
        let requests: Vec<usize> =
            buckets.iter().map(|n| cdn::batches(&cdn::bucket_tags(&p.prefix, *n), p.batch).len()).collect();
        assert_eq!(requests, vec![1, 1, 1, 2, 4]);

        let a = parse(&[
            "--cdn-purge=http://[::1]:8/x",
            "--ratchet=1",
            "--cdn-tag-prefix=ca1.",
            "--cdn-purge-batch=16",
        ]);
        let p = cdn_purger(&a).unwrap().unwrap();
        assert_eq!((p.path.as_str(), p.prefix.as_str(), p.batch), ("/x", "ca1.", 16));
        assert_eq!(cdn::bucket_tags(&p.prefix, 1), vec!["ca1.b-00".to_string()]);

        for (bad, want) in [
            (&["--cdn-purge", "http://127.0.0.1:1/"][..], "needs --ratchet"),
            (&["--cdn-purge", "127.0.0.1:1", "--ratchet", "1"][..], "http://"),
            (
                &["--cdn-purge", "http://127.0.0.1:1/", "--ratchet", "1", "--cdn-purge-batch", "0"][..],
                "batch",
            ),
            (
                &["--cdn-purge", "http://127.0.0.1:1/", "--ratchet", "1", "--cdn-purge-batch", "257"][..],
                "batch",
            ),
            (
                &["--cdn-purge", "http://127.0.0.1:1/", "--ratchet", "1", "--cdn-tag-prefix", "a b"][..],
                "prefix",
            ),
        ] {
            let e = cdn_purger(&parse(bad)).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
