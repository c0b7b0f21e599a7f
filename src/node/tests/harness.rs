//! Nodes driven in memory, the way the shell drives them, with a fake clock
//! and sockets that are byte buffers, as quinn's tests drive a pair of
//! endpoints. Several nodes share one `Process` (workers of one process),
//! and their mail wakes each other as the shell's wakers would.
//!
//! A test opens connections (`connect`, `ws`), writes what a client sends,
//! lets the nodes work (`run`), moves the clock (`advance`) and reads what
//! each client received (`frames`, `json`, `response`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::app::hub::{Client, Endpoint};
use crate::config::{Config, LogFormat, LogLevel};
use crate::conn::{Settings, Stage};
use crate::ids::ConnKey;
use crate::node::conns::Conns;
use crate::node::redis::Side;
use crate::node::{Input, MayRead, Node, Now, Output, Process, Transmit};
use crate::proto::frame::masked;
use crate::rand::Rng;

/// Reads per readiness before other connections get their turn, as in the
/// shell.
const READS_PER_EVENT: usize = 4;
/// What one read takes from a socket, as the shell's scratch buffer.
const READ_BYTES: usize = 64 * 1024;

/// A connection as the test sees it: the node it is on and its key there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub node: usize,
    pub key: ConnKey,
}

/// One socket: what the client sent and the server has not read, what the
/// server wrote and the client has not read, and how much more the kernel
/// would take.
#[derive(Debug, Default)]
pub struct Socket {
    pub inbox: VecDeque<u8>,
    pub outbox: Vec<u8>,
    /// Bytes the socket still takes before a write would block.
    pub room: usize,
    pub client_fin: bool,
    pub write_shut: bool,
    pub closed: bool,
    /// Writes fail (the peer reset the connection).
    pub broken: bool,
}

/// One node's sockets, as its `Transmit`.
#[derive(Debug, Default)]
pub struct Sockets {
    pub by_key: HashMap<ConnKey, Socket>,
    /// Every write, in order: which connection, how many bytes.
    pub sends: Vec<(ConnKey, usize)>,
    /// What was written to the Redis connections (subscriber, publisher).
    pub redis: [Vec<u8>; 2],
}

impl Sockets {
    /// A socket for `key` that takes `room` bytes before it would block.
    pub fn open(&mut self, key: ConnKey, room: usize) {
        let socket = Socket {
            room,
            ..Socket::default()
        };
        self.by_key.insert(key, socket);
    }

    /// What `key`'s client has received, taken.
    pub fn take(&mut self, key: ConnKey) -> Vec<u8> {
        std::mem::take(&mut self.by_key.get_mut(&key).expect("open").outbox)
    }
}

impl Transmit for Sockets {
    fn send(&mut self, key: ConnKey, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(socket) = self.by_key.get_mut(&key) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        assert!(!socket.closed, "a write to closed connection {key}");
        assert!(!socket.write_shut, "a write after the write side was shut");
        if socket.broken {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if socket.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for buf in bufs {
            let take = buf.len().min(socket.room);
            socket.outbox.extend_from_slice(&buf[..take]);
            socket.room -= take;
            n += take;
            if take < buf.len() {
                break;
            }
        }
        self.sends.push((key, n));
        Ok(n)
    }

    fn send_redis(&mut self, side: Side, bytes: &[u8]) -> io::Result<usize> {
        self.redis[side.index()].extend_from_slice(bytes);
        Ok(bytes.len())
    }
}

pub struct Harness {
    pub process: Arc<Process>,
    pub nodes: Vec<Node>,
    pub sockets: Vec<Sockets>,
    pub now: Now,
    /// Connections to read again, as the shell's `again`.
    again: Vec<Peer>,
    /// Nodes whose mailbox has mail for them.
    woken: Vec<usize>,
    /// Nodes that asked to stop accepting.
    pub stopped_accepting: Vec<bool>,
    /// What each node asked of its Redis sockets, in order.
    pub redis_asked: Vec<Vec<crate::node::redis::LinkOutput>>,
    pub exited: Vec<bool>,
    /// How often a node asked for the hand-over link to be served.
    pub link_wakes: usize,
    next_port: u16,
}

/// A configuration for tests: quiet (no periodic notification, no ping,
/// no idle timeout) unless a test says otherwise.
pub fn config() -> Config {
    Config {
        notify_interval: None,
        ping_interval: None,
        idle_timeout: None,
        ..Config::default()
    }
}

/// 2026-11-21T16:14:56.789Z
const WALL_MS: u64 = 1_795_277_696_789;

impl Harness {
    pub fn new(config: Config) -> Harness {
        Harness::seeded(config, 1)
    }

