//! Faults and hostile load against the real binary: the chaos suite (Redis
//! and MariaDB stopped, killed, restarted and flushed under load), a miss
//! storm beyond signing capacity, and hostile clients (slowloris, floods,
//! endless bodies, idle connections, invalid bytes), and a stuck signer
//! under the sources themselves.
//!
//! The chaos suite and the miss storm time their answers under load, so each
//! runs alone ([`common::schedule::alone`]); the hostile-client tests run
//! beside each other, as they always did.

mod common;

#[path = "faults/abuse.rs"]
mod abuse;
#[path = "faults/chaos.rs"]
mod chaos;
#[path = "faults/overload.rs"]
mod overload;
#[path = "faults/stuck_signer.rs"]
mod stuck_signer;
