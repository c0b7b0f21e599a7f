//! The process-wide bound on queued bytes (`--max-total-queue-bytes`):
//! past it, the connections with the largest queues, the slowest readers,
//! are dropped first, WebSocket clients as slow consumers.

use super::conns::Conns;
use crate::ids::ConnKey;

/// The connections to drop, largest queue first, so that their queues
/// free at least `excess` bytes; empty for none.
pub fn over_budget(conns: &Conns, excess: usize) -> Vec<ConnKey> {
    if excess == 0 || conns.backlogged() == 0 {
        return Vec::new();
    }
    let mut queues: Vec<(usize, ConnKey)> = conns.backlogs().collect();
    queues.sort_unstable_by(|a, b| b.cmp(a));
    let mut freed = 0;
    let mut shed = Vec::new();
    for (held, key) in queues {
        if freed >= excess {
            break;
        }
        freed += held;
        shed.push(key);
    }
    shed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Chunk;
    use crate::node::tests::harness::{joined, settings};

    const MAX_QUEUE: usize = 10_000;

    /// Clients whose sockets take nothing, each with `queued` bytes waiting.
    fn backlogged(queued: &[usize]) -> (Conns, Vec<ConnKey>) {
        let (mut conns, mut sockets, keys) = joined(settings(MAX_QUEUE), queued.len() as u64, 0);
        for (&key, &bytes) in keys.iter().zip(queued) {
            conns.queue(key, |c| c.send(Chunk::Owned(vec![0; bytes])));
            conns.flush(key, 0, &mut sockets);
            conns.update_interest(key);
        }
        (conns, keys)
    }

    #[test]
    fn within_the_budget_nothing_is_dropped() {
        let (conns, _) = backlogged(&[1_000, 2_000, 3_000]);
        assert!(over_budget(&conns, 0).is_empty());
    }

    #[test]
    fn over_it_the_largest_queues_go_first_until_the_rest_fits() {
        let (conns, keys) = backlogged(&[1_000, 5_000, 3_000, 4_000]);
        assert!(conns.queued() > 13_000, "bytes and their entries");
        // 7,000 too many: 5,000, then 4,000.
        assert_eq!(over_budget(&conns, 7_000), [keys[1], keys[3]]);
    }
}
