//! The process-wide bound on queued bytes (`--max-total-queue-bytes`, split
//! evenly by the workers): past it, the clients with the largest queues,
//! the slowest readers, are dropped first, as slow consumers.

use super::conns::Conns;
use crate::ids::ConnKey;

/// The clients to drop so that this worker's queues together hold no more
/// than `budget`, largest queue first; empty when within it.
///
/// Looks at the queues only when they could be over: a queue past
/// `max_queue` is dropped at its flush, so fewer backlogged connections than
/// `budget / max_queue` cannot be over, and a turn with a few slow clients
/// costs nothing here.
pub fn over_budget(conns: &Conns, budget: usize, max_queue: usize) -> Vec<ConnKey> {
    if conns.backlogged() <= budget / max_queue.max(1) {
        return Vec::new();
    }
    let mut queues: Vec<(usize, ConnKey)> = conns.backlogs().collect();
    let mut total: usize = queues.iter().map(|(held, _)| held).sum();
    if total <= budget {
        return Vec::new();
    }
    queues.sort_unstable_by(|a, b| b.cmp(a));
    let mut shed = Vec::new();
    for (held, key) in queues {
        if total <= budget {
            break;
        }
        total -= held;
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
        assert!(over_budget(&conns, 100_000, MAX_QUEUE).is_empty());
    }

    #[test]
    fn over_it_the_largest_queues_go_first_until_the_rest_fits() {
        let (conns, keys) = backlogged(&[1_000, 5_000, 3_000, 4_000]);
        // 13,000 bytes and their entries, against 6,000; four queues can
        // hold more than three times 2,000, so they are looked at.
        assert_eq!(
            over_budget(&conns, 6_000, 2_000),
            [keys[1], keys[3]],
            "5,000 then 4,000: the 4,000 left fit"
        );
    }
}
