//! `ocsp-origin bench`: a thread-per-core load generator that models a CDN
//! cache drop against an origin, checks every answer, and exports what
//! capacity planning needs.
//!
//! ```text
//! follower::open      with [mysql]: MAX(seq) of the change feed, before …
//! keyspace::load      serials + expected statuses from the server's own config
//!   plan_stages       warm set, then per stage: fraction f of the keyspace cold
//! follower (thread)   polls ocsp_changes on the primary into the ChangeBook
//! client::run_thread  one glommio executor per generator thread, C connections
//!                     (connection i → target i mod n)
//!   warm-up           closed loop over the warm set (not measured)
//!   stages            open loop at f × --rate (CO-corrected) or closed loop
//!   verify            every answer: signature, CertID, validity, and its status
//!                     against the certificate's history (changes::judge)
//! final poll          pending answers judged again once every change is known
//! report::write_all   .hgrm per stage × outcome, .hlog interval logs, plot.svg,
//!                     summary.md / summary.json (capacity plan, per target,
//!                     changes)
//! ```
//!
//! A ratchet stage with fraction f models f of the CDN's traffic arriving at
//! the origin (`f × --rate` requests/s in open loop) with f of the stage's
//! keyspace never asked for before (a dropped cache segment: new serials the
//! server must look up and sign). The run stops by itself after the warm-up
//! (bounded by `--warm-secs`) and the stages; a request waits at most
//! `--timeout-ms`. Wrong answers fail the run (exit status 1).
//!
//! When the config has `[mysql]`, the status source may change during the
//! run: the change follower reads every committed change from the primary's
//! `ocsp_changes`, and an answer is wrong only if it carries a status older
//! than a change the bench saw at least `--change-bound-ms` before the
//! request was sent (see [`changes`] for why that is sound).
//!
//! The bench is a client of the protocol: it builds requests with the OCSP
//! codec ([`request`]) and checks answers with its own verifier ([`verify`]).
//! Where the code lives: [`BenchArgs`] the command line, [`run()`] the run from
//! start to finish, [`client`] the per-thread runtime (connections, schedule,
//! verification), [`keyspace`] the serials and their statuses, [`follower`] and
//! [`changes`] the change feed and the judging rule, [`results`] the numbers,
//! [`report`] the files, [`table()`] what is printed at the end.

pub mod cdn;
pub mod changes;
pub mod client;
pub mod follower;
pub mod keyspace;
mod options;
pub mod report;
pub mod request;
pub mod results;
mod run;
mod table;
pub mod verify;

pub use self::options::{parse_cpus, parse_targets, BenchArgs};
pub use self::run::run;
pub use self::table::{changes_line, table};
