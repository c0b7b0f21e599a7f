//! A worker's part of the drain: it tells its clients, keeps serving them,
//! closes the rest with 1001 at the deadline, and stops when none are left.

use std::time::Instant;

use super::worker::Worker;
use crate::app::hub::Client;
use crate::app::lifecycle::{Phase as LifePhase, Step};
use crate::conn::{Connection, Settings};
use crate::log;
use crate::proto::close::CloseCode;

/// Closes written per loop turn at the drain deadline (see `close_some`).
const CLOSES_PER_TURN: usize = 500;

impl Worker {
    /// Moves the lifecycle on; returns true once the worker may stop.
    pub(super) fn update_lifecycle(&mut self, now: Instant) -> bool {
        let leave_queue = self.shared.is_draining() && self.shared.listener.is_shared();
        if leave_queue {
            self.stop_accepting();
        }
        if self.lifecycle.is_running() && self.shared.is_draining() {
            let waiting = self.waiting_clients(leave_queue);
            let step = self
                .lifecycle
                .begin_drain(now, self.shared.drain_deadline(), waiting);
            self.apply(step, now);
        }
        let open = match self.lifecycle.phase() {
            // While closing, every connection still finishing its close counts.
            LifePhase::Closing { .. } => self.clients + self.closing,
            _ => self.waiting_clients(leave_queue),
        };
        let step = self.lifecycle.update(now, open);
        self.apply(step, now);
        self.lifecycle.phase() == LifePhase::Done
    }

    fn apply(&mut self, step: Step, now: Instant) {
        match step {
            Step::Nothing => {}
            Step::NotifyClients => self.notify_shutdown(now),
            Step::NotifyAndClose => {
                self.notify_shutdown(now);
                self.close_all_clients();
            }
            Step::CloseClients => {
                log!(
                    Warn,
                    "drain deadline reached; closing remaining clients with 1001",
                    closed = self.clients,
                    worker = self.id
                );
                self.close_all_clients();
            }
            Step::Finish => log!(Debug, "worker finished", worker = self.id),
        }
    }

    /// The clients the drain waits for. With shared sockets a connection
    /// accepted before the drain and not answered yet is a client on its
    /// way (its upgrade is served, not refused), so once no WebSocket
    /// client is left those count too; looked for only then, so a busy
    /// drain does not scan every connection each turn.
    fn waiting_clients(&self, leave_queue: bool) -> usize {
        if !leave_queue || self.clients > 0 {
            return self.clients;
        }
        self.conns
            .iter()
            .filter(|(_, s)| s.conn.awaits_first_answer())
            .count()
    }

    /// A client that joins while the worker drains (only possible with
    /// shared sockets, see `waiting_clients`) gets its notice right after
    /// its welcome, and its Close too if the deadline has passed.
    pub(super) fn notify_late_joiner(&mut self, key: usize) {
        match self.lifecycle.phase() {
            LifePhase::Running | LifePhase::Done => {}
            LifePhase::Draining { .. } => self.send_notice(key, Instant::now()),
            LifePhase::Closing { .. } => {
                self.send_notice(key, Instant::now());
                self.close_going_away(key);
            }
        }
    }

    /// Closes every client with 1001, `CLOSES_PER_TURN` at a time.
    fn close_all_clients(&mut self) {
        self.to_close = self
            .conns
            .iter()
            .filter(|(_, s)| s.conn.is_ws())
            .map(|(k, _)| k)
            .collect();
        self.close_some();
    }

    /// Sends the next batch of Closes. Between batches the loop reads the
    /// clients' answers: all at once, the last client's answer would wait
    /// behind the 10,000 Closes written before it, and the exit with it.
    pub(super) fn close_some(&mut self) {
        let from = self.to_close.len().saturating_sub(CLOSES_PER_TURN);
        let batch: Vec<usize> = self.to_close.drain(from..).collect();
        for key in batch {
            if self.conns.get(key).is_some_and(|s| s.conn.is_ws()) {
                self.close_going_away(key);
            }
        }
    }

    fn close_going_away(&mut self, key: usize) {
        self.before_output(key);
        let close = |conn: &mut Connection<Client>, now, s: &Settings| {
            conn.close(CloseCode::GOING_AWAY, "server shutting down", now, s)
        };
        if let Some(Some(event)) = self.drive(key, close) {
            self.on_event(key, event);
        }
    }
}
