//! The one place that talks to Redis. Everything else (the cache-aside, sessions, the rate
//! limiter, monitoring) asks [`Redis`] in terms of keys as `shared::keys` spells them; this module
//! adds the deployment's `REDIS_KEY_PREFIX`, bounds every command by `REDIS_TIMEOUT_MS`, counts
//! failures (`redis_errors_total{op,kind}`) and owns the connections.
//!
//! One multiplexed [`ConnectionManager`] is shared by every request (redis-rs's recommended set
//! up: no pool, pipelining for free). It is created lazily, so the origin starts while Redis is
//! down, and it reconnects by itself; because every command is also bounded here, a request never
//! waits on a reconnect longer than the bound. Pub/sub needs a connection of its own, opened by
//! [`Redis::subscribe`].
//!
//! Lua scripts belong to the module whose logic they are (`cache/fill.lua`, `ratelimit/*.lua`);
//! they run through [`Redis::eval`] (EVALSHA, reloaded on NOSCRIPT by `redis::Script`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ToRedisArgs};
use secrecy::ExposeSecret;

use crate::config::Settings;

/// A Redis command that did not succeed within its bound.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis {op} timed out")]
    Timeout { op: &'static str },
    #[error("redis {op} failed: {source}")]
    Command {
        op: &'static str,
        source: redis::RedisError,
    },
}

/// Bound on opening a pub/sub connection and subscribing.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    /// For connections that cannot be shared (pub/sub).
    client: redis::Client,
    /// `REDIS_KEY_PREFIX`: in front of every key and channel.
    prefix: Arc<str>,
    timeout: Duration,
}

impl Redis {
    /// A client for `url` that connects on first use. Fails only on a malformed URL.
    pub fn connect_lazy(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Redis, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
            // Reconnect attempts are cheap and bounded; requests never wait on them because every
            // command below is also bounded by `timeout`.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = client.get_connection_manager_lazy(config)?;
        Ok(Redis {
            conn,
            client,
            prefix: prefix.into(),
            timeout,
        })
    }

    /// The client `REDIS_URL`, `REDIS_KEY_PREFIX` and `REDIS_TIMEOUT_MS` describe.
    pub fn from_settings(settings: &Settings) -> Result<Redis, redis::RedisError> {
        Redis::connect_lazy(
            settings.redis_url.expose_secret(),
            &settings.redis_key_prefix,
            settings.redis_timeout,
        )
    }

