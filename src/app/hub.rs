//! The registry that finds a worker's clients by id, and where an id lives.
//!
//! A client id (`crate::ids::ClientId`) names the instance and the worker
//! that issued it, so a message for a client is routed without a shared
//! table.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

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
    /// The worker's connections, which tell the hub whose id it found.
    pub seqs: &'a dyn Seqs,
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
    here.hub.key(id.seq, here.seqs).map(Location::Here)
}

/// Which client a connection has: the sequence number it joined the hub
/// with (0 before it joined, or on `/echo`).
pub trait Seqs {
    fn seq_of(&self, key: ConnKey) -> Option<u64>;
}

impl fmt::Debug for dyn Seqs + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seqs")
    }
}

/// One worker's clients: the low 32 bits of an id's sequence number → the
/// connection key, 8 bytes a bucket (a `u64` seq and a `ConnKey` took 16).
///
/// Low bits alone could name a client that left 2^32 joins ago or a
/// forged id with other high bits, so a key found counts only when its
/// connection's client has the whole sequence number (`Seqs`). A number
/// whose low bits a connected client still holds is skipped when joining,
/// so each connected client has its own entry. Keys are stored as `u32`
/// (a worker holds far fewer connections); one that did not fit would only
/// fail that check, never reach another client.
#[derive(Debug, Default)]
pub struct Hub {
    by_low: HashMap<u32, u32>,
    next_seq: u64,
}

impl Hub {
    /// Registers a new client and returns its sequence number.
    pub fn join(&mut self, key: ConnKey) -> u64 {
        loop {
            self.next_seq += 1;
            if let Entry::Vacant(slot) = self.by_low.entry(self.next_seq as u32) {
                slot.insert(key.0 as u32);
                return self.next_seq;
            }
        }
    }

    /// Forgets client `seq` of connection `key`.
    pub fn leave(&mut self, seq: u64, key: ConnKey) {
        let low = seq as u32;
        if self.by_low.get(&low) == Some(&(key.0 as u32)) {
            self.by_low.remove(&low);
        }
    }

    /// The connection of client `seq`, if it is still connected.
    pub fn key(&self, seq: u64, seqs: &dyn Seqs) -> Option<ConnKey> {
        let key = ConnKey(*self.by_low.get(&(seq as u32))? as usize);
        (seqs.seq_of(key) == Some(seq)).then_some(key)
    }

    pub fn len(&self) -> usize {
        self.by_low.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_low.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures::Conns;

    fn id(text: &str) -> ClientId {
        text.parse().unwrap()
    }

    #[test]
    fn ids_are_located_by_instance_worker_and_key() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(7));
        let conns = Conns(vec![(ConnKey(7), seq)]);
        let here = Here {
            instance: "aa",
            worker: 1,
            workers: 2,
            redis: false,
            peer: None,
            hub: &hub,
            seqs: &conns,
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
        let conns = Conns(vec![(ConnKey(10), a), (ConnKey(11), b)]);
        assert_eq!(hub.key(a, &conns), Some(ConnKey(10)));
        hub.leave(a, ConnKey(10));
        assert_eq!(hub.key(a, &conns), None);
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.key(b, &conns), Some(ConnKey(11)));
    }

    #[test]
    fn only_the_whole_sequence_number_finds_a_client() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(4));
        let conns = Conns(vec![(ConnKey(4), seq)]);
        assert_eq!(hub.key(seq, &conns), Some(ConnKey(4)));
        assert_eq!(hub.key(seq + (1 << 32), &conns), None);
        // The connection's key now holds another client (the hub was not
        // told it left): the id of the one before reaches nobody.
        let reused = Conns(vec![(ConnKey(4), seq + 5)]);
        assert_eq!(hub.key(seq, &reused), None);
    }

    #[test]
    fn low_bits_a_connected_client_holds_are_skipped() {
        let mut hub = Hub::default();
        let old = hub.join(ConnKey(1));
        hub.next_seq = (1 << 32) + old - 1;
        let new = hub.join(ConnKey(2));
        assert_eq!(
            new,
            (1 << 32) + old + 1,
            "the number sharing low bits is skipped"
        );
        let conns = Conns(vec![(ConnKey(1), old), (ConnKey(2), new)]);
        assert_eq!(hub.key(old, &conns), Some(ConnKey(1)));
        assert_eq!(hub.key(new, &conns), Some(ConnKey(2)));
        assert_eq!(hub.key(old + (1 << 32), &conns), None);
        // Leaving takes only the leaver's entry, even under another
        // number with the same low bits.
        hub.leave(old + (1 << 32), ConnKey(2));
        assert_eq!(hub.key(old, &conns), Some(ConnKey(1)));
        hub.leave(old, ConnKey(1));
        assert_eq!(hub.key(old, &conns), None);
        assert_eq!(hub.len(), 1);
        assert_eq!(hub.key(new, &conns), Some(ConnKey(2)));
    }
}
