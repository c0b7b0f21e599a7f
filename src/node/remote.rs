//! This worker's Redis link, as the node holds it (the link itself is
//! `redis::RedisLink`; the steps around it are in `instances.rs`).

use std::time::Instant;

use super::redis::RedisLink;
use crate::config::{Config, RedisUrl};
use crate::rand::Rng;

#[derive(Debug)]
pub struct Remote {
    pub link: RedisLink,
}

impl Remote {
    pub fn new(url: RedisUrl, config: &Config, rng: Rng, now: Instant) -> Remote {
        // The process-wide cap, shared evenly by the workers' links.
        let max_queue = (config.redis_max_queue_bytes / config.workers).max(1);
        Remote {
            link: RedisLink::new(url, config.redis_channel.clone(), max_queue, rng, now),
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.link.next_deadline()
    }

    /// Whether Redis numbers broadcasts now (see `RedisLink::sequencing`).
    pub fn sequencing(&self, now: Instant) -> bool {
        self.link.sequencing(now)
    }
}
