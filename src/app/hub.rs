//! Client ids and the registry that finds a worker's clients by id.
//!
//! A client id is `INSTANCE-WORKER-SEQ`: it names the instance and the
//! worker that issued it, so a message for a client can be routed without a
//! shared table, and ids stay unique across workers and instances.

use std::collections::HashMap;

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
#[derive(Debug, Clone, Copy)]
pub struct Here<'a> {
    pub instance: &'a str,
    pub worker: usize,
    pub workers: usize,
    /// Whether other instances are reachable (through Redis).
    pub redis: bool,
    pub hub: &'a Hub,
}

/// Where a client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A client of another instance: forwarded over Redis.
    Elsewhere,
    /// A slot of this worker.
    Here(usize),
    /// Another worker's client: worker and sequence number.
    Worker(usize, u64),
}

/// Where a client id lives, if it names a client that may exist.
pub fn locate(id: &str, here: &Here) -> Option<Location> {
    let client = parse_id(id)?;
    if client.instance != here.instance {
        // Another instance's client is reached through Redis, if at all.
        return here.redis.then_some(Location::Elsewhere);
    }
    if client.worker >= here.workers {
        return None;
    }
    if client.worker != here.worker {
        return Some(Location::Worker(client.worker, client.seq));
    }
    here.hub.slot(client.seq).map(Location::Here)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRef<'a> {
    pub instance: &'a str,
    pub worker: usize,
    pub seq: u64,
}

pub fn format_id(instance: &str, worker: usize, seq: u64) -> String {
    format!("{instance}-{worker}-{seq}")
}

pub fn parse_id(id: &str) -> Option<ClientRef<'_>> {
    let mut parts = id.rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let worker = parts.next()?.parse().ok()?;
    let instance = parts.next()?;
    if instance.is_empty() {
        return None;
    }
    Some(ClientRef {
        instance,
        worker,
        seq,
    })
}

/// One worker's clients: id sequence number → connection slot.
#[derive(Debug, Default)]
pub struct Hub {
    by_seq: HashMap<u64, usize>,
    next_seq: u64,
}

impl Hub {
    /// Registers a new client and returns its sequence number.
    pub fn join(&mut self, slot: usize) -> u64 {
        self.next_seq += 1;
        self.by_seq.insert(self.next_seq, slot);
        self.next_seq
    }

    pub fn leave(&mut self, seq: u64) {
        self.by_seq.remove(&seq);
    }

    pub fn slot(&self, seq: u64) -> Option<usize> {
        self.by_seq.get(&seq).copied()
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    pub fn slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.by_seq.values().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = format_id("1a2b3c4d", 3, 42);
        assert_eq!(id, "1a2b3c4d-3-42");
        assert_eq!(
            parse_id(&id),
            Some(ClientRef {
                instance: "1a2b3c4d",
                worker: 3,
                seq: 42
            })
        );
        for bad in ["", "x", "a-b-c", "-1-2", "a-1-", "a--2", "a-1-2x"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_are_located_by_instance_worker_and_slot() {
        let mut hub = Hub::default();
        let seq = hub.join(7);
        let here = Here {
            instance: "aa",
            worker: 1,
            workers: 2,
            redis: false,
            hub: &hub,
        };
        assert_eq!(
            locate(&format_id("aa", 1, seq), &here),
            Some(Location::Here(7))
        );
        assert_eq!(locate(&format_id("aa", 1, 99), &here), None);
        assert_eq!(locate("aa-0-5", &here), Some(Location::Worker(0, 5)));
        assert_eq!(locate("aa-2-5", &here), None);
        assert_eq!(locate("bb-0-5", &here), None);
        assert_eq!(
            locate(
                "bb-0-5",
                &Here {
                    redis: true,
                    ..here
                }
            ),
            Some(Location::Elsewhere)
        );
        assert_eq!(locate("nonsense", &here), None);
    }

    #[test]
    fn registry_tracks_joins_and_leaves() {
        let mut hub = Hub::default();
        let a = hub.join(10);
        let b = hub.join(11);
        assert_ne!(a, b);
        assert_eq!(hub.slot(a), Some(10));
        hub.leave(a);
        assert_eq!(hub.slot(a), None);
        assert_eq!(hub.slots().count(), 1);
        assert_eq!(hub.slots().collect::<Vec<_>>(), vec![11]);
    }
}
