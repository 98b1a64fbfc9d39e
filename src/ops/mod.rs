//! Operations beside the request path: what changes the database and tells
//! the caches about it.
//!
//! - [`change`]: the one status-change workflow (revoke, release a hold) that
//!   `ocsp-origin revoke` / `unrevoke` and the admin listener's `POST /revoke`
//!   share: the database write, then the fast path;
//! - [`db`]: the writer side of the database (migrations, import, status
//!   changes, mass revocation), and [`serials_file`], the lists mass
//!   revocation reads;
//! - [`push`]: the Redis half of the fast path (tombstones, change key);
//! - [`input`]: reasons and times as operators write them.
//!
//! The database row is the truth; the change feed ([`crate::feed`]) carries
//! every committed change to every node whoever wrote it, so nothing here is
//! needed for correctness, only for speed.

pub mod change;
pub mod db;
pub mod input;
pub mod push;
pub mod serials_file;
