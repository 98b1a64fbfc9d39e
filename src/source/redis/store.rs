//! What the Redis layer needs of Redis, and nothing more: a value by key,
//! the versioned write and its cheap case, the write to an empty key.
//! [`RedisL2`](super::RedisL2) holds a `dyn Store`, so its policy (errors
//! are misses, copies are checked before use, which write a miss uses) is
//! tested against fakes ([`DownRedis`], [`MemRedis`] in the unit tests) as
//! well as against real servers (`tests/`).

use std::future::Future;
use std::pin::Pin;

use fred::prelude::*;

/// A Redis call in flight, on the shard that made it.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + 'a>>;

/// The commands the read path uses.
pub trait Store {
    /// `GET key`.
    fn get(&self, key: String) -> Call<'_, Option<Vec<u8>>>;
    /// The versioned write ([`super::scripts::WRITE`]): 1 written, 0 refused
    /// because Redis holds a newer revision.
    fn write_versioned(&self, key: String, value: Vec<u8>, ttl: u64) -> Call<'_, i64>;
    /// `SET key value EX ttl NX`: written (`true`) only while the key holds
    /// nothing, for the write-back after a GET found the key empty.
    ///
    /// Why not the versioned write there too: on an empty key the script
    /// has nothing to compare, and `NX` makes the same decision (write only
    /// if nothing is there) inside Redis without running Lua, and without
    /// the socket flush fred forces after every `EVALSHA`, so a cold miss's
    /// write travels with the shard's other commands. A value that appears
    /// between the GET and the SET (another node's copy, a tombstone) is
    /// never replaced, whatever its revision: all that can be lost is a
    /// newer copy not shared, which the next reader that is fenced off or
    /// finds the tombstone signs and writes versioned. So where two misses
    /// race on an empty key across a change whose tombstone Redis lost
    /// (evicted, or written while Redis was down), the first copy stays
    /// until its TTL, not the newest; every node whose floor has the change
    /// fences it off, as it does any copy Redis kept from before a change
    /// it missed.
    fn put_new(&self, key: String, value: Vec<u8>, ttl: u64) -> Call<'_, bool>;
}

impl Store for Client {
    fn get(&self, key: String) -> Call<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            KeysInterface::get::<Option<Vec<u8>>, _>(self, key).await.map_err(|e| e.to_string())
        })
    }

    fn write_versioned(&self, key: String, value: Vec<u8>, ttl: u64) -> Call<'_, i64> {
        Box::pin(async move {
            super::scripts::write_versioned(self, key, &value, ttl).await.map_err(|e| e.to_string())
        })
    }

    fn put_new(&self, key: String, value: Vec<u8>, ttl: u64) -> Call<'_, bool> {
        Box::pin(async move {
            let ttl = i64::try_from(ttl).unwrap_or(i64::MAX);
            let set: Option<String> = KeysInterface::set(
                self,
                key,
                value,
                Some(fred::types::Expiration::EX(ttl)),
                Some(fred::types::SetOptions::NX),
                false,
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(set.is_some())
        })
    }
}

/// A Redis that is down: every command fails, as a refused connection or a
/// timeout does. Counts the calls made to it.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct DownRedis {
    pub(crate) calls: std::cell::Cell<u32>,
}

#[cfg(test)]
impl Store for DownRedis {
    fn get(&self, _key: String) -> Call<'_, Option<Vec<u8>>> {
        self.calls.set(self.calls.get() + 1);
        Box::pin(async { Err("connection refused".to_string()) })
    }

    fn write_versioned(&self, _key: String, _value: Vec<u8>, _ttl: u64) -> Call<'_, i64> {
        self.calls.set(self.calls.get() + 1);
        Box::pin(async { Err("connection refused".to_string()) })
    }

    fn put_new(&self, _key: String, _value: Vec<u8>, _ttl: u64) -> Call<'_, bool> {
        self.calls.set(self.calls.get() + 1);
        Box::pin(async { Err("connection refused".to_string()) })
    }
}

/// A Redis in memory that logs the commands it is sent: which write a miss
/// uses is part of the layer's policy. The versioned write here writes
/// unconditionally (its comparison is tested against real Redis).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MemRedis {
    pub(crate) map: std::cell::RefCell<std::collections::HashMap<String, Vec<u8>>>,
    pub(crate) log: std::cell::RefCell<Vec<&'static str>>,
}

#[cfg(test)]
impl Store for MemRedis {
    fn get(&self, key: String) -> Call<'_, Option<Vec<u8>>> {
        self.log.borrow_mut().push("GET");
        let v = self.map.borrow().get(&key).cloned();
        Box::pin(async move { Ok(v) })
    }

    fn write_versioned(&self, key: String, value: Vec<u8>, _ttl: u64) -> Call<'_, i64> {
        self.log.borrow_mut().push("EVALSHA");
        self.map.borrow_mut().insert(key, value);
        Box::pin(async { Ok(1) })
    }

    fn put_new(&self, key: String, value: Vec<u8>, _ttl: u64) -> Call<'_, bool> {
        self.log.borrow_mut().push("SET NX");
        let mut map = self.map.borrow_mut();
        let new = !map.contains_key(&key);
        if new {
            map.insert(key, value);
        }
        Box::pin(async move { Ok(new) })
    }
}
