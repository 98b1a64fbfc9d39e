//! A purge target's position, kept in the database (`ocsp_cdn_positions`,
//! migrations/0003_cdn_positions.sql) so it survives every node's restart.
//! Shared by the nodes: raised with `GREATEST`, never lowered, since any
//! node's purge reached the same CDN.

use mysql::prelude::Queryable;
use mysql::Conn;

/// The kept position of `target`, if any (`Err`: no such table, say).
pub fn load(conn: &mut Conn, target: &str) -> Result<Option<u64>, mysql::Error> {
    conn.exec_first("SELECT seq FROM ocsp_cdn_positions WHERE target = ?", (target,))
}

/// Raises the kept position of `target` to `seq`.
pub fn store(conn: &mut Conn, target: &str, seq: u64) -> Result<(), mysql::Error> {
    conn.exec_drop(
        "INSERT INTO ocsp_cdn_positions (target, seq) VALUES (?, ?) \
         ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
        (target, seq),
    )
}
