//! Writing: queues flushed to their sockets at the end of a loop turn,
//! writability interest, what a flush leads to, and removing connections.
//! A flush never reads: a verdict that needs a read is carried out by the
//! reader, later in the loop.

use std::fmt::Display;
use std::net::Shutdown;
use std::os::fd::AsFd;

use mio::{Interest, Token};

use super::socket_write::SocketWriter;
use super::worker::Worker;
use crate::conn::{Stage, Verdict, WriteQueue};
use crate::log;
use crate::obs::metrics;

impl Worker {
    /// A client's own answers must not overtake broadcasts made before them
    /// in this turn: those are written first.
    pub(super) fn before_output(&mut self, key: usize) {
        if !self.turn_broadcasts.is_empty() && self.conns.get(key).is_some_and(|s| s.conn.is_ws()) {
            self.deliver_broadcasts();
        }
    }

    /// A connection's queue, marked to be flushed at the end of the turn.
    pub(super) fn queue(&mut self, key: usize) -> Option<&mut WriteQueue> {
        self.before_output(key);
        self.mark_dirty(key);
        self.conns.get_mut(key).map(|s| s.conn.out_mut())
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(slot) = self.conns.get_mut(key) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The end of a loop turn: queued answers first, then this turn's
    /// broadcasts, then whatever those could not write at once.
    pub(super) fn write_out(&mut self) {
        self.flush_dirty();
        self.deliver_broadcasts();
        self.flush_dirty();
        if self.bound_queues() {
            self.flush_dirty();
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.flush(key);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    pub(super) fn flush(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        slot.dirty = false;
        let mut writer = SocketWriter(slot.stream.as_fd());
        match slot.conn.out_mut().flush_to(&mut writer) {
            Ok(n) => metrics::add(&self.shared.stats.bytes_sent, n as u64),
            Err(e) => {
                self.remove(key, &format!("write error: {e}"));
                return;
            }
        }
        match self.drive(key, |conn, now, s| conn.after_flush(now, s)) {
            Some(Some(Verdict::ResumeReading | Verdict::CheckQuiet)) => self.read_later(key),
            Some(Some(Verdict::ShutWrite)) => {
                if let Some(slot) = self.conns.get(key) {
                    let _ = slot.stream.shutdown(Shutdown::Write);
                }
            }
            Some(Some(Verdict::Dropped(event))) => self.on_event(key, event),
            Some(None) => {}
            None => return,
        }
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let want_writable = !slot.conn.out().is_empty();
        if want_writable != slot.writable {
            slot.writable = want_writable;
            if want_writable {
                self.backlogged += 1;
            } else {
                self.backlogged -= 1;
            }
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut slot.stream, Token(key), interest);
        }
    }

    /// Removes a connection at once; a WebSocket client still in its phase
    /// leaves first.
    pub(super) fn remove(&mut self, key: usize, why: &dyn Display) {
        let Some(slot) = self.conns.get(key) else {
            return;
        };
        if let Some(client) = slot.conn.client().copied() {
            self.leave(key, client, why);
        }
        self.release_per_ip(key);
        let mut slot = self.conns.remove(key);
        if slot.conn.stage() == Stage::Closing {
            self.closing -= 1;
        }
        if slot.writable {
            self.backlogged -= 1;
        }
        let _ = self.poll.registry().deregister(&mut slot.stream);
        log!(
            Trace,
            "connection closed",
            peer = slot.peer_label(),
            reason = why
        );
    }
}
