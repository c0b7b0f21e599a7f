//! A worker's life: running → draining → closing → done.
//!
//! Pure: it is told the time and how many clients remain, and answers with
//! what the worker must do. A 30-minute drain runs in microseconds in tests.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Clients are told to leave and keep being served until `deadline`.
    Draining {
        deadline: Instant,
    },
    /// The remaining clients were sent Close 1001 and have until `until` to
    /// answer.
    Closing {
        until: Instant,
    },
    Done,
}

/// What the worker must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// Send every client its shutdown notice.
    NotifyClients,
    /// Send both the notice and, at once, Close 1001 (a zero drain timeout).
    NotifyAndClose,
    /// The deadline passed: close the remaining clients with 1001.
    CloseClients,
    /// Nothing is left to wait for: stop the worker.
    Finish,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    phase: Phase,
    drain_timeout: Duration,
    close_grace: Duration,
}

impl Lifecycle {
    pub fn new(drain_timeout: Duration, close_grace: Duration) -> Lifecycle {
        Lifecycle {
            phase: Phase::Running,
            drain_timeout,
            close_grace,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    /// The drain was requested (the first signal). `deadline` is the
    /// process-wide drain deadline, so every worker keeps the same one.
    pub fn begin_drain(&mut self, now: Instant, deadline: Instant, clients: usize) -> Step {
        if self.phase != Phase::Running {
            return Step::Nothing;
        }
        if clients == 0 {
            self.phase = Phase::Done;
            return Step::Finish;
        }
        if self.drain_timeout.is_zero() || now >= deadline {
            self.phase = Phase::Closing {
                until: now + self.close_grace,
            };
            return Step::NotifyAndClose;
        }
        self.phase = Phase::Draining { deadline };
        Step::NotifyClients
    }

    /// Called whenever time passes or clients leave. During `Closing`,
    /// `clients` counts every connection still open, not only WebSocket
    /// clients, since each has its close to finish.
    pub fn update(&mut self, now: Instant, clients: usize) -> Step {
        match self.phase {
            Phase::Running | Phase::Done => Step::Nothing,
            Phase::Draining { .. } | Phase::Closing { .. } if clients == 0 => {
                self.phase = Phase::Done;
                Step::Finish
            }
            Phase::Draining { deadline } if now >= deadline => {
                self.phase = Phase::Closing {
                    until: now + self.close_grace,
                };
                Step::CloseClients
            }
            Phase::Closing { until } if now >= until => {
                self.phase = Phase::Done;
                Step::Finish
            }
            Phase::Draining { .. } | Phase::Closing { .. } => Step::Nothing,
        }
    }

    /// When `update` must next be called even if nothing happens.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Draining { deadline } => Some(deadline),
            Phase::Closing { until } => Some(until),
            Phase::Running | Phase::Done => None,
        }
    }
}

/// Reconnect delays are spread over at most this long, and at least this
/// short a window, whatever the drain timeout.
const MAX_RECONNECT_SPREAD: Duration = Duration::from_secs(10);
const MIN_RECONNECT_SPREAD: Duration = Duration::from_secs(1);

/// The window (ms) a client's reconnect delay is drawn from, so clients
/// told to leave do not all come back at once.
pub fn reconnect_spread_ms(drain_timeout: Duration) -> u64 {
    drain_timeout
        .clamp(MIN_RECONNECT_SPREAD, MAX_RECONNECT_SPREAD)
        .as_millis() as u64
}

