//! Whole workers in memory: one `Process` and its 1-3 `Node`s driven as
//! the mio shell drives them (`node/shell.rs`), with a fake clock and
//! byte-buffer sockets, by a script the fuzzer writes.
//!
//! Input layout (`node/script.rs`): 14 bytes of configuration, one per
//! setting (workers, `/echo` and an admin token, the per-address limit,
//! queue, message and history sizes, the total queue bound, the connection
//! limit, the head timeout, ping, idle, periodic and history timers, the
//! drain timeout), then operations until the input ends (at most 300),
//! each a byte (modulo 16) and its arguments: accept a connection on a node
//! from one of four addresses; send raw bytes, frame records
//! (`records.rs`), a `/ws` message, or an HTTP request (upgrades of `/ws`,
//! with and without `since`/`epoch`, and `/echo`, `GET /health`, `/status`,
//! `/metrics`, `/`, `HEAD`, `POST /broadcast` and `/notify` with bodies, a
//! refused upgrade; flags for `Connection: close`, HTTP/1.0, `Expect`, a
//! request cut short, tokens); the client's FIN; the client's socket taking
//! nothing, a few bytes, or everything again; the socket failing; the clock
//! moving 0-3.2 s in 25 ms steps or 0-127 s (15 minutes at most per
//! script); the drain; a loop turn of some nodes; a `/status` check.
//! Connections are picked among those open then; at most 16 are open at
//! once. Afterwards the clients stop sending, the drain starts (if the
//! script did not start it) and the clock runs to its end.
//!
//! Invariants (a violation panics), besides those `node/shell.rs` checks
//! as it drives the nodes:
//! - every stream a client read is HTTP/1.1 responses and, after a `101`,
//!   server frames (`wire.rs`), complete unless the connection was let go
//!   while its client did not take everything; on `/ws` the welcome comes
//!   first, every text frame is JSON with `type` and `time`, and the
//!   offsets follow the welcome's without gap or repeat (`node/checks.rs`);
//! - memory: a WebSocket client whose socket took less than everything
//!   has, at the end of every loop turn, at most `max_queue_bytes` queued
//!   (as the node charges it, read when the client reads everything again),
//!   and one dropped for it with nothing half-written only the drop's
//!   Close (what arrives when it reads everything again, in a turn with
//!   nothing else in it);
//! - at a quiet point (every socket takes everything), `/status` counts as
//!   many connections as the clients that read a `101` and are still open
//!   (no Close frame read, no FIN sent, no failure, write side not shut);
//! - every worker exits at the latest `CLOSE_LINGER` and one tick after the
//!   drain deadline, whatever the clients do, and outputs nothing after
//!   `Exit`; then the process counts no client.

#[path = "node/checks.rs"]
mod checks;
#[path = "node/client.rs"]
mod client;
#[path = "node/script.rs"]
mod script;
#[path = "node/shell.rs"]
mod shell;
#[path = "node/socket.rs"]
mod socket;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wsnotify::config::{LogFormat, LogLevel};
use wsnotify::conn::Stage;
use wsnotify::node::{Process, CLOSE_LINGER};
use wsnotify::rand::Rng;

use crate::records::{encode_records, Rng as Xorshift};
use script::{Bytes, Op, Pick, Room};
use shell::Cluster;

const MAX_OPEN: usize = 16;
/// The clients' addresses: two loopback ones (publishing allowed), one
/// that is not, and IPv6.
const ADDRESSES: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];
/// The `/status` probe's own address, so no per-address limit refuses it.
const PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 99));
/// How late the last exit may be past the drain deadline and the linger:
/// one tick, the timer wheel's granularity.
const EXIT_MARGIN: Duration = Duration::from_millis(100);
/// `/status` checks per input: each costs a connection and a settle.
const MAX_STATUS_CHECKS: usize = 4;
/// Frame bytes one `Frames` operation may send: records expand (five
/// input bytes make a 9,000-byte frame).
const MAX_RECORDS: usize = 32 * 1024;
/// Fake time a script may move the clock by: minutes of pings and
/// timeouts, while an execution stays in the milliseconds.
const CLOCK_BUDGET: Duration = Duration::from_secs(15 * 60);

pub fn run(data: &[u8]) {
    wsnotify::obs::log::init(LogFormat::Text, LogLevel::Error);
    let mut input = Bytes::new(data);
    let config = script::config(&mut input);
    let debug = std::env::var_os("WSNOTIFY_FUZZ_DEBUG").is_some();
    if debug {
        eprintln!("{config:?}");
    }
    let mut world = World::new(config);
    for op in script::ops(input) {
        if debug {
            eprintln!("{:?} {op:?}", world.cluster.now.at - world.started);
        }
        world.apply(op);
    }
    world.finish();
    if debug {
        world.report();
    }
}

struct World {
    cluster: Cluster,
    started: Instant,
    max_queue: usize,
    drain_timeout: Duration,
    /// When every worker must have exited by, once the drain started.
    exit_by: Option<Instant>,
    /// What is left of `CLOCK_BUDGET`.
    clock_left: Duration,
    status_checks: usize,
    records: Xorshift,
}

