//! The replays of clients that resumed: each one's cursor in the history
//! (the next offset it is to be sent), paced to the client's reading, and
//! the work of one loop turn bounded across all of them.
//!
//! A replay is never queued whole: a client is sent the next step of it
//! only once its queue is empty (everything before went to its socket),
//! and a step is at most half its queue bound (`--max-queue-bytes`), so a
//! replay larger than the bound is sent as the client reads it and the
//! queue never holds more than the bound. Steps also shrink as more
//! clients replay at once, so that together they fit the worker's share
//! of `--max-total-queue-bytes` (down to one message each): a crowd of
//! resumes is not shed by the total bound for the size of its replays. The cursor runs on through
//! messages that arrive meanwhile (they are in the history too) until it
//! has sent everything the worker has handed out: the client then takes
//! the live stream like the others (`finished`). One turn queues at most
//! `BYTES_PER_TURN` of replays in all, the clients served in turn, so
//! thousands of resumes at once cannot stall the loop: the node runs passes
//! while a client took its step whole and the budget lasts, and asks for
//! the next turn at once only when the budget ran out.
//!
//! A client replays the stream for everyone (after resuming on `/ws`) or
//! a channel (after a `subscribe` with `since`), each stream its own
//! cursor under a [`ReplayKey`], paced the same way and from the same
//! budget: a client with several of them takes their steps in turn, each
//! when its queue is empty.
//!
//! Only clients that replay are here: a connection that does not costs
//! nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::channels::ChannelId;
use super::conns::Conns;
use crate::app::history::{Cursor, Lost, Position};
use crate::conn::batch::MAX_IOVECS;
use crate::conn::Chunk;
use crate::ids::ConnKey;

/// Replay bytes one loop turn queues at most, for all clients together
/// (a message larger than a step is sent whole, as a step of its own).
pub const BYTES_PER_TURN: usize = 1 << 20;

/// The most one client is queued at a time (besides half its queue bound
/// and its part of the worker's total): one turn's budget serves sixteen
/// clients.
pub const STEP_BYTES: usize = 64 * 1024;

/// The queue bounds a step is cut to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// `--max-queue-bytes`.
    pub max_queue: usize,
    /// The worker's share of `--max-total-queue-bytes`.
    pub worker_share: usize,
}

/// What a replay may take from the history in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub max_bytes: usize,
    pub max_frames: usize,
}

/// Which stream a replay sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Replayed {
    Everyone,
    Channel(ChannelId),
}

/// One replay: a client and the stream it is being replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey {
    pub conn: ConnKey,
    pub stream: Replayed,
}

impl ReplayKey {
    pub fn everyone(conn: ConnKey) -> ReplayKey {
        ReplayKey {
            conn,
            stream: Replayed::Everyone,
        }
    }
}

#[derive(Debug, Default)]
pub struct Replays {
    by_key: HashMap<ReplayKey, Replaying>,
    /// Whose turn is next: a key with the serial of its replay, so an
    /// entry left by an ended replay is dropped when met.
    order: VecDeque<(ReplayKey, u64)>,
    serial: u64,
    /// A client could take its next step at the end of the last turn (its
    /// queue empty), but the turn's budget was spent: the next turn should
    /// come at once.
    more: bool,
    frames: Vec<Arc<[u8]>>,
}

#[derive(Debug)]
struct Replaying {
    cursor: Cursor,
    serial: u64,
    /// Messages queued by the last step, counted as replayed once the
    /// queue is seen empty (written to the socket).
    unconfirmed: u64,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Messages queued, and their bytes.
    pub queued: u64,
    pub bytes: usize,
    /// The clients that were queued a step.
    pub stepped: Vec<ConnKey>,
    /// Messages of earlier steps now written whole to their sockets.
    pub written: u64,
    /// Replays that reached what the worker has handed out, their queue
    /// empty: the client takes the live stream from now on (or its
    /// connection is gone).
    pub finished: Vec<ReplayKey>,
    /// Replays that need a message the history no longer holds.
    pub lost: Vec<ReplayKey>,
}

impl Replays {
    /// A client is to be replayed a stream from `cursor` on (a replay of
    /// that stream under way starts again from there).
    pub fn start(&mut self, key: ReplayKey, cursor: Cursor) {
        self.serial += 1;
        let replaying = Replaying {
            cursor,
            serial: self.serial,
            unconfirmed: 0,
        };
        self.by_key.insert(key, replaying);
        self.order.push_back((key, self.serial));
    }

