//! The workers of one process driven as `src/net/worker.rs` drives them,
//! with a fake clock and `Socket`s for sockets: events of a loop turn
//! (mail, reads a few at a time, writability) as they come, then the
//! connections to read again, `handle_timeout` and `transmit` with the
//! turn's time, and every output carried out as the shell would. Mail
//! between workers wakes the receiver's next turn, as the shell's wakers
//! do.
//!
//! Checked here, as they happen: every call returns; `Close` and
//! `ShutWrite` name a connection that is open, and nothing is written to
//! it after them (`Wire`); `accept` never hands out the key of a
//! connection not yet closed; a failed socket is closed at once;
//! `poll_timeout` is not in the past after `handle_timeout(now)`, and is
//! later than `now` after the whole turn (no drain Close is ever pending
//! here: they go out 500 per turn, and there are at most 17 connections);
//! `Exit` is a worker's last output; the nodes settle (never ask for turns
//! without end at one instant).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsnotify::conn::Stage;
use wsnotify::ids::ConnKey;
use wsnotify::node::{Input, MayRead, Node, Now, Output, Process};

use super::socket::{Socket, Wire};

/// Reads per readiness event before other connections get their turn, as
/// in the shell.
const READS_PER_EVENT: usize = 4;
/// What one read takes, as the shell's scratch buffer.
const READ_BYTES: usize = 64 * 1024;
/// Turns at one instant before the nodes count as spinning.
const MAX_TURNS: usize = 200;
/// 2026-11-21T16:14:56.789Z
const WALL_MS: u64 = 1_795_277_696_789;

struct Worker {
    node: Node,
    /// The sockets of its connections, by key (indexes into `sockets`).
    by_key: HashMap<ConnKey, usize>,
    /// Connections to read again once the others have had their turn.
    again: Vec<ConnKey>,
    /// Writability events waiting for the next turn.
    writable: Vec<ConnKey>,
    woken: bool,
    exited: Option<Instant>,
}

pub struct Cluster {
    pub process: Arc<Process>,
    workers: Vec<Worker>,
    /// Every connection ever accepted, in order.
    pub sockets: Vec<Socket>,
    pub now: Now,
}

