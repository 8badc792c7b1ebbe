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
//! `REDIS_URL=redis+cluster://h1:p1,h2:p2,…` selects Redis Cluster (redis-rs `cluster-async`,
//! also lazy). Everything above this module is the same on both; what differs is here:
//! - a script's keys share a slot: a key that opens with a hash tag (`{cache:x}:lock`, from
//!   `shared::keys::fill_lock`) gets the prefix *inside* the tag, so the lock lands in the slot of
//!   the key it guards;
//! - a pipeline must stay in one slot, so multi-key pipelines are sent as concurrent commands
//!   instead (and multi-key `MGET`/`DEL` are split per slot by the client, the parts sent
//!   concurrently over each node's one multiplexed connection: a round trip per node, not per
//!   key);
//! - `SCAN` and `INFO` go to every master ([`Redis::masters`]);
//! - invalidation uses plain `PUBLISH`, which a cluster broadcasts to every node: the
//!   subscriber listens on any one node and moves to the next when that one goes away. Sharded
//!   pub/sub would spare the cluster bus, but invalidations are a few small messages per price
//!   change, and one channel per shard would tie the subscriber to slot ownership, which moves on
//!   failover.
//!
//! Lua scripts belong to the module whose logic they are (`cache/fill.lua`, `ratelimit/*.lua`);
//! they run through [`Redis::eval`] (EVALSHA, reloaded on NOSCRIPT by `redis::Script`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::try_join_all;
use futures::{Stream, StreamExt};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    ClientTlsConfig, Cmd, FromRedisValue, Pipeline, RedisFuture, Script, TlsCertificates,
    ToRedisArgs, Value,
};
use secrecy::ExposeSecret;

use crate::config::{RedisTls, Settings, redis_cluster_nodes};

/// A Redis command that did not succeed within its bound.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis {op} timed out")]
    Timeout { op: &'static str },
    /// The server took the connection and then said nothing (see [`Redis::preflight`]).
    #[error("{addr} accepted the connection but did not complete {what} within {bound:?}{hint}")]
    Silent {
        addr: String,
        what: &'static str,
        bound: Duration,
        hint: &'static str,
    },
    #[error("redis {op} failed: {source}")]
    Command {
        op: &'static str,
        source: redis::RedisError,
    },
}

impl RedisError {
    /// Whether this failure is a configuration that waiting will not mend: the server's
    /// certificate refused (or no TLS on the other end of a `rediss://` URL), the user or
    /// password refused. Start-up stops on these, naming `REDIS_URL`.
    pub fn is_misconfigured(&self) -> bool {
        let source = match self {
            RedisError::Command { source, .. } => source,
            RedisError::Silent { .. } => return true,
            RedisError::Timeout { .. } => return false,
        };
        matches!(
            source.kind(),
            redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig
        ) || matches!(source.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
            || io_cause(source).is_some_and(crate::tls::is_handshake_failure)
    }
}

/// The I/O error under a redis-rs error (it keeps it behind an `Arc<dyn Error>`).
fn io_cause(e: &redis::RedisError) -> Option<&std::io::Error> {
    let cause = std::error::Error::source(e)?;
    cause.downcast_ref::<std::io::Error>().or_else(|| {
        cause
            .downcast_ref::<Arc<dyn std::error::Error + Send + Sync>>()
            .and_then(|inner| inner.downcast_ref::<std::io::Error>())
    })
}

/// Bound on opening a pub/sub connection and subscribing.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The bound on Redis calls of background work (the purge queue, leases): long enough that a
/// busy server's reply arrives, so the caller knows what its script did.
pub const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Redis {
    conn: Conn,
    /// Where pub/sub connections (which cannot be shared) are opened.
    subscribe_to: Arc<SubscribeTargets>,
    /// `REDIS_KEY_PREFIX`: in front of every key and channel.
    prefix: Arc<str>,
    timeout: Duration,
    /// The first server the URL names (`None` for a Unix socket), and whether it is TLS.
    seed: Option<(String, u16)>,
    tls: bool,
}

/// The shared connection: one server, or a cluster (routing by slot, following redirects and
/// failovers by itself).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The servers a subscription may be opened on: the one server, or the cluster's seed nodes
/// tried in turn (any node hears a cluster-wide `PUBLISH`), each with the URL's credentials and
/// TLS settings; [`SubscribeTargets::node`] opens one on a node the cluster named.
struct SubscribeTargets {
    clients: Vec<redis::Client>,
    next: AtomicUsize,
    /// The first seed's URL: the credentials and scheme every node of a cluster is reached with.
    template: Option<String>,
    certs: Option<TlsCertificates>,
}

impl SubscribeTargets {
    /// A client for the cluster node `node`, authenticated and encrypted like the seeds.
    fn node(&self, node: &Node) -> Option<redis::Client> {
        let mut url = url::Url::parse(self.template.as_deref()?).ok()?;
        url.set_host(Some(&node.host)).ok()?;
        url.set_port(Some(node.port)).ok()?;
        open_client(url.as_str(), &self.certs).ok()
    }
}

/// The certificates `tls` names, in redis-rs's form (`None`: the bundled roots, no client
/// certificate, or no TLS at all).
fn certificates(tls: &RedisTls) -> Option<TlsCertificates> {
    if !tls.enabled || (tls.ca.is_none() && tls.client.is_none()) {
        return None;
    }
    Some(TlsCertificates {
        client_tls: tls.client.as_ref().map(|(cert, key)| ClientTlsConfig {
            client_cert: cert.clone(),
            client_key: key.expose_secret().to_vec(),
        }),
        // Replaces the bundled roots: only this CA is trusted.
        root_cert: tls.ca.as_ref().map(|(_, pem)| pem.clone()),
    })
}

fn open_client(url: &str, certs: &Option<TlsCertificates>) -> redis::RedisResult<redis::Client> {
    match certs {
        Some(certs) => redis::Client::build_with_tls(url, certs.clone()),
        None => redis::Client::open(url),
    }
}

impl Conn {
    /// Connects to `url` (one server, or `redis+cluster://…`) on first use, over TLS as `tls`
    /// says; fails only on a malformed URL. `timeout` bounds connecting and each reply.
    pub fn open_lazy(
        url: &str,
        tls: &RedisTls,
        timeout: Duration,
    ) -> Result<Conn, redis::RedisError> {
        Self::open(url, tls, timeout).map(|(conn, _)| conn)
    }