    /// One replay ends before its time (the client unsubscribed); returns
    /// whether it was under way.
    pub fn stop(&mut self, key: ReplayKey) -> bool {
        let was = self.by_key.remove(&key).is_some();
        if self.by_key.is_empty() {
            self.order.clear();
        }
        was
    }

    /// The client left: every replay of it ends; returns how many there
    /// were.
    pub fn stop_all(&mut self, conn: ConnKey) -> usize {
        if self.by_key.is_empty() {
            return 0;
        }
        let before = self.by_key.len();
        self.by_key.retain(|key, _| key.conn != conn);
        if self.by_key.is_empty() {
            self.order.clear();
        }
        before - self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether the next loop turn should come at once: a client could
    /// take its next step when the last turn's budget ran out.
    pub fn wants_turn(&self) -> bool {
        self.more && !self.by_key.is_empty()
    }

    /// The worker moved from `before` into history `generation`, another
    /// numbering: a replay of the old one that has everything the worker
    /// handed out of it ends, its client taking the new numbering like the
    /// others (the first returned); one that still needs a message of it
    /// is lost (the second). Replays that began in the new one go on.
    pub fn renumbered(
        &mut self,
        before: Position,
        generation: u64,
    ) -> (Vec<ReplayKey>, Vec<ReplayKey>) {
        let (mut caught_up, mut lost) = (Vec::new(), Vec::new());
        self.by_key.retain(|key, replaying| {
            let cursor = replaying.cursor;
            if key.stream != Replayed::Everyone || cursor.generation == generation {
                return true;
            }
            if cursor.generation == before.generation && cursor.next > before.offset {
                caught_up.push(*key);
            } else {
                lost.push(*key);
            }
            false
        });
        if self.by_key.is_empty() {
            self.order.clear();
        }
        (caught_up, lost)
    }

    /// The end of a turn's replay work: notes whether a client could take
    /// its next step now (its queue is empty, and its cursor is not past
    /// `through` of its stream, the last offset the worker handed out,
    /// plus one: then it waits for the worker), which only the turn's
    /// budget stopped.
    pub fn settle(&mut self, conns: &Conns, through: impl Fn(Replayed) -> u64) {
        self.more = self.by_key.iter().any(|(key, replaying)| {
            replaying.cursor.next <= through(key.stream) + 1
                && conns
                    .get(key.conn)
                    .is_some_and(|conn| conn.out().is_empty())
        });
    }

    /// One round of replay work, in turn from where the last one stopped:
    /// each client with an empty queue gets its next step, while `budget`
    /// (what is left of the turn's `BYTES_PER_TURN`) lasts. `bounds`: the
    /// queue bounds the steps are cut to. `fetch` takes a step of a
    /// stream from the history (moving the cursor) and answers the last
    /// offset of it the worker has handed out.
    pub fn pass(
        &mut self,
        conns: &mut Conns,
        bounds: Bounds,
        budget: &mut usize,
        mut fetch: impl FnMut(Replayed, &mut Cursor, Step, &mut Vec<Arc<[u8]>>) -> Result<u64, Lost>,
    ) -> Pass {
        let mut pass = Pass::default();
        let step_bytes = (bounds.max_queue / 2)
            .min(STEP_BYTES)
            .min(bounds.worker_share / self.by_key.len().max(1))
            .max(1);
        for _ in 0..self.order.len() {
            // Whole steps only, so every client's turn is worth the same;
            // a first step goes whatever its size.
            if *budget < step_bytes && *budget < BYTES_PER_TURN {
                break;
            }
            let Some((key, serial)) = self.order.pop_front() else {
                break;
            };
            let Some(replaying) = self.by_key.get_mut(&key).filter(|r| r.serial == serial) else {
                continue;
            };
            let Some(conn) = conns.get(key.conn) else {
                self.by_key.remove(&key);
                pass.finished.push(key);
                continue;
            };
            if !conn.out().is_empty() {
                self.order.push_back((key, serial));
                continue;
            }
            pass.written += std::mem::take(&mut replaying.unconfirmed);
            let step = Step {
                max_bytes: step_bytes,
                max_frames: MAX_IOVECS,
            };
            self.frames.clear();
            let through = match fetch(key.stream, &mut replaying.cursor, step, &mut self.frames) {
                Ok(through) => through,
                Err(Lost) => {
                    self.by_key.remove(&key);
                    pass.lost.push(key);
                    continue;
                }
            };
            if self.frames.is_empty() {
                if replaying.cursor.next > through + 1 {
                    // Ahead of the worker: it waits for the worker.
                    self.order.push_back((key, serial));
                } else {
                    self.by_key.remove(&key);
                    pass.finished.push(key);
                }
                continue;
            }
            for frame in self.frames.drain(..) {
                let bytes = frame.len();
                if let Some(Ok(())) = conns.queue(key.conn, |conn| conn.send(Chunk::Shared(frame)))
                {
                    pass.queued += 1;
                    pass.bytes += bytes;
                    *budget = budget.saturating_sub(bytes);
                    replaying.unconfirmed += 1;
                }
            }
            pass.stepped.push(key.conn);
            self.order.push_back((key, serial));
        }
        pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::history::{History, Position};
    use crate::node::tests::harness::{joined, settings, Sockets};
    use std::time::{Duration, Instant};

    /// A history of `count` frames of `size` bytes.
    fn history(count: u64, size: usize) -> History {
        let mut h = History::new("e".into(), 10_000, Duration::from_secs(60));
        let now = Instant::now();
        for n in 1..=count {
            let mut frame = vec![b'.'; size];
            let tag = n.to_string();
            frame[..tag.len()].copy_from_slice(tag.as_bytes());
            h.append(&frame.into(), now);
        }
        h
    }

    fn from(next: u64) -> Cursor {
        Cursor {
            generation: 0,
            next,
        }
    }

    /// A client's bound, and no total to share.
    fn bound(max_queue: usize) -> Bounds {
        Bounds {
            max_queue,
            worker_share: usize::MAX,
        }
    }

    /// One pass with a whole turn's budget.
    fn pass(replays: &mut Replays, conns: &mut Conns, h: &History, bounds: Bounds) -> Pass {
        let mut budget = BYTES_PER_TURN;
        budgeted_pass(replays, conns, h, bounds, &mut budget)
    }

    fn budgeted_pass(
        replays: &mut Replays,
        conns: &mut Conns,
        h: &History,
        bounds: Bounds,
        budget: &mut usize,
    ) -> Pass {
        let at = Position {
            generation: h.generation(),
            offset: h.last(),
        };
        replays.pass(conns, bounds, budget, |_, cursor, step, out| {
            h.replay(cursor, at, step.max_bytes, step.max_frames, out)
        })
    }

    /// Writes every queue to its socket.
    fn flush(conns: &mut Conns, sockets: &mut Sockets, keys: &[ConnKey]) {
        for key in keys {
            conns.flush(*key, 0, sockets);
        }
    }

    #[test]
    fn a_step_waits_for_an_empty_queue_and_is_half_the_bound_at_most() {
        let (mut conns, mut sockets, keys) = joined(settings(100_000), 1, 0);
        let h = history(10, 10_000);
        let mut replays = Replays::default();
        replays.start(ReplayKey::everyone(keys[0]), from(1));
        let first = pass(&mut replays, &mut conns, &h, bound(100_000));
        assert_eq!((first.queued, first.bytes), (5, 50_000), "half of 100,000");
        let held = conns.get(keys[0]).unwrap().out().held();
        assert!(held <= 100_000 / 2 + 64 * 32, "{held}");
        flush(&mut conns, &mut sockets, &keys);
        replays.settle(&conns, |_| h.last());
        assert!(!replays.wants_turn(), "nothing to do until it is writable");
        let blocked = pass(&mut replays, &mut conns, &h, bound(100_000));
        assert_eq!(blocked, Pass::default(), "the socket took nothing");
        sockets.by_key.get_mut(&keys[0]).unwrap().room = usize::MAX;
        flush(&mut conns, &mut sockets, &keys);
        let second = pass(&mut replays, &mut conns, &h, bound(100_000));
        assert_eq!((second.queued, second.written), (5, 5));
        flush(&mut conns, &mut sockets, &keys);
        let last = pass(&mut replays, &mut conns, &h, bound(100_000));
        assert_eq!(
            (last.written, &last.finished[..]),
            (5, &[ReplayKey::everyone(keys[0])][..])
        );
        assert!(replays.is_empty());
    }

    #[test]
    fn a_turn_queues_at_most_its_budget_and_serves_clients_in_turn() {
        let (mut conns, mut sockets, keys) = joined(settings(1 << 20), 10, usize::MAX);
        let h = history(40, 60_000);
        let mut replays = Replays::default();
        for key in &keys {
            replays.start(ReplayKey::everyone(*key), from(1));
        }
        let mut steps = vec![0u64; keys.len()];
        for turn in 0..12 {
            // The node's turn: passes while the sockets take every step,
            // until the budget runs out.
            let mut budget = BYTES_PER_TURN;
            let mut bytes = 0;
            loop {
                let done = budgeted_pass(&mut replays, &mut conns, &h, bound(1 << 20), &mut budget);
                bytes += done.bytes;
                for key in &done.stepped {
                    steps[keys.iter().position(|k| k == key).unwrap()] += 1;
                }
                flush(&mut conns, &mut sockets, &keys);
                if done.stepped.is_empty() {
                    break;
                }
            }
            replays.settle(&conns, |_| h.last());
            assert!(bytes <= BYTES_PER_TURN, "turn {turn}: {bytes}");
            assert!(replays.wants_turn(), "turn {turn} ended at its budget");
            let (least, most) = (steps.iter().min().unwrap(), steps.iter().max().unwrap());
            assert!(most - least <= 1, "turn {turn}: {steps:?}");
        }
    }

    #[test]
    fn steps_shrink_as_more_clients_share_the_workers_total() {
        let (mut conns, _sockets, keys) = joined(settings(1 << 20), 8, 0);
        let h = history(20, 1_000);
        let mut replays = Replays::default();
        for key in &keys {
            replays.start(ReplayKey::everyone(*key), from(1));
        }
        let done = pass(
            &mut replays,
            &mut conns,
            &h,
            Bounds {
                max_queue: 1 << 20,
                worker_share: 8 * 3_000,
            },
        );
        assert_eq!(done.queued, 8 * 3, "3,000 bytes each: three messages");
        let tight = pass(
            &mut Replays::default(),
            &mut conns,
            &h,
            Bounds {
                max_queue: 1 << 20,
                worker_share: 0,
            },
        );
        assert_eq!(tight, Pass::default());
        let mut alone = Replays::default();
        let (mut conns, _sockets, keys) = joined(settings(1 << 20), 1, 0);
        alone.start(ReplayKey::everyone(keys[0]), from(1));
        let one = pass(
            &mut alone,
            &mut conns,
            &h,
            Bounds {
                max_queue: 1 << 20,
                worker_share: 10,
            },
        );
        assert_eq!(one.queued, 1, "one message at least");
    }

    #[test]
    fn a_client_ahead_waits_and_a_lost_one_is_reported() {
        let (mut conns, _sockets, keys) = joined(settings(1 << 20), 2, usize::MAX);
        let h = history(5, 10);
        let mut replays = Replays::default();
        replays.start(ReplayKey::everyone(keys[0]), from(9));
        replays.start(
            ReplayKey::everyone(keys[1]),
            Cursor {
                generation: 7,
                next: 1,
            },
        );
        let done = pass(&mut replays, &mut conns, &h, bound(1 << 20));
        assert_eq!(done.lost, [ReplayKey::everyone(keys[1])]);
        assert!(done.finished.is_empty());
        assert_eq!(replays.by_key.len(), 1, "the one ahead waits");
        replays.settle(&conns, |_| h.last());
        assert!(!replays.wants_turn(), "for the worker, not for a turn");
        replays.settle(&conns, |_| 8);
        assert!(replays.wants_turn(), "the worker reached it");
        assert!(replays.stop(ReplayKey::everyone(keys[0])));
        assert!(!replays.stop(ReplayKey::everyone(keys[0])));
    }

    #[test]
    fn an_ended_replay_leaves_nothing_behind_in_the_order() {
        let (mut conns, _sockets, keys) = joined(settings(1 << 20), 2, usize::MAX);
        let h = history(5, 10);
        let mut replays = Replays::default();
        replays.start(ReplayKey::everyone(keys[0]), from(9));
        replays.start(ReplayKey::everyone(keys[1]), from(9));
        replays.stop(ReplayKey::everyone(keys[0]));
        replays.start(ReplayKey::everyone(keys[0]), from(9));
        pass(&mut replays, &mut conns, &h, bound(1 << 20));
        assert_eq!(replays.order.len(), 2, "the stale entry is dropped");
        replays.stop(ReplayKey::everyone(keys[0]));
        replays.stop(ReplayKey::everyone(keys[1]));
        assert!(replays.order.is_empty(), "nothing left behind");
    }
}
