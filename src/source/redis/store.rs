//! What the Redis layer needs of Redis, and nothing more: a value by key and
//! the versioned write. [`RedisL2`](super::RedisL2) holds a `dyn Store`, so
//! its policy (errors are misses, copies are checked before use) is tested
//! against fakes ([`DownRedis`] in the unit tests) as well as against real
//! servers (`tests/`).

use std::future::Future;
use std::pin::Pin;

use fred::prelude::*;

/// A Redis call in flight, on the shard that made it.
pub type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + 'a>>;

/// The two commands the read path uses.
pub trait Store {
    /// `GET key`.
    fn get(&self, key: String) -> Call<'_, Option<Vec<u8>>>;
    /// The versioned write ([`super::scripts::WRITE`]): 1 written, 0 refused
    /// because Redis holds a newer revision.
    fn write_versioned(&self, key: String, value: Vec<u8>, ttl: u64) -> Call<'_, i64>;
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
}
