//! The worker's part of the drain as data: its lifecycle (running →
//! draining → closing → done), who is still waiting, and the Closes still
//! to send at the deadline, a batch per loop turn.

use std::time::{Duration, Instant};

use crate::app::lifecycle::{Lifecycle, Phase, Step};
use crate::ids::ConnKey;

/// Closes written per loop turn at the drain deadline. Between batches the
/// loop reads the clients' answers: written all at once, the last client's
/// answer would wait behind 10,000 Closes, and the exit with it.
pub const CLOSES_PER_TURN: usize = 500;

#[derive(Debug)]
pub struct Drain {
    lifecycle: Lifecycle,
    /// Clients still to be sent their Close (1001).
    to_close: Vec<ConnKey>,
    stopped_accepting: bool,
}

/// What the counts of the worker are, for the drain to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// Open WebSocket clients.
    pub clients: usize,
    /// Connections finishing their close.
    pub closing: usize,
    /// Connections owed an answer, counted only once no client is left:
    /// a request read and not answered, an answer not written yet, and,
    /// while another process serves the sockets, every connection still
    /// speaking HTTP (one never answered may be an upgrade on its way,
    /// accepted before this process stopped accepting; an idle keep-alive
    /// one may be sending its next request, which is answered with
    /// `Connection: close`, or its keep-alive timeout closes it). The
    /// worker does not stop while one is owed, within the drain deadline
    /// and the close grace.
    pub unanswered: usize,
}

/// What a client that joins during the drain gets after its welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateJoiner {
    Welcome,
    Notice,
    NoticeAndClose,
}

impl Drain {
    pub fn new(drain_timeout: Duration, close_grace: Duration) -> Drain {
        Drain {
            lifecycle: Lifecycle::new(drain_timeout, close_grace),
            to_close: Vec::new(),
            stopped_accepting: false,
        }
    }

    /// Whether the worker must stop accepting now: the first time it sees
    /// the process drain while another process serves its sockets, so the
    /// connections still queued in the kernel go to that process.
    pub fn stops_accepting(&mut self, draining: bool, shared: bool) -> bool {
        let stop = draining && shared && !self.stopped_accepting;
        self.stopped_accepting |= stop;
        stop
    }

    pub fn is_running(&self) -> bool {
        self.lifecycle.is_running()
    }

    pub fn is_done(&self) -> bool {
        self.lifecycle.phase() == Phase::Done
    }

    /// Moves the lifecycle on. `deadline`: the process's drain deadline,
    /// once it drains.
    pub fn update(
        &mut self,
        now: Instant,
        deadline: Option<Instant>,
        waiting: Waiting,
    ) -> [Step; 2] {
        let clients = if waiting.clients == 0 {
            waiting.unanswered
        } else {
            waiting.clients
        };
        let begun = match deadline {
            Some(deadline) if self.lifecycle.is_running() => {
                self.lifecycle.begin_drain(now, deadline, clients)
            }
            _ => Step::Nothing,
        };
        let open = match self.lifecycle.phase() {
            // While closing, every connection still finishing its close
            // counts, and every answer owed.
            Phase::Closing { .. } => waiting.clients + waiting.closing + waiting.unanswered,
            _ => clients,
        };
        [begun, self.lifecycle.update(now, open)]
    }

    /// When the lifecycle must be looked at even if nothing happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.lifecycle.next_deadline()
    }

    pub fn late_joiner(&self) -> LateJoiner {
        match self.lifecycle.phase() {
            Phase::Running | Phase::Done => LateJoiner::Welcome,
            Phase::Draining { .. } => LateJoiner::Notice,
            Phase::Closing { .. } => LateJoiner::NoticeAndClose,
        }
    }

    /// These clients are to be closed, a batch per turn.
    pub fn close_all(&mut self, clients: Vec<ConnKey>) {
        self.to_close = clients;
    }

    /// Whether Closes are still to be sent (the loop must not sleep).
    pub fn closes_pending(&self) -> bool {
        !self.to_close.is_empty()
    }

    /// The next batch of clients to close.
    pub fn next_closes(&mut self) -> Vec<ConnKey> {
        let from = self.to_close.len().saturating_sub(CLOSES_PER_TURN);
        self.to_close.split_off(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(5);

    fn waiting(clients: usize) -> Waiting {
        Waiting {
            clients,
            closing: 0,
            unanswered: 0,
        }
    }

    #[test]
    fn nothing_moves_until_the_process_drains() {
        let t0 = Instant::now();
        let mut drain = Drain::new(MIN, GRACE);
        assert_eq!(
            drain.update(t0, None, waiting(3)),
            [Step::Nothing, Step::Nothing]
        );
        assert_eq!(
            drain.update(t0, Some(t0 + MIN), waiting(3)),
            [Step::NotifyClients, Step::Nothing]
        );
        assert_eq!(drain.late_joiner(), LateJoiner::Notice);
        assert_eq!(
            drain.update(t0 + MIN, Some(t0 + MIN), waiting(3)),
            [Step::Nothing, Step::CloseClients]
        );
        assert_eq!(drain.late_joiner(), LateJoiner::NoticeAndClose);
    }

    #[test]
    fn closing_waits_for_connections_finishing_their_close() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::ZERO, GRACE);
        let [begun, _] = drain.update(t0, Some(t0), waiting(2));
        assert_eq!(begun, Step::NotifyAndClose);
        let finishing = Waiting {
            clients: 0,
            closing: 2,
            unanswered: 0,
        };
        assert_eq!(drain.update(t0, Some(t0), finishing)[1], Step::Nothing);
        assert_eq!(drain.update(t0, Some(t0), waiting(0))[1], Step::Finish);
        assert!(drain.is_done());
    }

    #[test]
    fn an_answer_owed_holds_the_worker_within_the_deadline_and_the_grace() {
        let t0 = Instant::now();
        let owed = Waiting {
            clients: 0,
            closing: 0,
            unanswered: 1,
        };
        let mut drain = Drain::new(MIN, GRACE);
        let [begun, _] = drain.update(t0, Some(t0 + MIN), owed);
        assert_eq!(begun, Step::NotifyClients, "it waits for it");
        assert_eq!(
            drain.update(t0 + MIN, Some(t0 + MIN), owed)[1],
            Step::CloseClients
        );
        assert_eq!(
            drain.update(t0 + MIN + GRACE, Some(t0 + MIN), owed)[1],
            Step::Finish,
            "not past the close grace"
        );
        let mut nothing_owed = Drain::new(MIN, GRACE);
        let [begun, _] = nothing_owed.update(t0, Some(t0 + MIN), waiting(0));
        assert_eq!(begun, Step::Finish);
    }

    #[test]
    fn accepting_stops_once_when_the_sockets_are_shared() {
        let mut drain = Drain::new(MIN, GRACE);
        assert!(!drain.stops_accepting(true, false), "alone: it answers 503");
        assert!(!drain.stops_accepting(false, true), "not draining");
        assert!(drain.stops_accepting(true, true));
        assert!(!drain.stops_accepting(true, true), "once");
    }

    #[test]
    fn closes_go_out_in_batches() {
        let mut drain = Drain::new(MIN, GRACE);
        drain.close_all((0..1_200).map(ConnKey).collect());
        let sizes: Vec<usize> =
            std::iter::from_fn(|| drain.closes_pending().then(|| drain.next_closes().len()))
                .collect();
        assert_eq!(sizes, [500, 500, 200]);
    }
}