/// The `drain_timeout_s` a shutdown notice announces: the time left before
/// the deadline, rounded up to whole seconds, but never more than the
/// configured drain timeout. A drain started in the middle of a loop turn
/// sees its deadline from a clock read before the signal, so the time left
/// can exceed the timeout by a fraction of a second; rounded up, that
/// announced one second too many.
pub fn announced_timeout_s(left: Duration, drain_timeout: Duration) -> u64 {
    left.min(drain_timeout).as_secs_f64().ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_figures() {
        assert_eq!(reconnect_spread_ms(Duration::ZERO), 1000);
        assert_eq!(reconnect_spread_ms(Duration::from_secs(4)), 4000);
        assert_eq!(reconnect_spread_ms(Duration::from_secs(600)), 10_000);
    }

    const MIN: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(5);

    fn drain_30m() -> (Lifecycle, Instant, Instant) {
        let t0 = Instant::now();
        (Lifecycle::new(30 * MIN, GRACE), t0, t0 + 30 * MIN)
    }

    #[test]
    fn nothing_happens_while_running() {
        let (mut life, t0, _) = drain_30m();
        assert_eq!(life.update(t0 + 100 * MIN, 0), Step::Nothing);
        assert_eq!(life.next_deadline(), None);
        assert!(life.is_running());
    }

    #[test]
    fn drain_with_no_clients_finishes_at_once() {
        let (mut life, t0, deadline) = drain_30m();
        assert_eq!(life.begin_drain(t0, deadline, 0), Step::Finish);
        assert_eq!(life.phase(), Phase::Done);
    }

    #[test]
    fn last_client_leaving_early_finishes() {
        let (mut life, t0, deadline) = drain_30m();
        assert_eq!(life.begin_drain(t0, deadline, 3), Step::NotifyClients);
        assert_eq!(life.next_deadline(), Some(deadline));
        assert_eq!(life.update(t0 + MIN, 2), Step::Nothing);
        assert_eq!(life.update(t0 + 2 * MIN, 0), Step::Finish);
        assert_eq!(life.phase(), Phase::Done);
        assert_eq!(life.update(t0 + 40 * MIN, 0), Step::Nothing);
    }

    #[test]
    fn deadline_closes_then_grace_ends() {
        let (mut life, t0, deadline) = drain_30m();
        life.begin_drain(t0, deadline, 5);
        assert_eq!(
            life.update(deadline - Duration::from_millis(1), 5),
            Step::Nothing
        );
        assert_eq!(life.update(deadline, 5), Step::CloseClients);
        assert_eq!(life.next_deadline(), Some(deadline + GRACE));
        assert_eq!(life.update(deadline + GRACE / 2, 5), Step::Nothing);
        assert_eq!(life.update(deadline + GRACE, 1), Step::Finish);
    }

    #[test]
    fn clients_leaving_during_closing_finish_early() {
        let (mut life, t0, deadline) = drain_30m();
        life.begin_drain(t0, deadline, 5);
        life.update(deadline, 5);
        assert_eq!(
            life.update(deadline + Duration::from_millis(20), 0),
            Step::Finish
        );
    }

    #[test]
    fn zero_timeout_notifies_and_closes_at_once() {
        let t0 = Instant::now();
        let mut life = Lifecycle::new(Duration::ZERO, GRACE);
        assert_eq!(life.begin_drain(t0, t0, 2), Step::NotifyAndClose);
        assert_eq!(life.phase(), Phase::Closing { until: t0 + GRACE });
    }

    #[test]
    fn the_announced_timeout_matches_the_option() {
        let ms = Duration::from_millis;
        // The turn's clock was read 400 ms before the signal set the deadline.
        assert_eq!(announced_timeout_s(ms(60_400), MIN), 60);
        assert_eq!(announced_timeout_s(MIN, MIN), 60);
        // A client joining later is told what is left, rounded up.
        assert_eq!(announced_timeout_s(ms(30_200), MIN), 31);
        assert_eq!(announced_timeout_s(ms(5_000), ms(5_000)), 5);
        assert_eq!(announced_timeout_s(Duration::ZERO, MIN), 0);
    }

    #[test]
    fn further_drain_requests_change_nothing() {
        let (mut life, t0, deadline) = drain_30m();
        life.begin_drain(t0, deadline, 1);
        assert_eq!(life.begin_drain(t0 + MIN, deadline, 1), Step::Nothing);
        assert_eq!(life.phase(), Phase::Draining { deadline });
        life.update(deadline, 1);
        assert_eq!(life.begin_drain(deadline, deadline, 1), Step::Nothing);
        life.update(deadline + GRACE, 1);
        assert_eq!(
            life.begin_drain(deadline + GRACE, deadline, 0),
            Step::Nothing
        );
    }
}
