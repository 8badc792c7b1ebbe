//! The fleet's purge queue in Redis: per sink, a sorted set of tags to purge hard and one to purge
//! soft (each tag once, scored by when it was first queued), the tags a call has in flight, and
//! the sink's budget (a GCRA's next allowed call). Every replica queues ([`Queue::enqueue`]); the
//! one holding the sender's lease takes and settles ([`Queue::take`], [`Queue::settle`]). All of
//! a sink's keys share one hash tag (`{purge}`), so each script runs on one cluster slot.

use std::time::Duration;

use crate::redis::{BACKGROUND_TIMEOUT, Redis, RedisError};

use super::Kind;

static ENQUEUE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("enqueue.lua")));
static TAKE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("take.lua")));
static SETTLE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("settle.lua")));

/// The sender's lease.
pub const SENDER_LEASE_KEY: &str = "{purge}:sender";

/// One sink's keys and budget.
#[derive(Clone, Debug)]
pub struct SinkQueue {
    pub name: &'static str,
    hard: String,
    soft: String,
    flight: String,
    budget: String,
    /// Between two calls, on average.
    pub interval: Duration,
    /// How far ahead of its average the sender may call (a burst of `burst` calls at once).
    burst_ms: u64,
    /// Tags queued past which products merge into their countries.
    cap: usize,
}

impl SinkQueue {
    pub fn new(name: &'static str, rate: crate::config::Rate, tags_per_call: usize) -> SinkQueue {
        let interval = rate.interval();
        let key = |part: &str| format!("{{purge}}:{name}:{part}");
        // What the budget sends within MERGE_AFTER, and at least one full call.
        let calls = (MERGE_AFTER.as_millis() / interval.as_millis().max(1)).max(1) as usize;
        SinkQueue {
            name,
            hard: key("hard"),
            soft: key("soft"),
            flight: key("flight"),
            budget: key("budget"),
            interval,
            burst_ms: interval.as_millis() as u64 * (rate.burst() as u64 - 1),
            cap: (calls * tags_per_call).max(tags_per_call),
        }
    }

    fn keys(&self) -> [&str; 4] {
        [&self.hard, &self.soft, &self.flight, &self.budget]
    }
}

/// A backlog bigger than the budget sends in this long merges products into countries: the
/// longest a change waits in the queue under sustained overload, give or take a call.
pub const MERGE_AFTER: Duration = Duration::from_secs(10);

/// How long a tag may wait before it is dropped unsent: every cache downstream has let go of
/// the copies it would purge by then.
pub const TAG_LIFETIME: Duration =
    Duration::from_secs(shared::policy::LONGEST_EDGE_RETENTION_SECS as u64);

/// What the sender may do next for a sink.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// Nothing queued.
    Empty,
    /// Over budget for this long.
    Wait(Duration),
    /// The caller no longer holds the sender's lease.
    Lost,
    /// The next call's tags.
    Call { kind: Kind, tags: Vec<String> },
}

/// What a take saw of the queue besides.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backlog {
    /// Tags still queued after the take.
    pub pending: u64,
    /// How long the oldest queued tag had waited.
    pub oldest: Duration,
    /// Tags dropped unsent, having waited past [`TAG_LIFETIME`].
    pub expired: u64,
    /// Tags found in flight with no call of this sender's (a previous holder's, or a take whose
    /// reply was lost), queued again by this take.
    pub stranded: u64,
}

/// How a call ended, for its tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// Forget them (purged, or refused for good).
    Done,
    /// Queue them again; no replica calls this sink again for `pause`.
    Back { pause: Duration },
}

#[derive(Clone)]
pub struct Queue {
    redis: Redis,
    pub sinks: Vec<SinkQueue>,
}

impl Queue {
    pub fn new(redis: Redis, sinks: Vec<SinkQueue>) -> Queue {
        Queue { redis, sinks }
    }

    /// Queues `hard` and `soft` tags for every sink; returns how many merged into a country's
    /// tag, per sink.
    pub async fn enqueue(&self, hard: &[String], soft: &[String]) -> Result<Vec<u64>, RedisError> {
        let keys: Vec<&str> = self
            .sinks
            .iter()
            .flat_map(|s| [s.hard.as_str(), s.soft.as_str()])
            .collect();
        let mut args: Vec<String> =
            Vec::with_capacity(3 + self.sinks.len() + hard.len() + soft.len());
        args.push(self.sinks.len().to_string());
        args.extend(self.sinks.iter().map(|s| s.cap.to_string()));
        args.push(hard.len().to_string());
        args.extend(hard.iter().cloned());
        args.extend(soft.iter().cloned());
        self.redis
            .eval_within("purge", BACKGROUND_TIMEOUT, &ENQUEUE, &keys, args)
            .await
    }

    /// Takes the next call's tags for sink `i` (at most `most`), if its budget allows a call now
    /// and `owner` holds the sender's lease.
    pub async fn take(
        &self,
        i: usize,
        most: usize,
        owner: &str,
    ) -> Result<(Take, Backlog), RedisError> {
        let sink = &self.sinks[i];
        let [hard, soft, flight, budget] = sink.keys();
        let reply: Vec<String> = self
            .redis
            .eval_within(
                "purge",
                BACKGROUND_TIMEOUT,
                &TAKE,
                &[hard, soft, flight, budget, SENDER_LEASE_KEY],
                (
                    most,
                    sink.interval.as_millis() as u64,
                    sink.burst_ms,
                    TAG_LIFETIME.as_millis() as u64,
                    owner,
                ),
            )
            .await?;
        let number = |i: usize| {
            reply
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let backlog = Backlog {
            pending: number(3),
            oldest: Duration::from_millis(number(4)),
            expired: number(2),
            stranded: number(5),
        };
        let tags = || reply.get(6..).unwrap_or_default().to_vec();
        let take = match reply.first().map(String::as_str) {
            Some("h") => Take::Call {
                kind: Kind::Hard,
                tags: tags(),
            },
            Some("s") => Take::Call {
                kind: Kind::Soft,
                tags: tags(),
            },
            Some("wait") => Take::Wait(Duration::from_millis(number(1))),
            Some("lost") => Take::Lost,
            _ => Take::Empty,
        };
        Ok((take, backlog))
    }

    /// Settles the tags of a call to sink `i`.
    pub async fn settle(
        &self,
        i: usize,
        kind: Kind,
        tags: &[String],
        how: Settle,
    ) -> Result<(), RedisError> {
        let sink = &self.sinks[i];
        let (mode, pause) = match how {
            Settle::Done => ("done", Duration::ZERO),
            Settle::Back { pause } => ("back", pause),
        };
        let mut args: Vec<String> = vec![
            mode.to_owned(),
            pause.as_millis().to_string(),
            sink.burst_ms.to_string(),
            kind.code().to_owned(),
        ];
        args.extend(tags.iter().cloned());
        let _: i64 = self
            .redis
            .eval_within("purge", BACKGROUND_TIMEOUT, &SETTLE, &sink.keys(), args)
            .await?;
        Ok(())
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }
}