impl World {
    fn new(config: wsnotify::config::Config) -> World {
        let now = shell::start();
        let (max_queue, drain_timeout) = (config.max_queue_bytes, config.drain_timeout);
        let process = Arc::new(Process::new(config, now.at, &mut Rng::seeded(1)));
        World {
            cluster: Cluster::new(process, now, 100),
            started: now.at,
            max_queue,
            drain_timeout,
            exit_by: None,
            clock_left: CLOCK_BUDGET,
            status_checks: 0,
            records: Xorshift(0x9E37_79B9_7F4A_7C15),
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Accept { node, from } => self.accept(node, from),
            Op::Raw { conn, bytes } => self.send(conn, bytes),
            Op::Frames { conn, records } => {
                let frames = encode_records(records, MAX_RECORDS, &mut self.records);
                self.send(conn, &frames);
            }
            Op::Message {
                conn,
                kind,
                arg,
                text,
            } => {
                let frames = client::message(kind, arg, text, &self.cluster.process.instance);
                self.send(conn, &frames);
            }
            Op::Request {
                conn,
                kind,
                flags,
                arg,
                body,
            } => {
                let request = self.request(kind, flags, arg, body);
                self.send(conn, &request);
            }
            Op::Fin { conn } => {
                if let Some(socket) = self.pick(conn, true) {
                    self.cluster.fin(socket);
                }
            }
            Op::Room { conn, room } => self.room(conn, room),
            Op::Fail { conn, on_read } => {
                if let Some(socket) = self.pick(conn, false) {
                    self.cluster.fail(socket, on_read);
                }
            }
            Op::Clock { by } => {
                let by = by.min(self.clock_left);
                self.clock_left -= by;
                self.cluster.advance(by);
                self.check_exits();
            }
            Op::Drain => self.drain(),
            Op::Turn { nodes } => {
                for node in 0..self.cluster.workers() {
                    if nodes == 0 || nodes & (1 << node) != 0 {
                        self.cluster.turn(node);
                    }
                }
            }
            Op::Status => self.status(),
        }
    }

    /// One of the open connections: for sending, one whose client still
    /// sends (no FIN, no failure).
    fn pick(&self, conn: Pick, sending: bool) -> Option<usize> {
        let open: Vec<usize> = (0..self.cluster.sockets.len())
            .filter(|&i| {
                let s = &self.cluster.sockets[i];
                s.is_open() && !(sending && (s.fin_sent || s.broken))
            })
            .collect();
        (!open.is_empty()).then(|| open[usize::from(conn) % open.len()])
    }

    fn open_count(&self) -> usize {
        self.cluster.sockets.iter().filter(|s| s.is_open()).count()
    }

    fn accept(&mut self, node: u8, from: u8) {
        if self.open_count() >= MAX_OPEN {
            return;
        }
        let node = usize::from(node) % self.cluster.workers();
        let ip = ADDRESSES[usize::from(from) % ADDRESSES.len()];
        let port = 40_000 + self.cluster.sockets.len() as u16;
        self.cluster.accept(node, SocketAddr::new(ip, port));
    }

    fn send(&mut self, conn: Pick, bytes: &[u8]) {
        if let Some(socket) = self.pick(conn, true) {
            self.cluster.send(socket, bytes);
        }
    }

    /// An HTTP request; a resume is for this process's stream as it
    /// stands now.
    fn request(&self, kind: u8, flags: u8, arg: u8, body: &[u8]) -> Vec<u8> {
        let process = &self.cluster.process;
        let history = process.stream();
        let stream = client::Stream {
            epoch: history.epoch(),
            last: history.last(),
        };
        client::request(kind, flags, arg, body, &process.instance, &stream)
    }

    fn room(&mut self, conn: Pick, room: Room) {
        let Some(socket) = self.pick(conn, false) else {
            return;
        };
        if room == Room::Everything && self.cluster.sockets[socket].room != Room::Everything {
            return self.read_everything_again(socket);
        }
        self.cluster.sockets[socket].set_room(room);
        if room.takes_any() {
            self.cluster.writable(socket);
        }
    }