impl Cluster {
    pub fn new(process: Arc<Process>, now: Now, seed: u64) -> Cluster {
        let workers = (0..process.config.workers)
            .map(|id| Worker {
                node: Node::new(id, Arc::clone(&process), now, seed + id as u64),
                by_key: HashMap::new(),
                again: Vec::new(),
                writable: Vec::new(),
                woken: false,
                exited: None,
            })
            .collect();
        Cluster {
            process,
            workers,
            sockets: Vec::new(),
            now,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    pub fn exited(&self, node: usize) -> Option<Instant> {
        self.workers[node].exited
    }

    pub fn stage(&self, socket: usize) -> Option<Stage> {
        let Socket { node, key, .. } = self.sockets[socket];
        self.workers[node].node.stage(key)
    }

    /// What the connection's queue holds, as charged against its bound.
    pub fn queued(&self, socket: usize) -> Option<usize> {
        let Socket { node, key, .. } = self.sockets[socket];
        self.workers[node].node.queued(key)
    }

    /// A connection from `peer` accepted by `node`; `None` once the worker
    /// has ended (its listener is gone).
    pub fn accept(&mut self, node: usize, peer: SocketAddr) -> Option<usize> {
        let worker = &mut self.workers[node];
        if worker.exited.is_some() {
            return None;
        }
        let key = worker.node.accept(peer, self.now);
        let index = self.sockets.len();
        if let Some(previous) = worker.by_key.insert(key, index) {
            assert!(
                self.sockets[previous].closed,
                "key {key} handed out again while its connection is open"
            );
        }
        self.sockets.push(Socket::new(node, key));
        self.carry_out(node);
        Some(index)
    }

    /// Mail for everyone, as the signal thread's wakers send at the drain.
    pub fn wake_all(&mut self) {
        for worker in &mut self.workers {
            worker.woken = true;
        }
    }

    /// The client sent bytes: the socket is readable.
    pub fn send(&mut self, socket: usize, bytes: &[u8]) {
        let s = &mut self.sockets[socket];
        s.inbox.extend(bytes);
        s.sent.extend_from_slice(bytes);
        let (node, key) = (s.node, s.key);
        self.read(node, key);
    }

    pub fn fin(&mut self, socket: usize) {
        let s = &mut self.sockets[socket];
        s.fin_sent = true;
        let (node, key) = (s.node, s.key);
        self.read(node, key);
    }

    /// The socket takes writes again: the shell hears of it if it watches.
    pub fn writable(&mut self, socket: usize) {
        let Socket { node, key, .. } = self.sockets[socket];
        if self.sockets[socket].watched && self.workers[node].exited.is_none() {
            self.workers[node]
                .node
                .handle(Input::Writable(key), self.now);
            self.carry_out(node);
        }
    }

    /// The socket fails; with `on_read` the shell's next read reports it
    /// at once, otherwise the node finds out when it next writes.
    pub fn fail(&mut self, socket: usize, on_read: bool) {
        let s = &mut self.sockets[socket];
        s.broken = true;
        let (node, key) = (s.node, s.key);
        if on_read {
            self.read(node, key);
        }
    }

    /// What the shell does when a socket is readable: a few reads, then the
    /// others' turn.
    fn read(&mut self, node: usize, key: ConnKey) {
        if self.workers[node].exited.is_some() {
            return;
        }
        let Some(stage) = self.workers[node].node.stage(key) else {
            return;
        };
        if stage == Stage::Http {
            // Requests held back are taken before anything new is read.
            let input = Input::Received { key, bytes: &[] };
            self.workers[node].node.handle(input, self.now);
            self.carry_out(node);
        }
        for _ in 0..READS_PER_EVENT {
            let worker = &mut self.workers[node];
            if worker.exited.is_some() {
                return;
            }
            match worker.node.may_read(key, stage) {
                MayRead::Now => {}
                MayRead::Later => return worker.again.push(key),
                MayRead::No => return,
            }
            let socket = &mut self.sockets[worker.by_key[&key]];
            let bytes: Vec<u8>;
            let input = if socket.broken {
                let error = io::ErrorKind::ConnectionReset.into();
                Input::Failed { key, error }
            } else if socket.inbox.is_empty() {
                if socket.fin_sent {
                    Input::Eof(key)
                } else {
                    Input::Quiet(key)
                }
            } else {
                let n = socket.inbox.len().min(READ_BYTES);
                bytes = socket.inbox.drain(..n).collect();
                Input::Received { key, bytes: &bytes }
            };
            let more = matches!(input, Input::Received { .. });
            let failed = matches!(input, Input::Failed { .. });
            worker.node.handle(input, self.now);
            self.carry_out(node);
            if failed {
                let socket = &self.sockets[self.workers[node].by_key[&key]];
                assert!(socket.closed, "failed connection {key} was not closed");
            }
            if !more {
                return;
            }
        }
        self.workers[node].again.push(key);
    }

    /// Carries out what a node asks, as the shell does.
    fn carry_out(&mut self, node: usize) {
        let mut woken = Vec::new();
        let worker = &mut self.workers[node];
        while let Some(output) = worker.node.poll_output() {
            let index = |key: ConnKey| {
                *worker
                    .by_key
                    .get(&key)
                    .unwrap_or_else(|| panic!("an output for key {key}, never accepted"))
            };
            match output {
                Output::Close(key) => {
                    let s = &mut self.sockets[index(key)];
                    assert!(!s.closed, "Close of connection {key} twice");
                    s.closed = true;
                }
                Output::ShutWrite(key) => {
                    let s = &mut self.sockets[index(key)];
                    assert!(!s.closed, "ShutWrite of connection {key} after its Close");
                    s.write_shut = true;
                }
                Output::Writable { key, on } => {
                    let s = &mut self.sockets[index(key)];
                    s.watched = on;
                    // Edge-triggered: watching a socket that has room
                    // reports it at the next poll.
                    if on && s.room.takes_any() {
                        worker.writable.push(key);
                    }
                }
                Output::ReadAgain(key) => worker.again.push(key),
                Output::Wake(other) => {
                    assert_ne!(other, node, "a worker woke itself");
                    woken.push(other);
                }
                Output::WakeLink => panic!("a link woken with no hand-over"),
                Output::StopAccepting => panic!("stopped accepting with sockets nobody shares"),
                Output::Redis(out) => panic!("{out:?} with no Redis configured"),
                Output::Exit => {
                    assert!(worker.node.poll_output().is_none(), "output after Exit");
                    worker.exited = Some(self.now.at);
                    // The shell's loop ends, and its sockets close with it.
                    for &index in worker.by_key.values() {
                        self.sockets[index].closed = true;
                    }
                    break;
                }
            }
        }
        for other in woken {
            self.workers[other].woken = true;
        }
    }

    /// One loop turn of `node`: mail, writability, reads left over, timers,
    /// writes.
    pub fn turn(&mut self, node: usize) {
        if self.workers[node].exited.is_some() {
            return;
        }
        let now = self.now;
        if std::mem::take(&mut self.workers[node].woken) {
            self.workers[node].node.handle(Input::Woken, now);
            self.carry_out(node);
        }
        for key in std::mem::take(&mut self.workers[node].writable) {
            if self.workers[node].exited.is_none() {
                self.workers[node].node.handle(Input::Writable(key), now);
                self.carry_out(node);
            }
        }
        for key in std::mem::take(&mut self.workers[node].again) {
            self.read(node, key);
        }
        self.timers_and_writes(node);
    }

    /// The end of a loop turn: `handle_timeout` and `transmit`.
    pub fn timers_and_writes(&mut self, node: usize) {
        let now = self.now;
        let worker = &mut self.workers[node];
        if worker.exited.is_some() {
            return;
        }
        worker.node.handle_timeout(now);
        if let Some(at) = worker.node.poll_timeout() {
            assert!(at >= now.at, "node {node} has a deadline in the past");
        }
        self.carry_out(node);
        let worker = &mut self.workers[node];
        if worker.exited.is_some() {
            return;
        }
        let received = |sockets: &[Socket]| -> usize {
            sockets
                .iter()
                .filter(|s| s.node == node)
                .map(|s| s.received.len())
                .sum()
        };
        let before = received(&self.sockets);
        let mut wire = Wire {
            by_key: &worker.by_key,
            sockets: &mut self.sockets,
        };
        worker.node.transmit(&mut wire, now);
        self.carry_out(node);
        let wrote = received(&self.sockets) > before;
        let worker = &self.workers[node];
        if worker.exited.is_none() {
            if let Some(at) = worker.node.poll_timeout() {
                // Only a turn that spent its budget on replays may ask for
                // the next one at once, and it wrote them.
                assert!(
                    at > now.at || wrote,
                    "node {node} asks for a turn at {now:?} again, having written nothing"
                );
            }
        }
    }

    /// Whether `node` has something to do at this instant.
    fn busy(&self, node: usize) -> bool {
        let w = &self.workers[node];
        w.exited.is_none()
            && (w.woken
                || !w.again.is_empty()
                || !w.writable.is_empty()
                || w.node.poll_timeout().is_some_and(|at| at <= self.now.at))
    }

    /// Turns of every node until none has anything left to do now.
    pub fn settle(&mut self) {
        for _ in 0..MAX_TURNS {
            for node in 0..self.workers.len() {
                self.turn(node);
            }
            if !(0..self.workers.len()).any(|node| self.busy(node)) {
                return;
            }
        }
        panic!("the nodes never settled at one instant");
    }

    /// Moves the clock on by `by`, stopping wherever a node asked to be
    /// woken, settling at each stop.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now.at + by;
        loop {
            self.settle();
            let next = (0..self.workers.len())
                .filter(|&node| self.workers[node].exited.is_none())
                .filter_map(|node| self.workers[node].node.poll_timeout())
                .min()
                .unwrap_or(end)
                .min(end);
            if next <= self.now.at {
                return;
            }
            self.set_clock(next);
        }
    }

    fn set_clock(&mut self, at: Instant) {
        let step = at - self.now.at;
        self.now = Now {
            at,
            wall_ms: self.now.wall_ms + step.as_millis() as u64,
        };
    }
}

/// The time a run starts at.
pub fn start() -> Now {
    Now {
        at: Instant::now(),
        wall_ms: WALL_MS,
    }
}
