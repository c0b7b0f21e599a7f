//! The connections of one worker: each connection's state machine, its
//! timer, the list of those with bytes to write, and the counts the rest of
//! the node reads. Every count changes here and only here, from what a
//! connection does: `clients` while a connection is in its WebSocket phase,
//! `closing` while it closes, `backlogged` while its socket has not taken
//! its queue, `queued` as its queue grows and shrinks.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use slab::Slab;

use super::timer_wheel::{Entry, Tick, TimerWheel};
use super::transmit::{KeyWriter, Transmit};
use crate::app::hub::{Client, Seqs};
use crate::conn::{Connection, Settings, Stage, Verdict, NEVER};
use crate::ids::ConnKey;
use crate::obs::metrics::Limit;

pub type Conn = Connection<Client>;

/// What one connection costs in the table, whatever its phase (an HTTP
/// connection's request state is boxed, and an idle one's queue and
/// receive buffer hold no heap memory).
pub const CONNECTION_BYTES: usize = std::mem::size_of::<Slot>();

#[derive(Debug)]
struct Slot {
    conn: Conn,
    /// The tick of this connection's live timer-wheel entry (`NEVER`: none).
    armed: Tick,
    /// Whether the shell watches its socket for writability (only while
    /// the queue is not empty).
    writable: bool,
    /// Whether it is in the list to flush.
    dirty: bool,
}

#[derive(Debug)]
pub struct Conns {
    slab: Slab<Slot>,
    wheel: TimerWheel,
    dirty: Vec<ConnKey>,
    /// An empty list kept for its allocation (see `recycle`).
    spare: Vec<ConnKey>,
    settings: Settings,
    clients: usize,
    closing: usize,
    backlogged: usize,
    /// What every connection's queue holds (`WriteQueue::held`), answers to
    /// HTTP requests and Closes included.
    queued: usize,
    /// Bytes held for messages still being received, by this worker's
    /// connections, and by every worker's (the process's count, for
    /// `--max-total-receive-bytes`), kept in step with each other.
    receiving: usize,
    receiving_shared: Arc<AtomicUsize>,
}

/// What a flush of one connection's queue came to.
#[derive(Debug)]
pub enum Flushed {
    /// No such connection.
    Gone,
    /// The socket failed: the connection must go.
    Failed(io::Error),
    /// `sent` bytes went out; `verdict` says what follows.
    Sent {
        sent: usize,
        verdict: Option<Verdict<Client>>,
    },
}

impl Conns {
    pub fn new(settings: Settings, now: Tick) -> Conns {
        Conns {
            slab: Slab::new(),
            wheel: TimerWheel::new(now),
            dirty: Vec::new(),
            spare: Vec::new(),
            settings,
            clients: 0,
            closing: 0,
            backlogged: 0,
            queued: 0,
            receiving: 0,
            receiving_shared: Arc::default(),
        }
    }

    /// Counts what this worker's connections are receiving into the
    /// process's count too.
    pub fn share_receiving(mut self, shared: Arc<AtomicUsize>) -> Conns {
        self.receiving_shared = shared;
        self
    }

    /// Bytes held for messages still being received here.
    pub fn receiving(&self) -> usize {
        self.receiving
    }

    /// The connection of this worker holding the most bytes of a message
    /// still being received, and how many.
    pub fn most_receiving(&self) -> Option<(ConnKey, usize)> {
        self.slab
            .iter()
            .map(|(i, slot)| (ConnKey(i), slot.conn.receiving()))
            .filter(|(_, held)| *held > 0)
            .max_by_key(|(_, held)| *held)
    }

    fn receiving_changed(&mut self, before: usize, after: usize) {
        if after >= before {
            self.receiving += after - before;
            self.receiving_shared
                .fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.receiving -= before - after;
            self.receiving_shared
                .fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// A new connection in its HTTP phase, its head timer running.
    pub fn open(&mut self, peer: SocketAddr, now: Tick) -> ConnKey {
        let key = ConnKey(self.slab.insert(Slot {
            conn: Connection::new(peer, now, &self.settings),
            armed: NEVER,
            writable: false,
            dirty: false,
        }));
        self.arm(key, now);
        key
    }

    pub fn get(&self, key: ConnKey) -> Option<&Conn> {
        self.slab.get(key.0).map(|slot| &slot.conn)
    }

    /// Open WebSocket connections (`/ws` and `/echo`).
    pub fn clients(&self) -> usize {
        self.clients
    }

    /// Connections finishing their close.
    pub fn closing(&self) -> usize {
        self.closing
    }

    /// Connections whose socket did not take their whole queue.
    pub fn backlogged(&self) -> usize {
        self.backlogged
    }

    /// What the queues of this worker's connections hold together.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Runs one step of a connection's state machine and keeps the table in
    /// step with it: a connection with new bytes to send or in a new phase
    /// is flushed at the end of the turn, its phase counts, and its timer
    /// follows its deadline.
    pub fn drive<R>(
        &mut self,
        key: ConnKey,
        now: Tick,
        step: impl FnOnce(&mut Conn, Tick, &Settings) -> R,
    ) -> Option<R> {
        let slot = self.slab.get_mut(key.0)?;
        let stage = slot.conn.stage();
        let pending = slot.conn.out().pending();
        let queued = slot.conn.out().held();
        let held = slot.conn.receiving();
        let result = step(&mut slot.conn, now, &self.settings);
        let now_held = slot.conn.receiving();
        self.queued = self.queued - queued + slot.conn.out().held();
        let after = slot.conn.stage();
        if after != stage {
            count(&mut self.clients, &mut self.closing, stage, after);
        }
        if (after != stage || slot.conn.out().pending() != pending) && !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key);
        }
        self.arm(key, now);
        if now_held != held {
            self.receiving_changed(held, now_held);
        }
        Some(result)
    }

