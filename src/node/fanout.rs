//! Messages for every `/ws` client of the worker. Each is encoded once and
//! joins the turn's batch; at the end of the turn one pass writes the whole
//! batch to every client in one `sendmsg`, straight from the shared frames
//! (`Connection::send_shared`), so a client whose socket takes it all costs
//! no allocation and no copy.
//!
//! Order is kept without writing mid-turn: a client about to get an answer
//! of its own (a pong, a welcome's replay, a direct message) first gets the
//! batch so far queued ("primed"), and the pass sends it only the rest. A
//! client whose resume is being replayed from the history stands apart: it
//! takes the numbered messages from there (`Replays`), and only those
//! without an offset as they come.
//!
//! Each frame comes in two variants (`SharedFrame`): plain, and compressed
//! for the clients that negotiated permessage-deflate when the message is
//! long enough. The pass cuts each variant of the batch into its segments
//! once, and writes every client the one it takes.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::conns::Conns;
use super::notice::Notices;
use super::transmit::Transmit;
use crate::app::hub::Client;
use crate::conn::write_queue::ENTRY_BYTES;
use crate::conn::{Batch, Chunk};
use crate::ids::ConnKey;
use crate::obs::metrics;
use crate::proto::shared_frame::SharedFrame;
use crate::rand::Rng;

/// Past this many bytes of broadcasts in a turn's batch, the worker reads
/// no more until the turn has written them: every client left behind by a
/// batch takes an entry per 64 KiB of it, so a pass over 10,000 clients
/// adds at most a few hundred KB of entries.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, Default)]
pub struct Fanout {
    /// This turn's frames for everyone, not yet written.
    batch: Vec<SharedFrame>,
    /// Whether one of them has a compressed variant.
    compressed: bool,
    /// Their bytes, with an entry each.
    held: usize,
    /// Clients that already have the first N frames of the batch queued, or
    /// that joined after them.
    primed: HashMap<ConnKey, usize>,
    /// Clients being replayed the stream from the history (see
    /// `Replays`): no numbered message reaches them from the batch.
    apart: HashSet<ConnKey>,
    /// Clients whose socket failed during the last pass.
    failed: Vec<ConnKey>,
    /// This worker's clients that negotiated permessage-deflate, as the
    /// last pass counted them (and those that joined since): its share of
    /// the process's `deflate_clients`. A connection keeps no bit for it
    /// beside its own: leaving clients are counted at the next pass.
    deflate: u64,
}

/// What one pass wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub recipients: u64,
    pub sent: usize,
    /// Recipients that negotiated permessage-deflate.
    pub deflate: u64,
}

impl Fanout {
    /// Takes a frame for every `/ws` client (`offset`: its place in the
    /// stream, if it has one). A frame without an offset goes at once to
    /// the clients apart, between the messages of their replay; returns
    /// how many it went to that way.
    pub fn push(&mut self, frame: &SharedFrame, offset: Option<u64>, conns: &mut Conns) -> u64 {
        let mut fed = 0;
        if offset.is_none() {
            for &key in &self.apart {
                let sent = conns.queue(key, |conn| {
                    let variant = frame.for_client(conn.deflate());
                    conn.send(Chunk::Shared(Arc::clone(variant)))
                });
                if matches!(sent, Some(Ok(()))) {
                    fed += 1;
                }
            }
        }
        self.compressed |= frame.is_compressed();
        self.batch.push(frame.clone());
        self.held += frame.bytes() + ENTRY_BYTES;
        fed
    }

    /// A client that negotiated permessage-deflate joined: counted in
    /// `gauge` at once, so the next message is compressed for it.
    pub fn deflate_joined(&mut self, gauge: &AtomicU64) {
        self.deflate += 1;
        metrics::add(gauge, 1);
    }

    /// The last pass counted its recipients that negotiated (when the
    /// worker had any, or compressed frames to write): the worker's share
    /// of `gauge` moves to that count.
    pub fn deflate_counted(&mut self, pass: Pass, gauge: &AtomicU64) {
        if self.deflate == 0 && pass.deflate == 0 {
            return;
        }
        let counted = pass.deflate;
        match counted.cmp(&self.deflate) {
            Ordering::Greater => metrics::add(gauge, counted - self.deflate),
            Ordering::Less => metrics::sub(gauge, self.deflate - counted),
            Ordering::Equal => {}
        }
        self.deflate = counted;
    }

