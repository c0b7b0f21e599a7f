//! Whether a ready Redis connection is still alive. A partition without a
//! reset, a frozen Redis host or a NAT that forgot the flow leaves the TCP
//! connection open and silent, and TCP keepalive would take hours to say
//! so: a subscriber would hear nothing, forever. So a connection that has
//! heard nothing for `PING_AFTER` sends `PING`, and one that has waited
//! `DEAD_AFTER` for an answer (to a PING or a publication) with nothing
//! heard meanwhile is given up and reconnected.

use std::time::{Duration, Instant};

use super::redis_conn::Side;

const PING_AFTER: Duration = Duration::from_secs(5);
const DEAD_AFTER: Duration = Duration::from_secs(15);

/// What a ready connection needs at a given moment.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    Nothing,
    Ping,
    Dead,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Liveness {
    /// Silence after which a connection with nothing unanswered pings.
    pub(super) ping_after: Duration,
    /// How long an answer may be waited for with nothing heard at all.
    pub(super) dead_after: Duration,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness {
            ping_after: PING_AFTER,
            dead_after: DEAD_AFTER,
        }
    }
}

impl Liveness {
    /// When a ready `side` next needs a PING or a verdict. The wait for an
    /// answer counts from the later of its sending and the last bytes
    /// heard: a Redis working through a backlog of publications answers
    /// them late but keeps talking, and is not dead.
    pub(super) fn deadline(&self, side: &Side) -> Instant {
        match side.unanswered.front() {
            Some(sent) => (*sent).max(side.last_heard) + self.dead_after,
            None => side.last_heard + self.ping_after,
        }
    }

    pub(super) fn due(&self, side: &Side, now: Instant) -> Due {
        if now < self.deadline(side) {
            Due::Nothing
        } else if side.unanswered.is_empty() {
            Due::Ping
        } else {
            Due::Dead
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::redis_conn::Role;
    use mio::Token;

    #[test]
    fn silence_asks_then_an_unanswered_question_condemns() {
        let start = Instant::now();
        let liveness = Liveness::default();
        let mut side = Side::new(Role::Subscriber, Token(1), start);
        side.last_heard = start;
        let s = Duration::from_secs;
        assert_eq!(liveness.due(&side, start + s(4)), Due::Nothing);
        assert_eq!(liveness.due(&side, start + s(5)), Due::Ping);
        side.unanswered.push_back(start + s(5));
        assert_eq!(liveness.due(&side, start + s(19)), Due::Nothing);
        assert_eq!(liveness.due(&side, start + s(20)), Due::Dead);
        // Bytes heard meanwhile (a backlog being read) restart the wait.
        side.last_heard = start + s(18);
        assert_eq!(liveness.due(&side, start + s(32)), Due::Nothing);
        assert_eq!(liveness.due(&side, start + s(33)), Due::Dead);
    }
}
