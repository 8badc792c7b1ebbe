//! Readings for the guide's pre-traffic checklist (section 5), shared by `/metrics` (as gauges
//! the alert rules use) and `origin check` (as a table with PASS / WARN / FAIL):
//! Redis memory against its limit, PostgreSQL connections against `max_connections`, and the
//! origin's 5xx ratio from its own metrics.

use std::time::Duration;

use crate::db::Db;
use crate::redis::{Node, Redis, RedisError};

/// Redis memory in bytes. `maxmemory` 0 means unlimited: the host's memory is the real limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisMemory {
    pub used: u64,
    pub maxmemory: u64,
    pub host_total: Option<u64>,
}

/// `maxmemory_policy` from `INFO memory` (`noeviction`, `volatile-ttl`, …) of every server
/// holding data (each cluster master; `None`: the one server).
pub async fn redis_eviction_policy(
    redis: &Redis,
) -> Result<Vec<(Option<Node>, String)>, RedisError> {
    let infos = redis.info("memory").await?;
    Ok(infos
        .into_iter()
        .map(|(node, info)| {
            let policy = info
                .lines()
                .find_map(|l| l.strip_prefix("maxmemory_policy:"))
                .unwrap_or("unknown")
                .trim()
                .to_owned();
            (node, policy)
        })
        .collect())
}

impl RedisMemory {
    /// The limit used for the ratio: `maxmemory`, else the host's memory.
    pub fn limit(&self) -> Option<u64> {
        if self.maxmemory > 0 {
            Some(self.maxmemory)
        } else {
            self.host_total
        }
    }

    pub fn ratio(&self) -> Option<f64> {
        self.limit()
            .filter(|l| *l > 0)
            .map(|l| self.used as f64 / l as f64)
    }
}

fn info_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.trim().parse().ok())
}

/// `INFO memory` (`used_memory`, `maxmemory`, Redis 7's `total_system_memory`) of every server
/// holding data: each cluster master fills up on its own.
pub async fn redis_memory(redis: &Redis) -> Result<Vec<(Option<Node>, RedisMemory)>, RedisError> {
    let infos = redis.info("memory").await?;
    Ok(infos
        .into_iter()
        .map(|(node, info)| {
            let memory = RedisMemory {
                used: info_field(&info, "used_memory").unwrap_or(0),
                maxmemory: info_field(&info, "maxmemory").unwrap_or(0),
                host_total: info_field(&info, "total_system_memory").filter(|t| *t > 0),
            };
            (node, memory)
        })
        .collect())
}

/// Keys evicted since start (`INFO stats` `evicted_keys`), summed over the servers holding data:
/// with `volatile-ttl`, cache entries go first and then sessions (users signed out).
pub async fn redis_evicted_keys(redis: &Redis) -> Result<u64, RedisError> {
    let infos = redis.info("stats").await?;
    Ok(infos
        .iter()
        .filter_map(|(_, info)| info_field(info, "evicted_keys"))
        .sum())
}

/// `maxclients` from `INFO clients` of every server holding data (readable where `CONFIG` is
/// refused, as on ElastiCache).
pub async fn redis_maxclients(redis: &Redis) -> Result<Vec<(Option<Node>, u64)>, RedisError> {
    let infos = redis.info("clients").await?;
    Ok(infos
        .into_iter()
        .filter_map(|(node, info)| Some((node, info_field(&info, "maxclients")?)))
        .collect())
}

/// The server closest to its limit (the one the alert is about).
pub fn fullest(memories: &[(Option<Node>, RedisMemory)]) -> Option<RedisMemory> {
    memories.iter().map(|(_, m)| *m).max_by(|a, b| {
        a.ratio()
            .unwrap_or(0.0)
            .total_cmp(&b.ratio().unwrap_or(0.0))
    })
}

/// Client connections to the PostgreSQL server (all databases) and its `max_connections`.
pub async fn pg_connections(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    tokio::time::timeout(Duration::from_secs(2), db.server_connections())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// Sums `http_requests_total` from Prometheus text: (all requests, 5xx requests).
pub fn request_totals(metrics_text: &str) -> (f64, f64) {
    let mut total = 0.0;
    let mut errors = 0.0;
    for line in metrics_text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        total += v;
        if labels.contains("status=\"5") {
            errors += v;
        }
    }
    (total, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_and_limits() {
        let info = "# Memory\r\nused_memory:1000\r\nused_memory_human:1K\r\nmaxmemory:0\r\ntotal_system_memory:4000\r\n";
        let m = RedisMemory {
            used: info_field(info, "used_memory").unwrap(),
            maxmemory: info_field(info, "maxmemory").unwrap(),
            host_total: info_field(info, "total_system_memory"),
        };
        assert_eq!(m.limit(), Some(4000));
        assert_eq!(m.ratio(), Some(0.25));
        assert_eq!(
            RedisMemory {
                maxmemory: 2000,
                ..m
            }
            .ratio(),
            Some(0.5)
        );
    }

    #[test]
    fn totals_count_5xx() {
        let text = "# TYPE http_requests_total counter\n\
            http_requests_total{route=\"/a\",method=\"GET\",status=\"200\"} 90\n\
            http_requests_total{route=\"/a\",method=\"GET\",status=\"503\"} 6\n\
            http_requests_total{route=\"/b\",method=\"GET\",status=\"500\"} 4\n\
            http_request_duration_seconds_count{route=\"/a\"} 100\n";
        assert_eq!(request_totals(text), (100.0, 10.0));
    }
}
