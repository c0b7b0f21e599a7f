//! The registry that finds a worker's clients by id, and where an id lives.
//!
//! A client id (`crate::ids::ClientId`) names the instance and the worker
//! that issued it, so a message for a client is routed without a shared
//! table.

use std::collections::HashMap;

use crate::ids::{ClientId, ConnKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws`: the notification protocol.
    Notify,
    /// `/echo`: every message back as it came.
    Echo,
}

/// What the application attaches to a WebSocket connection: which protocol
/// it speaks, and on `/ws` its sequence number in the hub (0 until it has
/// joined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub endpoint: Endpoint,
    pub seq: u64,
}

impl Client {
    /// Whether broadcasts are for it: a `/ws` client that has joined.
    pub fn takes_broadcasts(&self) -> bool {
        self.endpoint == Endpoint::Notify && self.seq != 0
    }
}

/// Where the deciding worker stands: enough to find a client by its id.
#[derive(Debug, Clone)]
pub struct Here<'a> {
    pub instance: &'a str,
    pub worker: usize,
    pub workers: usize,
    /// Whether other instances are reachable (through Redis).
    pub redis: bool,
    /// The other process of a hand-over on this host, by instance name.
    pub peer: Option<std::sync::Arc<str>>,
    pub hub: &'a Hub,
}

impl Here<'_> {
    /// The id of this worker's client number `seq`.
    pub fn id_of(&self, seq: u64) -> ClientId {
        ClientId::new(self.instance, self.worker, seq)
    }
}

/// Where a client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A client of another instance: forwarded over Redis.
    Elsewhere(ClientId),
    /// A connection of this worker.
    Here(ConnKey),
    /// Another worker's client.
    Worker { worker: usize, seq: u64 },
}

/// Where a client id lives, if it names a client that may exist.
pub fn locate(id: &ClientId, here: &Here) -> Option<Location> {
    if id.instance != here.instance {
        // Another instance's client is reached through Redis, or over the
        // hand-over link when it is the other process's, if at all.
        let reachable = here.redis || here.peer.as_deref() == Some(id.instance.as_str());
        return reachable.then(|| Location::Elsewhere(id.clone()));
    }
    if id.worker >= here.workers {
        return None;
    }
    if id.worker != here.worker {
        return Some(Location::Worker {
            worker: id.worker,
            seq: id.seq,
        });
    }
    here.hub.key(id.seq).map(Location::Here)
}

/// One worker's clients: id sequence number → connection.
#[derive(Debug, Default)]
pub struct Hub {
    by_seq: HashMap<u64, ConnKey>,
    next_seq: u64,
}

impl Hub {
    /// Registers a new client and returns its sequence number.
    pub fn join(&mut self, key: ConnKey) -> u64 {
        self.next_seq += 1;
        self.by_seq.insert(self.next_seq, key);
        self.next_seq
    }

    pub fn leave(&mut self, seq: u64) {
        self.by_seq.remove(&seq);
    }

    pub fn key(&self, seq: u64) -> Option<ConnKey> {
        self.by_seq.get(&seq).copied()
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ClientId {
        text.parse().unwrap()
    }

    #[test]
    fn ids_are_located_by_instance_worker_and_key() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(7));
        let here = Here {
            instance: "aa",
            worker: 1,
            workers: 2,
            redis: false,
            peer: None,
            hub: &hub,
        };
        assert_eq!(
            locate(&here.id_of(seq), &here),
            Some(Location::Here(ConnKey(7)))
        );
        assert_eq!(locate(&here.id_of(99), &here), None);
        assert_eq!(
            locate(&id("aa-0-5"), &here),
            Some(Location::Worker { worker: 0, seq: 5 })
        );
        assert_eq!(locate(&id("aa-2-5"), &here), None);
        assert_eq!(locate(&id("bb-0-5"), &here), None);
        let with_redis = Here {
            redis: true,
            ..here
        };
        assert_eq!(
            locate(&id("bb-0-5"), &with_redis),
            Some(Location::Elsewhere(id("bb-0-5")))
        );
    }

    #[test]
    fn registry_tracks_joins_and_leaves() {
        let mut hub = Hub::default();
        let a = hub.join(ConnKey(10));
        let b = hub.join(ConnKey(11));
        assert_ne!(a, b);
        assert_eq!(hub.key(a), Some(ConnKey(10)));
        hub.leave(a);
        assert_eq!(hub.key(a), None);
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.key(b), Some(ConnKey(11)));
    }
}