    fn open(
        url: &str,
        tls: &RedisTls,
        timeout: Duration,
    ) -> Result<(Conn, SubscribeTargets), redis::RedisError> {
        // A TLS handshake is a round trip or two more than a TCP connect.
        let connect_timeout =
            timeout.max(Duration::from_millis(if tls.enabled { 1000 } else { 250 }));
        let certs = certificates(tls);
        match redis_cluster_nodes(url).map_err(|reason| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "REDIS_URL", reason))
        })? {
            None => {
                let client = open_client(url, &certs)?;
                // No response timeout of its own: every command is bounded by `timeout` in
                // [`Redis::bounded`] already, and a second timer per command costs a hit.
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(connect_timeout))
                    // Reconnect attempts are cheap and bounded; requests never wait on them
                    // because every command is also bounded by `timeout`.
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let conn = client.get_connection_manager_lazy(config)?;
                let targets = SubscribeTargets {
                    clients: vec![client],
                    next: AtomicUsize::new(0),
                    template: None,
                    certs,
                };
                Ok((Conn::Single(conn), targets))
            }
            Some(nodes) => {
                let clients = nodes
                    .iter()
                    .map(|n| open_client(n, &certs))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut builder = ClusterClientBuilder::new(nodes.clone());
                if let Some(certs) = &certs {
                    builder = builder.certs(certs.clone());
                }
                let client = builder
                    // Redirects and retries during a failover stay inside the caller's bound.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500)
                    .build()?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(timeout);
                let conn = client.get_pending_async_connection_with_config(config);
                let targets = SubscribeTargets {
                    clients,
                    next: AtomicUsize::new(0),
                    template: nodes.first().cloned(),
                    certs,
                };
                Ok((Conn::Cluster(conn), targets))
            }
        }
    }
}

