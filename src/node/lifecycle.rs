//! The node's steps for the drain: it tells its clients (each notice right
//! behind the turn's broadcasts, in the same write), keeps serving them,
//! closes the rest with 1001 at the deadline, and stops when none are
//! left.

use super::drain::{LateJoiner, Waiting};
use super::notice::Notices;
use super::transmit::Transmit;
use super::{Node, Output};
use crate::app::lifecycle::Step;
use crate::conn::Chunk;
use crate::ids::ConnKey;
use crate::log;
use crate::proto::close::CloseCode;

impl Node {
    /// Connections owed an answer while the worker drains (see
    /// `Waiting::unanswered`). Looked for only once no client is left, so
    /// a busy drain does not scan every connection each turn.
    pub(super) fn answers_owed(&self) -> usize {
        if self.process.is_draining() && self.conns.clients() == 0 {
            self.conns.owing_answers(self.process.listener.is_shared())
        } else {
            0
        }
    }

    /// Moves the drain on, `owed` answers still to give; returns true once
    /// the worker may stop.
    pub(super) fn update_lifecycle<T: Transmit>(&mut self, owed: usize, io: &mut T) -> bool {
        let draining = self.process.is_draining();
        let shared = self.process.listener.is_shared();
        if self.drain.stops_accepting(draining, shared) {
            self.outputs.push_back(Output::StopAccepting);
            log!(Info, "stopped accepting", worker = self.id);
        }
        let waiting = Waiting {
            clients: self.conns.clients(),
            closing: self.conns.closing(),
            unanswered: owed,
        };
        let deadline = draining.then(|| self.process.drain_deadline());
        for step in self.drain.update(self.clock.at(), deadline, waiting) {
            self.apply(step, io);
        }
        self.drain.is_done()
    }

    fn apply<T: Transmit>(&mut self, step: Step, io: &mut T) {
        match step {
            Step::Nothing => {}
            Step::NotifyClients => self.notify_shutdown(io),
            Step::NotifyAndClose => {
                self.notify_shutdown(io);
                self.close_all_clients();
            }
            Step::CloseClients => {
                log!(
                    Warn,
                    "drain deadline reached; closing remaining clients with 1001",
                    closed = self.conns.clients(),
                    worker = self.id
                );
                self.close_all_clients();
            }
            Step::Finish => log!(Debug, "worker finished", worker = self.id),
        }
    }

    fn notices(&self) -> Notices {
        let left = self
            .process
            .drain_deadline()
            .saturating_duration_since(self.clock.at());
        Notices::new(
            left,
            self.process.config.drain_timeout,
            self.clock.wall_ms(),
        )
    }

    /// Every `/ws` client's notice, written at once, each after this
    /// turn's broadcasts (which must reach the clients first) and in the
    /// same write.
    fn notify_shutdown<T: Transmit>(&mut self, io: &mut T) {
        let mut notices = self.notices();
        self.deliver(Some(&mut notices), io);
    }

    /// A client that joins while the worker drains (only possible with
    /// shared sockets) gets its notice right after its welcome, and its
    /// Close too if the deadline has passed.
    pub(super) fn notify_late_joiner(&mut self, key: ConnKey) {
        let late = self.drain.late_joiner();
        if late == LateJoiner::Welcome {
            return;
        }
        let frame = self.notices().draw(&mut self.rng);
        self.send_frame(key, Chunk::Shared(frame));
        if late == LateJoiner::NoticeAndClose {
            self.close_going_away(key);
        }
    }

    /// Closes every client with 1001, a batch per loop turn.
    fn close_all_clients(&mut self) {
        self.drain.close_all(self.conns.websockets());
        self.close_some();
    }

    /// Sends the next batch of Closes.
    pub(super) fn close_some(&mut self) {
        for key in self.drain.next_closes() {
            if self.conns.get(key).is_some_and(|conn| conn.is_ws()) {
                self.close_going_away(key);
            }
        }
    }

    fn close_going_away(&mut self, key: ConnKey) {
        self.fanout.prime(key, &mut self.conns);
        let close = |conn: &mut super::conns::Conn, now, s: &_| {
            conn.close(CloseCode::GOING_AWAY, "server shutting down", now, s)
        };
        if let Some(Some(event)) = self.drive(key, close) {
            self.on_event(key, event);
        }
    }
}