    /// A harness whose process draws its instance name and epoch from
    /// `seed`: two processes on one host (a hand-over) need two.
    pub fn seeded(config: Config, seed: u64) -> Harness {
        // What a test is about is in its assertions; a failing one can
        // raise this to see the node's log.
        crate::obs::log::init(LogFormat::Text, LogLevel::Error);
        let workers = config.workers;
        let start = Now {
            at: Instant::now(),
            wall_ms: WALL_MS,
        };
        let process = Arc::new(Process::new(config, start.at, &mut Rng::seeded(seed)));
        let nodes = (0..workers)
            .map(|id| Node::new(id, Arc::clone(&process), start, 100 + id as u64))
            .collect();
        Harness {
            process,
            nodes,
            sockets: (0..workers).map(|_| Sockets::default()).collect(),
            now: start,
            again: Vec::new(),
            woken: Vec::new(),
            stopped_accepting: vec![false; workers],
            redis_asked: (0..workers).map(|_| Vec::new()).collect(),
            exited: vec![false; workers],
            link_wakes: 0,
            next_port: 40_000,
        }
    }

    /// A harness with the quiet test configuration and `workers` workers.
    pub fn workers(workers: usize) -> Harness {
        Harness::new(Config {
            workers,
            ..config()
        })
    }

