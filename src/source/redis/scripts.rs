//! The server-side scripts that make Redis writes safe under races: the
//! versioned write (an older revision never replaces a newer one), the
//! tombstone of a status change, and the tombstone writers' shared position.

use fred::prelude::*;

use super::codec::encode_tombstone;
use super::keys::{change_key, keys_of_cert};
use crate::ocsp::{HashAlg, Serial};

/// A server-side script, sent by hash (`EVALSHA`, no script text on the
/// wire) and by text once when the server does not have it yet.
pub struct Script {
    text: &'static str,
    sha: std::sync::OnceLock<String>,
}

impl Script {
    const fn new(text: &'static str) -> Script {
        Script { text, sha: std::sync::OnceLock::new() }
    }

    /// The script's source.
    pub fn text(&self) -> &'static str {
        self.text
    }

    fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            HashAlg::Sha1.digest(self.text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
        })
    }

    /// Runs it on `keys` (one slot in a cluster) with `args`.
    pub async fn run(&self, client: &Client, keys: Vec<String>, args: Vec<Value>) -> Result<i64, Error> {
        match client.evalsha::<i64, _, _, _>(self.sha(), keys.clone(), args.clone()).await {
            Err(e) if e.details().contains("NOSCRIPT") => client.eval(self.text, keys, args).await,
            other => other,
        }
    }
}

/// The versioned write of a response: `KEYS[1]` = key, `ARGV[1]` = value,
/// `ARGV[2]` = TTL seconds. Values start with a 20-digit revision and a kind
/// byte (`S` response, then its 20-digit vouched-at time; `T` tombstone).
/// A response goes in when the key is absent or holds a lower revision, a
/// tombstone of the same revision (the change's own response replacing it),
/// or a response of the same revision vouched for earlier (a refresh
/// replaces the older copy, so the shared cache keeps sharing after the
/// refresh point). A tombstone never replaces its own revision. Returns 1
/// when written, 0 when refused.
pub static WRITE: Script = Script::new(
    r#"
local cur = redis.call('GET', KEYS[1])
local new_rev = tonumber(string.sub(ARGV[1], 1, 20))
local new_kind = string.sub(ARGV[1], 21, 21)
if cur then
  local cur_rev = tonumber(string.sub(cur, 1, 20)) or -1
  if cur_rev > new_rev then return 0 end
  if cur_rev == new_rev then
    if new_kind == 'T' then return 0 end
    if string.sub(cur, 21, 21) == 'S' then
      local cur_v = tonumber(string.sub(cur, 22, 41)) or -1
      local new_v = tonumber(string.sub(ARGV[1], 22, 41)) or -1
      if new_v <= cur_v then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
return 1
"#,
);

/// A certificate's status changed at a revision: `KEYS` = its response keys
/// (every CertID form; one slot, see [`key_for`]) and, when `ARGV[3]` is
/// `1`, its change key last; `ARGV[1]` = the tombstone, `ARGV[2]` = TTL.
/// Each response key holding a lower revision (or nothing) gets the
/// tombstone; then the change key, which tracking nodes hear of, is set.
/// Returns how many keys took the tombstone.
pub static TOMBSTONE: Script = Script::new(
    r#"
local new_rev = tonumber(string.sub(ARGV[1], 1, 20))
local last = #KEYS
if ARGV[3] == '1' then last = last - 1 end
local n = 0
for i = 1, last do
  local cur = redis.call('GET', KEYS[i])
  local cur_rev = -1
  if cur then cur_rev = tonumber(string.sub(cur, 1, 20)) or -1 end
  if cur_rev < new_rev then
    redis.call('SET', KEYS[i], ARGV[1], 'EX', tonumber(ARGV[2]))
    n = n + 1
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[#KEYS], tostring(new_rev), 'EX', tonumber(ARGV[2]))
end
return n
"#,
);

/// Raises a number kept under `KEYS[1]` to `ARGV[1]` (never lowers it): the
/// tombstone writers' shared position. Returns 1 when raised.
pub static RAISE: Script = Script::new(
    r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
return 0
"#,
);

/// Runs [`WRITE`].
pub async fn write_versioned(client: &Client, key: String, value: &[u8], ttl: u64) -> Result<i64, Error> {
    WRITE.run(client, vec![key], vec![Value::from(value), Value::from(ttl as i64)]).await
}

/// After a status change at `revision`: tombstones every CertID form's
/// response key of the certificate (so no older response can be served or
/// written back) and, with `announce`, sets its change key, which every
/// tracking shard is told about: one script call. Each is kept `ttl` seconds
/// (at least the response lifetime). Returns how many keys took it.
pub async fn tombstone(
    client: &Client,
    prefix: &str,
    issuer: &str,
    serial: &Serial,
    revision: u64,
    ttl: u64,
    announce: bool,
) -> Result<i64, Error> {
    let mut keys = keys_of_cert(prefix, issuer, serial);
    if announce {
        keys.push(change_key(prefix, issuer, serial));
    }
    let args = vec![
        Value::from(encode_tombstone(revision).as_slice()),
        Value::from(ttl as i64),
        Value::from(if announce { "1" } else { "0" }),
    ];
    TOMBSTONE.run(client, keys, args).await
}
