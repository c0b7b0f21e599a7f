//! What the app's tests start from: a process with no traffic yet, and the
//! first worker of one instance. Tests change the fields they are about.

use super::hub::{Here, Hub, Seqs};
use super::snapshot::Snapshot;
use crate::ids::ConnKey;

/// Nothing connected, nothing sent, no Redis, not draining.
pub fn snapshot() -> Snapshot {
    Snapshot {
        now_ms: 0,
        draining: false,
        drain_deadline_in_s: 0,
        active: 0,
        notify_clients: 0,
        connections_total: 0,
        messages_sent: 0,
        messages_received: 0,
        uptime_s: 0,
        redis: "disabled",
        peer_clients: 0,
        pid: 1,
        listener: "bound",
        listener_shared: false,
        memory: Default::default(),
    }
}

/// Worker 0 of 1 of instance `ab`, without Redis.
pub fn here(hub: &Hub) -> Here<'_> {
    Here {
        instance: "ab",
        worker: 0,
        workers: 1,
        redis: false,
        peer: None,
        hub,
        seqs: &NO_CONNS,
    }
}

/// A worker's connections, as the hub sees them: each key with the
/// sequence number its client joined with.
#[derive(Debug, Default)]
pub struct Conns(pub Vec<(ConnKey, u64)>);

impl Seqs for Conns {
    fn seq_of(&self, key: ConnKey) -> Option<u64> {
        self.0.iter().find(|(k, _)| *k == key).map(|&(_, seq)| seq)
    }
}

static NO_CONNS: Conns = Conns(Vec::new());