impl Redis {
    /// A client for `url` that connects on first use (over TLS as `tls` says). Fails only on a
    /// malformed URL.
    pub fn connect_lazy(
        url: &str,
        tls: &RedisTls,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Redis, redis::RedisError> {
        let (conn, targets) = Conn::open(url, tls, timeout)?;
        let first = redis_cluster_nodes(url)
            .ok()
            .flatten()
            .and_then(|nodes| nodes.into_iter().next())
            .unwrap_or_else(|| url.to_owned());
        let seed = url::Url::parse(&first).ok().and_then(|u| {
            let host = u.host_str()?.trim_matches(['[', ']']).to_owned();
            (u.scheme() != "unix").then(|| (host, u.port().unwrap_or(6379)))
        });
        Ok(Redis {
            conn,
            subscribe_to: Arc::new(targets),
            prefix: prefix.into(),
            timeout,
            seed,
            tls: tls.enabled,
        })
    }

    fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// The client `REDIS_URL`, `REDIS_KEY_PREFIX` and `REDIS_TIMEOUT_MS` describe.
    pub fn from_settings(settings: &Settings) -> Result<Redis, redis::RedisError> {
        Redis::connect_lazy(
            settings.redis_url.expose_secret(),
            &settings.redis_tls,
            &settings.redis_key_prefix,
            settings.redis_timeout,
        )
    }

    /// The full Redis name of a key or channel built by `shared::keys`. A key that opens with a
    /// hash tag keeps the tag around the prefixed name (`{cache:x}:lock` → `{p:cache:x}:lock`),
    /// so it shares a slot with the key `p:cache:x`.
    fn full(&self, key: &str) -> String {
        prefixed(&self.prefix, key)
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        self.ping_within(self.timeout).await
    }

    /// Start-up's check: a `PING` within `bound`. A server that takes the TCP connection and then
    /// says nothing for that long is reported as such, not as "not up yet": behind a
    /// `rediss://` URL it is the sign of a plaintext port (it waits for a command while the
    /// client waits for its TLS handshake), and nothing but a `ClientHello` was sent to it.
    pub async fn preflight(&self, bound: Duration) -> Result<(), RedisError> {
        let outcome = self.ping_within(bound).await;
        let (Err(RedisError::Timeout { .. }), Some((host, port))) = (&outcome, &self.seed) else {
            return outcome;
        };
        let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(_)) => Err(RedisError::Silent {
                addr: format!("{host}:{port}"),
                what: if self.tls {
                    "a TLS handshake"
                } else {
                    "a PING"
                },
                bound,
                hint: if self.tls {
                    " (is it a plaintext port behind a rediss:// URL?)"
                } else {
                    ""
                },
            }),
            _ => outcome,
        }
    }

    /// `PING` under a bound of its own (start-up allows a connect and a TLS handshake).
    pub async fn ping_within(&self, bound: Duration) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        self.bounded_by("ping", bound, async move {
            redis::cmd("PING").query_async::<()>(&mut conn).await
        })
        .await
    }

    /// `GET key`: the one command of every read that misses L1, made at its size with the
    /// prefixed key written straight into it (no `String` for it, no buffer regrown).
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, RedisError> {
        let full = Prefixed {
            prefix: &self.prefix,
            key,
        };
        let mut cmd = redis::Cmd::with_capacity(2, 3 + full.len());
        cmd.arg("GET").arg(full);
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = self
            .bounded("get", async move { cmd.query_async(&mut conn).await })
            .await?;
        Ok(value.map(Bytes::from))
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
        if self.is_cluster() {
            // Keys in many slots: one command each, all in flight at once.
            let sets = entries.iter().map(|(key, value, ttl)| {
                let cmd = redis::cmd("SET")
                    .arg(self.full(key))
                    .arg(value.as_ref())
                    .arg("EX")
                    .arg(*ttl)
                    .to_owned();
                self.query::<()>("set", cmd)
            });
            return try_join_all(sets).await.map(|_| ());
        }
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
        let full: Vec<String> = keys.iter().map(|k| self.full(k)).collect();
        if self.is_cluster() {
            // Deleted first, then announced: a replica that reloads on the message misses.
            let del = redis::cmd("DEL").arg(full).to_owned();
            self.query::<()>("del", del).await?;
            return self.publish(channel, message).await;
        }
        let mut pipe = redis::pipe();
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
    /// KEYS, so Redis keeps serving while it runs; on a cluster, on every master. Returns how
    /// many were deleted.
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        let full = self.full(pattern);
        let mut deleted = 0u64;
        for node in self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let scan = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&full)
                    .arg("COUNT")
                    .arg(1000)
                    .to_owned();
                let (next, batch): (u64, Vec<String>) = self.query_on(&node, "scan", scan).await?;
                if !batch.is_empty() {
                    let unlink = redis::cmd("UNLINK").arg(batch).to_owned();
                    deleted += self.query::<u64>("unlink", unlink).await?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// The servers holding data: `None` for the one server, else each cluster master's
    /// `host:port` (from `CLUSTER NODES`, so it follows failovers).
    pub async fn masters(&self) -> Result<Vec<Option<Node>>, RedisError> {
        if !self.is_cluster() {
            return Ok(vec![None]);
        }
        let nodes: String = self
            .query("cluster", redis::cmd("CLUSTER").arg("NODES").to_owned())
            .await?;
        Ok(cluster_masters(&nodes).into_iter().map(Some).collect())
    }

    /// Runs a Lua script (EVALSHA, loading it on NOSCRIPT) on `keys` with `args`.
    pub async fn eval<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &Script,
        keys: &[&str],
        args: impl ToRedisArgs,
    ) -> Result<T, RedisError> {
        self.eval_within(op, self.timeout, script, keys, args).await
    }

    /// [`Redis::eval`] bounded by `bound` (at least the configured bound) instead: for background
    /// work no request waits on ([`BACKGROUND_TIMEOUT`]), where a reply lost to the request
    /// path's tight bound would leave a script's effect unknown to its caller.
    pub async fn eval_within<T: FromRedisValue>(
        &self,
        op: &'static str,
        bound: Duration,
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
        let bound = bound.max(self.timeout);
        self.bounded_by(op, bound, async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// `INFO <section>` as text from every server holding data, with its address (`None` for
    /// the one server).
    pub async fn info(&self, section: &str) -> Result<Vec<(Option<Node>, String)>, RedisError> {
        let mut out = Vec::new();
        for node in self.masters().await? {
            let text: String = self
                .query_on(&node, "info", redis::cmd("INFO").arg(section).to_owned())
                .await?;
            out.push((node, text));
        }
        Ok(out)
    }

    /// A subscription to `channel` on a connection of its own: the stream of its messages ends
    /// when the connection drops (the caller resubscribes).
    ///
    /// On a cluster it listens on the master of the channel's slot, where `PUBLISH` is routed:
    /// that node hands the message to its own subscribers before it answers the publisher, so an
    /// invalidation is delivered before the mutation's response, as on one server (any other
    /// node hears it a cluster-bus hop later). When that master cannot be reached (mid-failover),
    /// the seed nodes are tried in turn, starting after the last one tried.
    pub async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<impl Stream<Item = String> + Send + 'static, RedisError> {
        let channel = self.full(channel);
        let mut candidates = Vec::new();
        if self.is_cluster() {
            // The first subscription is made at start-up, while the cluster connection is still
            // learning the topology: these two get the subscription's bound, not one command's,
            // or a cold start would fall back to an arbitrary node (a bus hop behind PUBLISH).
            let mut conn = self.conn.clone();
            let keyslot = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&channel)
                .to_owned();
            let slot: Result<u16, _> = self
                .bounded_by("cluster", SUBSCRIBE_TIMEOUT, async move {
                    keyslot.query_async(&mut conn).await
                })
                .await;
            let mut conn = self.conn.clone();
            let nodes: Result<String, _> = self
                .bounded_by("cluster", SUBSCRIBE_TIMEOUT, async move {
                    redis::cmd("CLUSTER")
                        .arg("NODES")
                        .query_async(&mut conn)
                        .await
                })
                .await;
            if let Some(owner) = slot
                .ok()
                .zip(nodes.ok())
                .and_then(|(s, n)| slot_owner(&n, s))
                && let Some(client) = self.subscribe_to.node(&owner)
            {
                candidates.push(client);
            }
        }
        let seeds = &self.subscribe_to.clients;
        let start = self.subscribe_to.next.fetch_add(1, Ordering::Relaxed);
        candidates.extend((0..seeds.len()).map(|i| seeds[(start + i) % seeds.len()].clone()));
        let mut last_error = None;
        for client in candidates {
            let channel = channel.clone();
            // Connecting and subscribing may take longer than one command: a bound of its own.
            let subscribed = self
                .bounded_by("subscribe", SUBSCRIBE_TIMEOUT, async move {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(channel).await?;
                    Ok(pubsub)
                })
                .await;
            match subscribed {
                Ok(pubsub) => {
                    return Ok(pubsub
                        .into_on_message()
                        .filter_map(|msg| async move { msg.get_payload::<String>().ok() }));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or(RedisError::Timeout { op: "subscribe" }))
    }

    /// One command on the shared connection, bounded.
    async fn query<T: FromRedisValue>(&self, op: &'static str, cmd: Cmd) -> Result<T, RedisError> {
        let mut conn = self.conn.clone();
        self.bounded(op, async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// One command on one cluster node (`None`: the one server), bounded.
    async fn query_on<T: FromRedisValue>(
        &self,
        node: &Option<Node>,
        op: &'static str,
        cmd: Cmd,
    ) -> Result<T, RedisError> {
        match (&self.conn, node) {
            (Conn::Cluster(conn), Some(node)) => {
                let mut conn = conn.clone();
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: node.host.clone(),
                    port: node.port,
                });
                self.bounded(op, async move {
                    let value = conn.route_command(cmd, routing).await?;
                    Ok(redis::from_redis_value(value)?)
                })
                .await
            }
            _ => self.query(op, cmd).await,
        }
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

/// [`prefixed`] as a command argument, written into the command without a `String` of its own.
#[derive(Clone, Copy)]
struct Prefixed<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl<'a> Prefixed<'a> {
    fn len(&self) -> usize {
        self.prefix.len() + self.key.len()
    }

    /// The name in three pieces: the prefix goes in front, or just inside a leading hash tag
    /// (the one place that rule is spelled).
    fn parts(&self) -> [&'a str; 3] {
        match self.key.strip_prefix('{') {
            Some(rest) => ["{", self.prefix, rest],
            None => ["", self.prefix, self.key],
        }
    }
}

impl redis::ToRedisArgs for Prefixed<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing into the command's buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// `key` in the namespace `prefix`, the way [`Redis`] names it on the server: the prefix goes in
/// front, or just inside a leading hash tag.
pub fn prefixed(prefix: &str, key: &str) -> String {
    let name = Prefixed { prefix, key };
    let mut s = String::with_capacity(name.len());
    for part in name.parts() {
        s.push_str(part);
    }
    s
}

/// A cluster node's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The masters serving slots in `CLUSTER NODES` output (lines of `id host:port@bus flags master
/// ping pong epoch link slot…`), skipping any flagged as failed, with the slot ranges each
/// serves.
fn masters_with_slots(nodes: &str) -> Vec<(Node, Vec<(u16, u16)>)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "fail?");
            // Ranges `a-b` or single slots; `[…]` entries are slots being migrated.
            let slots: Vec<(u16, u16)> = fields
                .iter()
                .skip(8)
                .filter_map(|r| match r.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => r.parse().ok().map(|s| (s, s)),
                })
                .collect();
            if !is_master || failed || slots.is_empty() {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            let node = Node {
                host: host.to_owned(),
                port: port.parse().ok()?,
            };
            Some((node, slots))
        })
        .collect()
}