    /// A connection accepted by `node` from 127.0.0.1.
    pub fn accept(&mut self, node: usize) -> Peer {
        self.accept_from(node, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    pub fn accept_from(&mut self, node: usize, ip: IpAddr) -> Peer {
        self.next_port += 1;
        let peer = SocketAddr::new(ip, self.next_port);
        let key = self.nodes[node].accept(peer, self.now);
        let socket = Socket {
            room: usize::MAX,
            ..Socket::default()
        };
        let previous = self.sockets[node].by_key.insert(key, socket);
        assert!(
            previous.is_none_or(|s| s.closed),
            "key {key} given out while its connection was open"
        );
        let peer = Peer { node, key };
        self.outputs(node);
        peer
    }

    /// The client writes `bytes`; the node reads them as the shell would.
    pub fn send(&mut self, peer: Peer, bytes: &[u8]) {
        self.socket(peer).inbox.extend(bytes);
        self.read(peer);
    }

    /// The client sends a masked text frame.
    pub fn text(&mut self, peer: Peer, text: &str) {
        self.send(peer, &masked(0x81, text.as_bytes(), [7, 7, 7, 7]));
    }

    /// The client sends a masked frame with this first byte.
    pub fn frame(&mut self, peer: Peer, first: u8, payload: &[u8]) {
        self.send(peer, &masked(first, payload, [1, 2, 3, 4]));
    }

    /// The client closes its side.
    pub fn fin(&mut self, peer: Peer) {
        self.socket(peer).client_fin = true;
        self.read(peer);
    }

    /// How much more the socket takes before a write would block; with
    /// room again, the shell reports it writable.
    pub fn room(&mut self, peer: Peer, room: usize) {
        self.socket(peer).room = room;
        if room > 0 {
            self.nodes[peer.node].handle(Input::Writable(peer.key), self.now);
            self.outputs(peer.node);
        }
    }

    pub fn socket(&mut self, peer: Peer) -> &mut Socket {
        self.sockets[peer.node]
            .by_key
            .get_mut(&peer.key)
            .expect("a socket for the connection")
    }

    /// The phase of a connection, or `None` once the node let it go.
    pub fn stage(&self, peer: Peer) -> Option<Stage> {
        self.nodes[peer.node].stage(peer.key)
    }

    pub fn is_closed(&self, peer: Peer) -> bool {
        self.sockets[peer.node]
            .by_key
            .get(&peer.key)
            .is_none_or(|s| s.closed)
    }

    /// What the shell does when a socket is readable: a few reads, then
    /// the others' turn.
    fn read(&mut self, peer: Peer) {
        let node = peer.node;
        let Some(stage) = self.nodes[node].stage(peer.key) else {
            return;
        };
        if stage == Stage::Http {
            let input = Input::Received {
                key: peer.key,
                bytes: &[],
            };
            self.nodes[node].handle(input, self.now);
            self.outputs(node);
        }
        for _ in 0..READS_PER_EVENT {
            match self.nodes[node].may_read(peer.key, stage) {
                MayRead::Now => {}
                MayRead::Later => return self.again.push(peer),
                MayRead::No => return,
            }
            let Some(socket) = self.sockets[node].by_key.get_mut(&peer.key) else {
                return;
            };
            if socket.inbox.is_empty() {
                let input = if socket.client_fin {
                    Input::Eof(peer.key)
                } else {
                    Input::Quiet(peer.key)
                };
                self.nodes[node].handle(input, self.now);
                self.outputs(node);
                return;
            }
            let n = socket.inbox.len().min(READ_BYTES);
            let bytes: Vec<u8> = socket.inbox.drain(..n).collect();
            let input = Input::Received {
                key: peer.key,
                bytes: &bytes,
            };
            self.nodes[node].handle(input, self.now);
            self.outputs(node);
        }
        self.again.push(peer);
    }

    /// Carries out what a node asks, as the shell does.
    fn outputs(&mut self, node: usize) {
        while let Some(output) = self.nodes[node].poll_output() {
            match output {
                Output::Close(key) => {
                    if let Some(socket) = self.sockets[node].by_key.get_mut(&key) {
                        socket.closed = true;
                    }
                }
                Output::ShutWrite(key) => {
                    if let Some(socket) = self.sockets[node].by_key.get_mut(&key) {
                        socket.write_shut = true;
                    }
                }
                Output::Writable { .. } => {}
                Output::Redis(asked) => self.redis_asked[node].push(asked),
                Output::ReadAgain(key) => self.again.push(Peer { node, key }),
                Output::Wake(worker) => self.woken.push(worker),
                Output::WakeLink => self.link_wakes += 1,
                Output::StopAccepting => self.stopped_accepting[node] = true,
                Output::Exit => {
                    // The shell's loop ends, and its sockets close with it.
                    self.exited[node] = true;
                    for socket in self.sockets[node].by_key.values_mut() {
                        socket.closed = true;
                    }
                }
            }
        }
    }

    /// One loop turn of every node: mail, connections to read again,
    /// timers, writes. Repeats until nothing is left to do now.
    pub fn run(&mut self) {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.run_nodes(&all);
    }

    /// Like `run`, but only `nodes` take turns: the others are busy (their
    /// wakes and reads wait until they run again).
    pub fn run_nodes(&mut self, nodes: &[usize]) {
        for _ in 0..1_000 {
            if self.turn_nodes(nodes) {
                return;
            }
        }
        panic!("the nodes never settled");
    }

    /// One loop turn of every node; returns whether nothing is left to do
    /// now (no read, wake or due timer is pending).
    pub fn turn(&mut self) -> bool {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.turn_nodes(&all)
    }

    /// One loop turn of `nodes`; returns whether nothing is left for them
    /// to do now.
    fn turn_nodes(&mut self, nodes: &[usize]) -> bool {
        let runs = |peer: &Peer| nodes.contains(&peer.node);
        let (again, later): (Vec<Peer>, Vec<Peer>) =
            std::mem::take(&mut self.again).into_iter().partition(runs);
        let (woken, asleep): (Vec<usize>, Vec<usize>) = std::mem::take(&mut self.woken)
            .into_iter()
            .partition(|node| nodes.contains(node));
        self.again = later;
        self.woken = asleep;
        for node in woken {
            self.nodes[node].handle(Input::Woken, self.now);
            self.outputs(node);
        }
        for peer in again {
            self.read(peer);
        }
        for &node in nodes {
            if self.exited[node] {
                continue;
            }
            self.nodes[node].handle_timeout(self.now);
            self.outputs(node);
            self.nodes[node].transmit(&mut self.sockets[node], self.now);
            self.outputs(node);
        }
        let immediate = nodes.iter().any(|&node| {
            !self.exited[node]
                && self.nodes[node]
                    .poll_timeout()
                    .is_some_and(|at| at <= self.now.at)
        });
        let pending = self.again.iter().any(runs) || self.woken.iter().any(|n| nodes.contains(n));
        !pending && !immediate
    }

    /// Moves the clock on by `by`, in steps no longer than a node asks to
    /// sleep, running every turn on the way.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now.at + by;
        loop {
            self.run();
            let next = self
                .nodes
                .iter()
                .zip(&self.exited)
                .filter(|(_, exited)| !**exited)
                .filter_map(|(node, _)| node.poll_timeout())
                .filter(|at| *at > self.now.at)
                .min()
                .unwrap_or(end)
                .min(end);
            let step = next - self.now.at;
            self.now = Now {
                at: next,
                wall_ms: self.now.wall_ms + step.as_millis() as u64,
            };
            if next >= end {
                self.run();
                return;
            }
        }
    }

    /// Something happened on one of `node`'s Redis sockets.
    pub fn redis(&mut self, node: usize, input: crate::node::redis::LinkInput<'_>) {
        self.nodes[node].handle(Input::Redis(input), self.now);
        self.outputs(node);
        self.run();
    }

    /// Mail waits for `node`, posted from outside the nodes (the link of a
    /// hand-over).
    pub fn wake(&mut self, node: usize) {
        self.woken.push(node);
    }

    /// The first signal: every worker drains until `timeout` from now.
    pub fn drain(&mut self, timeout: Duration) {
        self.process.start_drain(self.now.at + timeout);
        self.woken.extend(0..self.nodes.len());
        self.run();
    }

    /// What the client has received and not read yet, taken.
    pub fn take(&mut self, peer: Peer) -> Vec<u8> {
        std::mem::take(&mut self.socket(peer).outbox)
    }

    /// A new connection that sends `request` (a whole HTTP request) and
    /// gets its answer.
    pub fn http(&mut self, node: usize, request: &str) -> (Peer, Response) {
        let peer = self.accept(node);
        self.send(peer, request.as_bytes());
        self.run();
        let response = self.response(peer).expect("an answer");
        (peer, response)
    }

    /// `GET path` on a new connection.
    pub fn get(&mut self, node: usize, path: &str) -> Response {
        self.http(node, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"))
            .1
    }

    /// `POST path` with `body` on a new connection.
    pub fn post(&mut self, node: usize, path: &str, body: &str) -> (Peer, Response) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.http(node, &request)
    }

    /// The next complete HTTP response the client has received, taken.
    pub fn response(&mut self, peer: Peer) -> Option<Response> {
        let outbox = &mut self.socket(peer).outbox;
        let (response, used) = Response::parse(outbox)?;
        outbox.drain(..used);
        Some(response)
    }

    /// A WebSocket client of `path` on `node`, upgraded and welcomed (on
    /// `/ws`); returns it and its welcome.
    pub fn ws(&mut self, node: usize, path: &str) -> (Peer, Value) {
        let peer = self.accept(node);
        self.send(peer, upgrade(path).as_bytes());
        self.run();
        let response = self.response(peer).expect("an answer to the upgrade");
        assert_eq!(response.status, 101, "{response:?}");
        if path.starts_with("/echo") {
            return (peer, Value::Null);
        }
        let outbox = &mut self.socket(peer).outbox;
        let (frame, used) = Frame::parse(outbox).expect("a welcome");
        outbox.drain(..used);
        let welcome: Value = serde_json::from_slice(&frame.payload).expect("JSON");
        assert_eq!(welcome["type"], "welcome");
        (peer, welcome)
    }

    /// A `/ws` client of `node`.
    pub fn client(&mut self, node: usize) -> Peer {
        self.ws(node, "/ws").0
    }

    /// Every whole frame the client has received, taken.
    pub fn frames(&mut self, peer: Peer) -> Vec<Frame> {
        let outbox = &mut self.socket(peer).outbox;
        let mut frames = Vec::new();
        let mut at = 0;
        while let Some((frame, used)) = Frame::parse(&outbox[at..]) {
            frames.push(frame);
            at += used;
        }
        outbox.drain(..at);
        frames
    }

    /// The text frames the client has received, as JSON, taken (other
    /// frames are dropped).
    pub fn json(&mut self, peer: Peer) -> Vec<Value> {
        self.frames(peer)
            .into_iter()
            .filter(|f| f.opcode == 1)
            .map(|f| serde_json::from_slice(&f.payload).expect("JSON text"))
            .collect()
    }

    /// The `type`s of the messages the client has received, taken.
    pub fn types(&mut self, peer: Peer) -> Vec<String> {
        self.json(peer)
            .into_iter()
            .map(|v| v["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }
}

/// Timeouts in ticks and limits for a component's tests: a head timeout of
/// 10 ticks, a linger of 30, no ping and no idle timer.
pub fn settings(max_queue: usize) -> Settings {
    Settings {
        header: 10,
        idle: None,
        ping: None,
        linger: 30,
        max_message: 1024,
        max_queue,
    }
}

/// `n` `/ws` clients that have joined a fresh table, their 101s written,
/// each socket taking `room` more bytes.
pub fn joined(settings: Settings, n: u64, room: usize) -> (Conns, Sockets, Vec<ConnKey>) {
    let mut conns = Conns::new(settings, 0);
    let mut sockets = Sockets::default();
    let mut keys = Vec::new();
    for seq in 1..=n {
        let key = conns.open(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), 0);
        let client = Client {
            endpoint: Endpoint::Notify,
            seq,
        };
        conns.drive(key, 0, |c, now, s| c.upgrade("x", None, client, now, s));
        sockets.open(key, usize::MAX);
        conns.flush(key, 0, &mut sockets);
        sockets.take(key);
        sockets.by_key.get_mut(&key).expect("open").room = room;
        keys.push(key);
    }
    conns.take_dirty();
    sockets.sends.clear();
    (conns, sockets, keys)
}

/// The upgrade request a browser would send for `path`.
pub fn upgrade(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A server frame as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: with permessage-deflate, a compressed message.
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    fn parse(bytes: &[u8]) -> Option<(Frame, usize)> {
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        assert_eq!(second & 0x80, 0, "a server frame is never masked");
        let (len, at) = match second & 0x7F {
            126 => (
                u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize,
                4,
            ),
            127 => {
                let raw: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
                (u64::from_be_bytes(raw) as usize, 10)
            }
            n => (n as usize, 2),
        };
        let payload = bytes.get(at..at + len)?.to_vec();
        let frame = Frame {
            fin: first & 0x80 != 0,
            rsv1: first & 0x40 != 0,
            opcode: first & 0x0F,
            payload,
        };
        Some((frame, at + len))
    }

    /// The code of a Close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// An HTTP response as the client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    fn parse(bytes: &[u8]) -> Option<(Response, usize)> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8(bytes[..end].to_vec()).expect("a text head");
        let status = head.get(9..12)?.parse().ok()?;
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let body = bytes.get(end..end + length)?.to_vec();
        Some((Response { status, head, body }, end + length))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, value) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}