    /// How many clients take no numbered message from the batch.
    pub fn apart(&self) -> usize {
        self.apart.len()
    }

    /// A client of this worker is about to get a message of its own: the
    /// batch so far goes into its queue first, so nothing it gets overtakes
    /// what went to everyone before it.
    pub fn prime(&mut self, key: ConnKey, conns: &mut Conns) {
        if self.batch.is_empty() || (!self.apart.is_empty() && self.apart.contains(&key)) {
            return;
        }
        let takes = conns
            .get(key)
            .and_then(|conn| conn.client())
            .is_some_and(Client::takes_broadcasts);
        if !takes {
            return;
        }
        let has = self.primed.entry(key).or_insert(0);
        for frame in &self.batch[*has..] {
            conns.queue(key, |conn| {
                let variant = frame.for_client(conn.deflate());
                conn.send(Chunk::Shared(Arc::clone(variant)))
            });
        }
        *has = self.batch.len();
    }

    /// A client joined: what the batch holds was sent before it came.
    pub fn joined(&mut self, key: ConnKey) {
        if !self.batch.is_empty() {
            self.primed.insert(key, self.batch.len());
        }
    }

    /// A client's replay starts: numbered messages reach it from the
    /// history, not from the batch.
    pub fn set_apart(&mut self, key: ConnKey) {
        self.apart.insert(key);
    }

    /// A client's replay has sent it everything this worker handed out,
    /// the batch included: it takes what comes next like the others.
    pub fn rejoin(&mut self, key: ConnKey) {
        if self.apart.remove(&key) {
            self.joined(key);
        }
    }

    pub fn left(&mut self, key: ConnKey) {
        self.apart.remove(&key);
        self.primed.remove(&key);
    }

    /// Bytes of the frames waiting in the batch, with an entry each: what
    /// the worker holds for its clients before the pass queues it.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Writes the batch, and with `notices` each client's shutdown notice
    /// after it, to every `/ws` client: one `sendmsg` per client for all of
    /// it. What a socket does not take is queued for the flush that
    /// follows, by shared segment; clients whose socket failed are in
    /// `take_failed`.
    pub fn deliver<T: Transmit>(
        &mut self,
        conns: &mut Conns,
        mut notices: Option<(&mut Notices, &mut Rng)>,
        io: &mut T,
    ) -> Pass {
        if self.batch.is_empty() && notices.is_none() {
            return Pass::default();
        }
        let mut taken = std::mem::take(&mut self.batch);
        self.held = 0;
        let plain: Vec<Arc<[u8]>> = taken.iter().map(|f| Arc::clone(f.plain())).collect();
        // The compressed variant of the batch, where a frame has one (the
        // plain frame where it has not), cut once for every client that
        // takes it.
        let deflated: Vec<Arc<[u8]>> = match std::mem::take(&mut self.compressed) {
            true => taken
                .iter()
                .map(|f| Arc::clone(f.for_client(true)))
                .collect(),
            false => Vec::new(),
        };
        taken.clear();
        self.batch = taken;
        let (plain_batch, deflated_batch) = (Batch::new(&plain), Batch::new(&deflated));
        let mut primed: Vec<(ConnKey, usize)> = self.primed.drain().collect();
        primed.sort_unstable();
        let mut primed = primed.into_iter().peekable();
        let (plain_shared, plain_count) = plain_batch.slices(0);
        let (deflated_shared, deflated_count) = deflated_batch.slices(0);
        // A worker with no client that negotiated looks at no connection's
        // flag: its clients that negotiate are counted as they join.
        let look = self.deflate > 0 || !deflated.is_empty();
        let mut own: Vec<Arc<[u8]>> = Vec::new();
        let (apart, failed) = (&self.apart, &mut self.failed);
        let mut pass = Pass::default();
        conns.for_each_recipient(|key, conn| {
            pass.recipients += 1;
            let deflate = look && conn.deflate();
            pass.deflate += u64::from(deflate);
            // Keys come in ascending order, and so do the primed ones.
            let mut from = 0;
            while let Some(&(primed_key, has)) = primed.peek() {
                if primed_key > key {
                    break;
                }
                if primed_key == key {
                    from = has;
                }
                primed.next();
            }
            if !apart.is_empty() && apart.contains(&key) {
                from = plain.len();
            }
            let compressed = deflate && !deflated.is_empty();
            let (batch, shared, count) = match compressed {
                false => (&plain_batch, &plain_shared, plain_count),
                true => (&deflated_batch, &deflated_shared, deflated_count),
            };
            let written = match notices.as_mut() {
                None if from == batch.len() => return,
                None if from == 0 => conn.send_shared(batch, 0, || {
                    would_block_is_nothing(io.send(key, &shared[..count]))
                }),
                None => {
                    let (slices, n) = batch.slices(from);
                    conn.send_shared(batch, from, || {
                        would_block_is_nothing(io.send(key, &slices[..n]))
                    })
                }
                Some((notices, rng)) => {
                    // Each client's own frames: the batch and its notice.
                    own.clear();
                    own.extend_from_slice(if compressed { &deflated } else { &plain });
                    own.push(notices.draw(rng));
                    let mine = Batch::new(&own[from..]);
                    let (slices, n) = mine.slices(0);
                    conn.send_shared(&mine, 0, || {
                        would_block_is_nothing(io.send(key, &slices[..n]))
                    })
                }
            };
            match written {
                Ok(Ok(n)) => pass.sent += n,
                Ok(Err(_)) => failed.push(key),
                // Recipients are WebSocket clients: every one takes messages.
                Err(_) => {}
            }
        });
        pass
    }

