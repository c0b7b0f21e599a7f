//! This worker's Redis link, as the node holds it (the link itself is
//! `redis::RedisLink`; the steps around it are in `instances.rs`).

use std::time::{Duration, Instant};

use super::awaiting_follow::AwaitingFollow;
use super::redis::RedisLink;
use crate::config::{Config, RedisUrl};
use crate::rand::Rng;

/// How soon a worker comes back for a turn that only starts the wait of
/// what it sent to Redis (a poll's timeout is counted in milliseconds).
const NEXT_TURN: Duration = Duration::from_millis(1);

/// The channels one worker's subscription may follow: as many as its
/// clients can join (each its own `user:` channel besides the others).
fn max_channels(config: &Config) -> usize {
    config
        .max_connections
        .saturating_mul(config.max_channels_per_client.saturating_add(1))
}

#[derive(Debug)]
pub struct Remote {
    pub link: RedisLink,
    /// `subscribe` answers held until the link follows their channel.
    pub awaiting: AwaitingFollow,
    /// The history's generation the worker's channel offsets belong to
    /// (see `Node::check_channel_generation`).
    pub channel_generation: u64,
}

impl Remote {
    pub fn new(url: RedisUrl, config: &Config, rng: Rng, now: Instant) -> Remote {
        // The process-wide cap, shared evenly by the workers' links.
        let max_queue = (config.redis_max_queue_bytes / config.workers).max(1);
        let channel = config.redis_channel.clone();
        Remote {
            link: RedisLink::new(url, channel, max_queue, max_channels(config), rng, now),
            awaiting: AwaitingFollow::default(),
            channel_generation: 0,
        }
    }

    /// When the link next needs the node's attention, `turn` being the
    /// time of the current loop turn: soon after it if broadcasts sent in
    /// it are to start their wait for Redis (see
    /// `RedisLink::wants_next_turn`).
    pub fn next_deadline(&self, turn: Instant) -> Option<Instant> {
        let next_turn = self.link.wants_next_turn().then(|| turn + NEXT_TURN);
        self.link
            .next_deadline()
            .into_iter()
            .chain(next_turn)
            .chain(self.awaiting.next_deadline())
            .min()
    }

    /// Whether Redis numbers broadcasts now (see `RedisLink::sequencing`).
    pub fn sequencing(&self, now: Instant) -> bool {
        self.link.sequencing(now)
    }
}