    /// Whether the connection takes input now (see `Connection::wants_input`),
    /// and its phase.
    pub fn wants_input(&mut self, key: ConnKey) -> Option<Result<Stage, Option<Limit>>> {
        let conn = &mut self.slab.get_mut(key.0)?.conn;
        Some(conn.wants_input().map(|()| conn.stage()))
    }

    /// Queues output on a connection, which neither changes its phase nor
    /// its deadline: it is flushed at the end of the turn. The path of
    /// every message a client gets, so lighter than `drive`.
    pub fn queue<R>(&mut self, key: ConnKey, send: impl FnOnce(&mut Conn) -> R) -> Option<R> {
        let slot = self.slab.get_mut(key.0)?;
        let queued = slot.conn.out().held();
        let result = send(&mut slot.conn);
        self.queued = self.queued - queued + slot.conn.out().held();
        if !slot.dirty && !slot.conn.out().is_empty() {
            slot.dirty = true;
            self.dirty.push(key);
        }
        Some(result)
    }

    /// The connection's queue is to be flushed at the end of the turn.
    pub fn mark_dirty(&mut self, key: ConnKey) {
        if let Some(slot) = self.slab.get_mut(key.0) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The connections to flush, in the order they were marked. Marks made
    /// while they are flushed go to a new list, for the next flush.
    pub fn take_dirty(&mut self) -> Vec<ConnKey> {
        std::mem::replace(&mut self.dirty, std::mem::take(&mut self.spare))
    }

    /// A list `take_dirty` gave out, flushed: its allocation serves the next
    /// one, so a turn's flush allocates nothing.
    pub fn recycle(&mut self, mut flushed: Vec<ConnKey>) {
        flushed.clear();
        if flushed.capacity() > self.spare.capacity() {
            self.spare = flushed;
        }
    }

    /// Writes a connection's queue to `io` and asks the connection what
    /// follows.
    pub fn flush<T: Transmit>(&mut self, key: ConnKey, now: Tick, io: &mut T) -> Flushed {
        let Some(slot) = self.slab.get_mut(key.0) else {
            return Flushed::Gone;
        };
        slot.dirty = false;
        let queued = slot.conn.out().held();
        let flushed = slot.conn.flush_to(&mut KeyWriter { io, key });
        self.queued = self.queued - queued + slot.conn.out().held();
        let sent = match flushed {
            Ok(n) => n,
            Err(e) => return Flushed::Failed(e),
        };
        match self.drive(key, now, |conn, now, s| conn.after_flush(now, s)) {
            Some(verdict) => Flushed::Sent { sent, verdict },
            None => Flushed::Gone,
        }
    }

    /// Whether the socket must be watched for writability changed: it must
    /// while bytes wait in the queue. Returns the new interest.
    pub fn update_interest(&mut self, key: ConnKey) -> Option<bool> {
        let slot = self.slab.get_mut(key.0)?;
        let want = !slot.conn.out().is_empty();
        if want == slot.writable {
            return None;
        }
        slot.writable = want;
        if want {
            self.backlogged += 1;
        } else {
            self.backlogged -= 1;
        }
        Some(want)
    }

    /// Forgets a connection; it no longer counts anywhere.
    pub fn remove(&mut self, key: ConnKey) -> Option<Conn> {
        let slot = self.slab.try_remove(key.0)?;
        self.receiving_changed(slot.conn.receiving(), 0);
        self.queued -= slot.conn.out().held();
        match slot.conn.stage() {
            Stage::Ws => self.clients -= 1,
            Stage::Closing => self.closing -= 1,
            Stage::Http => {}
        }
        if slot.writable {
            self.backlogged -= 1;
        }
        Some(slot.conn)
    }

    /// Makes sure the wheel holds an entry no later than the connection's
    /// deadline. Later deadlines need nothing: the early entry re-arms.
    fn arm(&mut self, key: ConnKey, now: Tick) {
        let Some(slot) = self.slab.get_mut(key.0) else {
            return;
        };
        let deadline = slot.conn.deadline(&self.settings);
        if deadline == NEVER || (slot.armed != NEVER && slot.armed <= deadline) {
            return;
        }
        let at = deadline.max(now + 1);
        slot.armed = at;
        self.wheel.schedule(key.0, at);
    }

    /// Moves the timers to `now`; `due` gets every connection whose entry
    /// came due (an entry a later one replaced is skipped).
    pub fn due(&mut self, now: Tick, entries: &mut Vec<Entry>, due: &mut Vec<ConnKey>) {
        self.wheel.advance(now, entries);
        for entry in entries.drain(..) {
            let key = ConnKey(entry.key as usize);
            let Some(slot) = self.slab.get_mut(key.0) else {
                continue;
            };
            if slot.armed == entry.at {
                slot.armed = NEVER;
                due.push(key);
            }
        }
    }

    /// Arms a connection's timer again after its deadline was handled.
    pub fn rearm(&mut self, key: ConnKey, now: Tick) {
        self.arm(key, now);
    }

    /// The earliest tick a timer may be due.
    pub fn next_tick(&self) -> Option<Tick> {
        self.wheel.next_tick()
    }

    /// Calls `visit` for every WebSocket client that takes broadcasts, in
    /// table (memory) order: the connections, and the kernel's sockets
    /// allocated in the same order, are visited the way they lie in
    /// memory, which made 10,000-client fanout 1.4 times faster than the
    /// hub's hash order. A client left with queued bytes is flushed at the
    /// end of the turn.
    pub fn for_each_recipient(&mut self, mut visit: impl FnMut(ConnKey, &mut Conn)) {
        for (key, slot) in self.slab.iter_mut() {
            if !slot.conn.client().is_some_and(Client::takes_broadcasts) {
                continue;
            }
            let queued = slot.conn.out().held();
            visit(ConnKey(key), &mut slot.conn);
            self.queued = self.queued - queued + slot.conn.out().held();
            if !slot.dirty && !slot.conn.out().is_empty() {
                slot.dirty = true;
                self.dirty.push(ConnKey(key));
            }
        }
    }

    /// What the queue of every connection whose socket is behind holds,
    /// with its key: WebSocket clients, HTTP connections that do not read
    /// their answers, and closing connections.
    pub fn backlogs(&self) -> impl Iterator<Item = (usize, ConnKey)> + '_ {
        self.slab
            .iter()
            .filter(|(_, s)| s.writable)
            .map(|(key, s)| (s.conn.out().held(), ConnKey(key)))
    }