    /// The full Redis name of a key or channel built by `shared::keys`.
    fn full(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.len());
        s.push_str(&self.prefix);
        s.push_str(key);
        s
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        self.bounded("ping", async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        })
        .await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GET").arg(self.full(key)).to_owned();
        self.bounded("get", async move {
            cmd.query_async::<Option<Vec<u8>>>(&mut conn).await
        })
        .await
        .map(|v| v.map(Bytes::from))
    }

    /// One `MGET` for all `keys`, values in the same order.
    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, RedisError> {
        let mut conn = self.conn.clone();
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        let cmd = redis::cmd("MGET").arg(full).to_owned();
        let values = self
            .bounded("mget", async move {
                cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn).await
            })
            .await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    /// `SET key value EX ttl` for each entry, in one pipelined round trip.
    pub async fn set_many(&self, entries: &[(String, Bytes, u32)]) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        for (key, value, ttl) in entries {
            pipe.cmd("SET")
                .arg(self.full(key))
                .arg(value.as_ref())
                .arg("EX")
                .arg(*ttl)
                .ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded(
            "set",
            async move { pipe.query_async::<()>(&mut conn).await },
        )
        .await
    }

    /// `SET key value EX ttl NX`: whether it was set (false: the key existed).
    pub async fn set_new(
        &self,
        op: &'static str,
        key: &str,
        value: &[u8],
        ttl_secs: u32,
    ) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(self.full(key))
            .arg(value)
            .arg("EX")
            .arg(ttl_secs)
            .arg("NX")
            .to_owned();
        let reply: Option<String> = self
            .bounded(op, async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(reply.is_some())
    }

    /// `GETEX key EX ttl`: the value, its expiry reset in the same atomic step.
    pub async fn get_and_expire(
        &self,
        op: &'static str,
        key: &str,
        ttl_secs: u32,
    ) -> Result<Option<Bytes>, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("GETEX")
            .arg(self.full(key))
            .arg("EX")
            .arg(ttl_secs)
            .to_owned();
        self.bounded(op, async move {
            cmd.query_async::<Option<Vec<u8>>>(&mut conn).await
        })
        .await
        .map(|v| v.map(Bytes::from))
    }

    /// `SADD key member` and `EXPIRE key ttl`, in one round trip.
    pub async fn add_to_set(
        &self,
        op: &'static str,
        key: &str,
        member: &str,
        ttl_secs: u64,
    ) -> Result<(), RedisError> {
        let full = self.full(key);
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(&full).arg(member).ignore();
        pipe.cmd("EXPIRE").arg(&full).arg(ttl_secs).ignore();
        let mut conn = self.conn.clone();
        self.bounded(op, async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    pub async fn set_members(
        &self,
        op: &'static str,
        key: &str,
    ) -> Result<Vec<String>, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SMEMBERS").arg(self.full(key)).to_owned();
        self.bounded(op, async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// `DEL keys` and `SREM set member`, in one round trip.
    pub async fn delete_and_unlist(
        &self,
        op: &'static str,
        keys: &[String],
        set: &str,
        member: &str,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        pipe.cmd("DEL").arg(full).ignore();
        pipe.cmd("SREM").arg(self.full(set)).arg(member).ignore();
        let mut conn = self.conn.clone();
        self.bounded(op, async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// `INCR key` and `EXPIRE key ttl NX` (the window starts at the first increment), in one
    /// round trip; returns the count.
    pub async fn count_up(
        &self,
        op: &'static str,
        key: &str,
        ttl_secs: u64,
    ) -> Result<u64, RedisError> {
        let full = self.full(key);
        let mut pipe = redis::pipe();
        pipe.cmd("INCR").arg(&full);
        pipe.cmd("EXPIRE")
            .arg(&full)
            .arg(ttl_secs)
            .arg("NX")
            .ignore();
        let mut conn = self.conn.clone();
        let (count,): (u64,) = self
            .bounded(op, async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(count)
    }

    /// A counter's value and its seconds to live (`None` when absent).
    pub async fn counter(
        &self,
        op: &'static str,
        key: &str,
    ) -> Result<Option<(u64, i64)>, RedisError> {
        let full = self.full(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&full);
        pipe.cmd("TTL").arg(&full);
        let mut conn = self.conn.clone();
        let (count, ttl): (Option<u64>, i64) = self
            .bounded(op, async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(count.map(|c| (c, ttl)))
    }

    pub async fn delete(&self, op: &'static str, keys: &[String]) -> Result<(), RedisError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        let cmd = redis::cmd("DEL").arg(full).to_owned();
        self.bounded(op, async move { cmd.query_async::<()>(&mut conn).await })
            .await
    }

    /// Deletes `keys` and publishes `message` on `channel`, in one round trip.
    pub async fn delete_and_publish(
        &self,
        keys: &[String],
        channel: &str,
        message: &str,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        pipe.cmd("DEL").arg(full).ignore();
        pipe.cmd("PUBLISH")
            .arg(self.full(channel))
            .arg(message)
            .ignore();
        let mut conn = self.conn.clone();
        self.bounded(
            "del",
            async move { pipe.query_async::<()>(&mut conn).await },
        )
        .await
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PUBLISH")
            .arg(self.full(channel))
            .arg(message)
            .to_owned();
        self.bounded(
            "publish",
            async move { cmd.query_async::<()>(&mut conn).await },
        )
        .await
    }

    /// Deletes every key matching `pattern` (`*` allowed) with SCAN and UNLINK in batches, never
    /// KEYS, so Redis keeps serving while it runs. Returns how many were deleted.
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        let full = self.full(pattern);
        let mut deleted = 0u64;
        let mut cursor: u64 = 0;
        loop {
            let mut conn = self.conn.clone();
            let scan = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&full)
                .arg("COUNT")
                .arg(1000)
                .to_owned();
            let (next, batch): (u64, Vec<String>) = self
                .bounded("scan", async move { scan.query_async(&mut conn).await })
                .await?;
            if !batch.is_empty() {
                let mut conn = self.conn.clone();
                let unlink = redis::cmd("UNLINK").arg(batch).to_owned();
                let n: u64 = self
                    .bounded("unlink", async move { unlink.query_async(&mut conn).await })
                    .await?;
                deleted += n;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Runs a Lua script (EVALSHA, loading it on NOSCRIPT) on `keys` with `args`.
    pub async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> Result<T, RedisError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(self.full(key));
        }
        invocation.arg(args);
        let mut conn = self.conn.clone();
        self.bounded(op, async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// `INFO <section>` as text.
    pub async fn info(&self, section: &str) -> Result<String, RedisError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("INFO").arg(section).to_owned();
        self.bounded("info", async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// A subscription to `channel` on a connection of its own: the stream of its messages ends
    /// when the connection drops (the caller resubscribes).
    pub async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<impl Stream<Item = String> + Send + 'static, RedisError> {
        let channel = self.full(channel);
        let client = self.client.clone();
        // Connecting and subscribing may take longer than one command: a bound of its own.
        let pubsub = self
            .bounded_by("subscribe", SUBSCRIBE_TIMEOUT, async move {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok(pubsub)
            })
            .await?;
        Ok(pubsub
            .into_on_message()
            .filter_map(|msg| async move { msg.get_payload::<String>().ok() }))
    }

    /// Runs one Redis call under the configured bound, counting failures by kind.
    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        self.bounded_by(op, self.timeout, fut).await
    }

    async fn bounded_by<T>(
        &self,
        op: &'static str,
        bound: Duration,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisError> {
        match tokio::time::timeout(bound, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => {
                let kind = if source.is_timeout() {
                    "timeout"
                } else {
                    "error"
                };
                crate::meters::redis_error(op, kind);
                tracing::warn!(op, error = %source, "redis command failed");
                Err(RedisError::Command { op, source })
            }
            Err(_) => {
                crate::meters::redis_error(op, "timeout");
                Err(RedisError::Timeout { op })
            }
        }
    }
}