    /// A slow reader reads everything again. Its node first ends the turn
    /// it is in, at whose end a WebSocket client's queue must be within
    /// `max_queue_bytes` (the node drops a client whose queue is past it
    /// after each write); then a turn with only this socket's writability
    /// writes what was queued (and, for a client being replayed, its next
    /// steps, which come from the history), and for a dropped client
    /// nothing but the answers its requests were owed and the drop's Close.
    fn read_everything_again(&mut self, socket: usize) {
        let node = self.cluster.sockets[socket].node;
        self.cluster.turn(node);
        if !self.cluster.sockets[socket].is_open() {
            return;
        }
        let stage = self.cluster.stage(socket);
        let queued = self.cluster.queued(socket).unwrap_or(0);
        let before = self.cluster.sockets[socket].received.len();
        self.cluster.sockets[socket].set_room(Room::Everything);
        self.cluster.writable(socket);
        self.cluster.timers_and_writes(node);
        let arrived = &self.cluster.sockets[socket].received[before..];
        match stage {
            Some(Stage::Ws) => assert!(
                queued <= self.max_queue,
                "{queued} bytes were queued for a client, past max_queue_bytes {} ({} arrived)",
                self.max_queue,
                arrived.len()
            ),
            // A client dropped with nothing half-written keeps only the
            // drop's Close, the frames it had not started gone; but for the
            // answers owed to its requests if they had not gone out yet
            // (the last of them the 101, and the frames queued in the 101's
            // own buffer, which holds 64 KiB at most).
            Some(Stage::Closing) if arrived.ends_with(checks::SLOW_CONSUMER_CLOSE) => {
                let received = &self.cluster.sockets[socket].received;
                let close_at = received.len() - checks::SLOW_CONSUMER_CLOSE.len();
                // The 101 may have been on its way when the client was
                // dropped, some of it read before this.
                let kept_from =
                    checks::end_of_101(&received[..close_at]).filter(|end| *end > before);
                let (frames, allowed) = match kept_from {
                    Some(end) => (close_at - end, 64 * 1024),
                    None => (close_at - before, 0),
                };
                assert!(
                    frames <= allowed,
                    "a dropped client kept {frames} bytes of frames it had not started"
                );
            }
            _ => {}
        }
    }

    /// The first signal: the process drains, and every worker is woken.
    fn drain(&mut self) {
        if self.exit_by.is_some() {
            return;
        }
        let deadline = self.cluster.now.at + self.drain_timeout;
        self.cluster.process.start_drain(deadline);
        self.cluster.wake_all();
        self.exit_by = Some(deadline + CLOSE_LINGER + EXIT_MARGIN);
    }

    /// No worker runs past its bound.
    fn check_exits(&self) {
        let Some(exit_by) = self.exit_by else {
            return;
        };
        for node in 0..self.cluster.workers() {
            let at = self.cluster.exited(node).unwrap_or(self.cluster.now.at);
            assert!(
                at <= exit_by,
                "node {node} ran {:?} past the drain deadline and the linger",
                at - (exit_by - EXIT_MARGIN)
            );
        }
    }

    /// At a quiet point, `/status` counts the clients the harness sees.
    fn status(&mut self) {
        if self.status_checks >= MAX_STATUS_CHECKS {
            return;
        }
        self.cluster.settle();
        let open = || self.cluster.sockets.iter().filter(|s| s.is_open());
        if open().any(|s| s.room != Room::Everything || s.broken) {
            return;
        }
        // Every open stream is complete here: nothing is left half-sent to
        // a client that takes everything.
        let clients = open()
            .map(|s| (s, checks::read(s, false)))
            .filter(|(s, received)| {
                let left = s.fin_sent || s.write_shut || received.closed_by_frame();
                received.upgraded() && !left
            })
            .count();
        let Some(node) = (0..self.cluster.workers()).find(|&n| self.cluster.exited(n).is_none())
        else {
            return;
        };
        self.status_checks += 1;
        let Some(probe) = self.cluster.accept(node, SocketAddr::new(PROBE, 9)) else {
            return;
        };
        let request = b"GET /status HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n";
        self.cluster.send(probe, request);
        self.cluster.settle();
        let answer = checks::read(&self.cluster.sockets[probe], false);
        let response = answer.responses.first().expect("an answer to /status");
        assert_eq!(response.status, 200);
        let status: Value = serde_json::from_slice(&response.body).expect("JSON status");
        assert_eq!(
            status["connections"].as_u64(),
            Some(clients as u64),
            "/status disagrees with the clients: {status}"
        );
        self.cluster.fin(probe);
    }

    /// The clients stop sending, the drain runs to its end, and every
    /// client's stream is checked whole.
    fn finish(&mut self) {
        self.drain();
        let exit_by = self.exit_by.expect("the drain started");
        self.cluster
            .advance(exit_by.saturating_duration_since(self.cluster.now.at));
        self.check_exits();
        for node in 0..self.cluster.workers() {
            assert!(
                self.cluster.exited(node).is_some(),
                "node {node} never exited"
            );
        }
        let process = &self.cluster.process;
        assert_eq!(process.stats.active(), 0, "clients counted after the exit");
        assert_eq!(
            process.notify_clients(),
            0,
            "/ws clients counted after the exit"
        );
        for socket in &self.cluster.sockets {
            checks::read(socket, checks::may_be_cut(socket));
        }
    }

    /// What each client read, for a person reading a failing input.
    fn report(&self) {
        for (i, socket) in self.cluster.sockets.iter().enumerate() {
            let received = checks::read(socket, checks::may_be_cut(socket));
            let statuses: Vec<u16> = received.responses.iter().map(|r| r.status).collect();
            let opcodes: Vec<u8> = received.frames.iter().map(|f| f.opcode).collect();
            eprintln!(
                "#{i} node {} key {}: sent {} B, read {} B, responses {statuses:?}, frames {opcodes:?}",
                socket.node,
                socket.key,
                socket.sent.len(),
                socket.received.len(),
            );
        }
        for node in 0..self.cluster.workers() {
            let exited = self.cluster.exited(node).map(|at| at - self.started);
            eprintln!("node {node} exited at {exited:?}");
        }
    }
}