    /// The clients whose socket failed during the last pass.
    pub fn take_failed(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.failed)
    }
}

/// A socket that takes nothing now took 0 bytes; any other error ends it.
fn would_block_is_nothing(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::tests::harness::{joined, settings, Sockets};
    use std::time::Duration;

    /// `n` joined clients, each socket open wide.
    fn clients(n: u64) -> (Conns, Sockets, Vec<ConnKey>) {
        joined(settings(1 << 20), n, usize::MAX)
    }

    fn frame(text: &str) -> SharedFrame {
        Arc::<[u8]>::from(text.as_bytes()).into()
    }

    /// Writes what the pass left queued, and what each client has.
    fn received(conns: &mut Conns, sockets: &mut Sockets, key: ConnKey) -> String {
        conns.flush(key, 0, sockets);
        String::from_utf8(sockets.take(key)).unwrap()
    }

    #[test]
    fn the_batch_goes_to_every_client_in_one_write_and_nothing_is_queued() {
        let (mut conns, mut sockets, keys) = clients(3);
        let mut fanout = Fanout::default();
        fanout.push(&frame("a"), Some(1), &mut conns);
        fanout.push(&frame("b"), Some(2), &mut conns);
        let pass = fanout.deliver(&mut conns, None, &mut sockets);
        assert_eq!(
            pass,
            Pass {
                recipients: 3,
                sent: 6,
                deflate: 0
            }
        );
        assert_eq!(sockets.sends.len(), 3, "one write per client");
        for key in keys {
            assert!(conns.get(key).unwrap().out().is_empty());
            assert_eq!(sockets.take(key), b"ab");
        }
        assert_eq!(fanout.deliver(&mut conns, None, &mut sockets).recipients, 0);
    }

    #[test]
    fn a_primed_client_gets_the_rest_after_its_own_answer() {
        let (mut conns, mut sockets, keys) = clients(2);
        let mut fanout = Fanout::default();
        fanout.push(&frame("a"), None, &mut conns);
        fanout.prime(keys[0], &mut conns);
        conns.drive(keys[0], 0, |c, _, _| c.send(Chunk::Static(b"pong")));
        fanout.push(&frame("b"), None, &mut conns);
        fanout.deliver(&mut conns, None, &mut sockets);
        assert_eq!(received(&mut conns, &mut sockets, keys[0]), "apongb");
        assert_eq!(received(&mut conns, &mut sockets, keys[1]), "ab");
    }

    #[test]
    fn a_client_that_joined_gets_only_what_came_after() {
        let (mut conns, mut sockets, keys) = clients(2);
        let mut fanout = Fanout::default();
        fanout.push(&frame("before"), None, &mut conns);
        fanout.joined(keys[1]);
        fanout.push(&frame("after"), None, &mut conns);
        fanout.deliver(&mut conns, None, &mut sockets);
        assert_eq!(received(&mut conns, &mut sockets, keys[0]), "beforeafter");
        assert_eq!(received(&mut conns, &mut sockets, keys[1]), "after");
    }

    #[test]
    fn a_client_apart_gets_only_what_has_no_offset_until_it_rejoins() {
        let (mut conns, mut sockets, keys) = clients(2);
        let mut fanout = Fanout::default();
        fanout.set_apart(keys[1]);
        fanout.push(&frame("1"), Some(1), &mut conns);
        assert_eq!(fanout.push(&frame("p"), None, &mut conns), 1);
        fanout.push(&frame("2"), Some(2), &mut conns);
        fanout.prime(keys[1], &mut conns);
        fanout.deliver(&mut conns, None, &mut sockets);
        assert_eq!(received(&mut conns, &mut sockets, keys[1]), "p");
        fanout.push(&frame("3"), Some(3), &mut conns);
        fanout.rejoin(keys[1]);
        fanout.push(&frame("4"), Some(4), &mut conns);
        fanout.deliver(&mut conns, None, &mut sockets);
        assert_eq!(
            received(&mut conns, &mut sockets, keys[1]),
            "4",
            "what the batch held when it rejoined came from its replay"
        );
        assert_eq!(received(&mut conns, &mut sockets, keys[0]), "1p234");
    }

    #[test]
    fn a_full_socket_keeps_the_rest_queued_from_the_first_unsent_byte() {
        let (mut conns, mut sockets, keys) = clients(1);
        sockets.by_key.get_mut(&keys[0]).unwrap().room = 3;
        let mut fanout = Fanout::default();
        fanout.push(&frame("abcd"), None, &mut conns);
        fanout.push(&frame("ef"), None, &mut conns);
        assert_eq!(fanout.deliver(&mut conns, None, &mut sockets).sent, 3);
        sockets.by_key.get_mut(&keys[0]).unwrap().room = usize::MAX;
        assert_eq!(
            received(&mut conns, &mut sockets, keys[0]),
            "abcdef",
            "each byte once"
        );
    }

    #[test]
    fn a_failed_socket_is_reported_and_the_others_are_served() {
        let (mut conns, mut sockets, keys) = clients(2);
        sockets.by_key.get_mut(&keys[0]).unwrap().broken = true;
        let mut fanout = Fanout::default();
        fanout.push(&frame("x"), None, &mut conns);
        fanout.deliver(&mut conns, None, &mut sockets);
        assert_eq!(fanout.take_failed(), [keys[0]]);
        assert_eq!(sockets.take(keys[1]), b"x");
    }

    #[test]
    fn notices_follow_the_batch_in_the_same_write() {
        let (mut conns, mut sockets, keys) = clients(2);
        let mut fanout = Fanout::default();
        fanout.push(&frame("x"), None, &mut conns);
        fanout.joined(keys[1]);
        let mut notices = Notices::new(Duration::from_secs(60), Duration::from_secs(60), 0);
        let mut rng = Rng::seeded(3);
        let pass = fanout.deliver(&mut conns, Some((&mut notices, &mut rng)), &mut sockets);
        assert_eq!(pass.recipients, 2);
        assert_eq!(sockets.sends.len(), 2, "one write each");
        let first = sockets.take(keys[0]);
        assert!(first.starts_with(b"x") && first.len() > 1);
        let second = String::from_utf8_lossy(&sockets.take(keys[1])).into_owned();
        assert!(second.contains("shutdown_notice") && !second.starts_with('x'));
    }
}