fn cluster_masters(nodes: &str) -> Vec<Node> {
    masters_with_slots(nodes)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// The master serving `slot`, if `CLUSTER NODES` names one.
fn slot_owner(nodes: &str, slot: u16) -> Option<Node> {
    masters_with_slots(nodes)
        .into_iter()
        .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_tagged_key_keeps_its_tag_around_the_prefix() {
        let key = "cache:prices:a:b:c";
        let lock = prefixed("p:", &shared::keys::fill_lock(key));
        assert_eq!(lock, "{p:cache:prices:a:b:c}:lock");
        let slot = |k: &str| redis::cluster_routing::Slot::for_key(k);
        assert_eq!(
            slot(&lock),
            slot(&prefixed("p:", key)),
            "a fill script's two keys must share a slot"
        );
        assert_ne!(slot(&lock), slot("p:cache:prices:a:b:d"));
    }

    #[test]
    fn a_prefixed_argument_is_the_prefixed_key() {
        for (key, name) in [
            ("cache:prices:a:b:c", "p:cache:prices:a:b:c"),
            ("{cache:prices:a:b:c}:lock", "{p:cache:prices:a:b:c}:lock"),
            ("", "p:"),
            ("{", "{p:"),
        ] {
            assert_eq!(prefixed("p:", key), name);
            let arg = Prefixed { prefix: "p:", key };
            let mut cmd = redis::Cmd::with_capacity(2, 4 + arg.len());
            cmd.arg("GET").arg(arg);
            let expected = redis::cmd("GET").arg(name).get_packed_command();
            assert_eq!(cmd.get_packed_command(), expected, "{key}");
        }
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:7002@17002 master,fail - 0 0 2 connected 5461-10922
a3 127.0.0.1:7004@17004 slave a1 0 0 1 connected
a4 127.0.0.1:7005@17005 master - 0 0 4 connected 10923-16383
a5 127.0.0.1:7006@17006 master - 0 0 5 connected
";
        let masters: Vec<String> = cluster_masters(text)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(masters, ["127.0.0.1:7001", "127.0.0.1:7005"]);
        assert_eq!(slot_owner(text, 0).map(|n| n.port), Some(7001));
        assert_eq!(slot_owner(text, 12000).map(|n| n.port), Some(7005));
        assert_eq!(slot_owner(text, 6000), None, "its master is down");
    }
}