    /// Connections the worker owes an answer (see `Connection::owes_answer`);
    /// with `every_http`, also every connection still speaking HTTP: one
    /// never answered may be a client whose first request (perhaps an
    /// upgrade) is on its way, and an idle keep-alive one may be sending
    /// its next request.
    pub fn owing_answers(&self, every_http: bool) -> usize {
        self.slab
            .iter()
            .filter(|(_, s)| s.conn.owes_answer() || (every_http && s.conn.stage() == Stage::Http))
            .count()
    }

    /// The WebSocket clients (for the drain's Closes).
    pub fn websockets(&self) -> Vec<ConnKey> {
        self.slab
            .iter()
            .filter(|(_, s)| s.conn.is_ws())
            .map(|(key, _)| ConnKey(key))
            .collect()
    }
}

impl Seqs for Conns {
    fn seq_of(&self, key: ConnKey) -> Option<u64> {
        self.get(key)
            .and_then(Conn::client)
            .map(|client| client.seq)
    }
}

/// A connection moved from phase `from` to `to`.
fn count(clients: &mut usize, closing: &mut usize, from: Stage, to: Stage) {
    match from {
        Stage::Ws => *clients -= 1,
        Stage::Closing => *closing -= 1,
        Stage::Http => {}
    }
    match to {
        Stage::Ws => *clients += 1,
        Stage::Closing => *closing += 1,
        Stage::Http => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::hub::Endpoint;
    use crate::node::tests::harness::Sockets;
    use crate::proto::close::CloseCode;
    use crate::proto::http::{Response, Status};
    use std::net::Ipv4Addr;

    const SETTINGS: Settings = Settings {
        header: 10,
        idle: Some(50),
        ping: None,
        linger: 30,
        max_message: 1024,
        max_queue: 4096,
    };

    fn peer() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 4000))
    }

    const CLIENT: Client = Client {
        endpoint: Endpoint::Notify,
        seq: 1,
    };

    fn upgraded(conns: &mut Conns) -> ConnKey {
        let key = conns.open(peer(), 0);
        conns.drive(key, 0, |c, now, s| c.upgrade("x", None, CLIENT, now, s));
        key
    }

    #[test]
    fn phases_are_counted_as_connections_move_through_them() {
        let mut conns = Conns::new(SETTINGS, 0);
        let a = upgraded(&mut conns);
        let b = upgraded(&mut conns);
        let http = conns.open(peer(), 0);
        assert_eq!((conns.clients(), conns.closing()), (2, 0));
        conns.drive(a, 1, |c, now, s| {
            c.close(CloseCode::GOING_AWAY, "bye", now, s)
        });
        assert_eq!((conns.clients(), conns.closing()), (1, 1));
        conns.remove(a);
        conns.remove(b);
        assert_eq!((conns.clients(), conns.closing()), (0, 0));
        assert!(conns.get(http).is_some());
    }

    #[test]
    fn a_connection_with_new_bytes_is_flushed_once_and_watched_while_behind() {
        let mut conns = Conns::new(SETTINGS, 0);
        let key = upgraded(&mut conns);
        assert_eq!(conns.take_dirty(), [key], "the 101 waits, listed once");
        let mut wire = Sockets::default();
        wire.open(key, 10);
        assert!(matches!(
            conns.flush(key, 0, &mut wire),
            Flushed::Sent { sent: 10, .. }
        ));
        assert_eq!(conns.update_interest(key), Some(true));
        assert_eq!(conns.backlogged(), 1);
        assert_eq!(conns.update_interest(key), None, "no change, no output");
        wire.by_key.get_mut(&key).unwrap().room = usize::MAX;
        conns.flush(key, 0, &mut wire);
        assert!(String::from_utf8_lossy(&wire.take(key)).starts_with("HTTP/1.1 101"));
        assert_eq!(conns.update_interest(key), Some(false));
        assert_eq!(conns.backlogged(), 0);
    }

    #[test]
    fn a_backlogged_connection_removed_no_longer_counts() {
        let mut conns = Conns::new(SETTINGS, 0);
        let key = conns.open(peer(), 0);
        conns.drive(key, 0, |c, now, s| {
            let request = crate::proto::http::Request {
                method: "GET".into(),
                path: "/".into(),
                query: None,
                minor_version: 1,
                headers: Vec::new(),
            };
            c.respond(&request, Response::error(Status::NOT_FOUND, "no"), now, s)
        });
        let mut wire = Sockets::default();
        wire.open(key, 0);
        conns.flush(key, 0, &mut wire);
        assert_eq!(conns.update_interest(key), Some(true));
        conns.remove(key);
        assert_eq!(conns.backlogged(), 0);
        assert!(matches!(conns.flush(key, 0, &mut wire), Flushed::Gone));
    }

    #[test]
    fn timers_come_due_once_and_an_early_entry_is_armed_again() {
        let mut conns = Conns::new(SETTINGS, 0);
        let http = conns.open(peer(), 0);
        let (mut entries, mut due) = (Vec::new(), Vec::new());
        conns.due(9, &mut entries, &mut due);
        assert!(due.is_empty());
        conns.due(11, &mut entries, &mut due);
        assert_eq!(due, [http], "the head timeout");
        due.clear();
        conns.due(12, &mut entries, &mut due);
        assert!(due.is_empty(), "handed out once");

        let ws = conns.open(peer(), 12);
        assert_eq!(conns.next_tick(), Some(22), "its head timer");
        conns.drive(ws, 15, |c, now, s| c.upgrade("x", None, CLIENT, now, s));
        conns.due(30, &mut entries, &mut due);
        // The upgrade moved its deadline later without touching the wheel:
        // the early entry comes due, nothing is due yet, and it re-arms.
        assert_eq!(due, [ws]);
        assert!(conns
            .drive(ws, 30, |c, now, s| c.on_deadline(now, s))
            .unwrap()
            .is_none());
        conns.rearm(ws, 30);
        due.clear();
        conns.due(64, &mut entries, &mut due);
        assert!(due.is_empty());
        conns.due(65, &mut entries, &mut due);
        assert_eq!(due, [ws], "the idle timeout, 50 ticks after the upgrade");
    }

    #[test]
    fn recipients_are_joined_websocket_clients_in_table_order() {
        let mut conns = Conns::new(SETTINGS, 0);
        let a = upgraded(&mut conns);
        let _http = conns.open(peer(), 0);
        let unjoined = conns.open(peer(), 0);
        conns.drive(unjoined, 0, |c, now, s| {
            c.upgrade(
                "x",
                None,
                Client {
                    endpoint: Endpoint::Notify,
                    seq: 0,
                },
                now,
                s,
            )
        });
        let b = upgraded(&mut conns);
        let mut seen = Vec::new();
        conns.for_each_recipient(|key, _| seen.push(key));
        assert_eq!(seen, [a, b]);
    }
}
