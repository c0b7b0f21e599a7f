//! The fields of `GET /status` and of the `status` message.

use serde_json::{json, Value};

use super::hub::Here;
use super::snapshot::Snapshot;

pub fn fields(snapshot: &Snapshot, here: &Here) -> Value {
    let mut status = json!({
        "state": if snapshot.draining { "draining" } else { "running" },
        "version": crate::config::VERSION,
        "pid": snapshot.pid,
        "workers": here.workers,
        "uptime_s": snapshot.uptime_s,
        "instance": here.instance,
        "connections": snapshot.active,
        "connections_total": snapshot.connections_total,
        "messages_sent": snapshot.messages_sent,
        "messages_received": snapshot.messages_received,
        "redis": snapshot.redis,
        "channels": snapshot.memory.channels,
        "subscriptions": snapshot.memory.subscriptions,
        "listener": snapshot.listener,
        "history": {
            "messages": snapshot.memory.history_entries,
            "bytes": snapshot.memory.history_bytes,
        },
        "memory": {
            "queued_bytes": snapshot.memory.queued_bytes,
            "mailbox_bytes": snapshot.memory.mailbox_bytes,
            "receiving_bytes": snapshot.memory.receiving_bytes,
            "history_bytes": snapshot.memory.history_bytes,
            "history_entries": snapshot.memory.history_entries,
            "channels_held": snapshot.memory.channels_held,
        },
    });
    if snapshot.draining {
        status["drain"] = json!({
            "remaining": snapshot.active,
            "deadline_in_s": snapshot.drain_deadline_in_s,
        });
    }
    status
}
