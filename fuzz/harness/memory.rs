//! One whole connection in memory: the server's own state machine
//! (`wsnotify::conn::Connection`) and application (`wsnotify::app`) driven
//! the way the worker drives them, with no socket and a fake clock.
//!
//! The input has the loopback target's layout (so its seeds serve both):
//! byte 0 picks the path (bits 0-2: `/ws`, `/echo`, `/health`, `/broadcast`
//! or raw) and flags: bit 3 records (the rest is frame records, encoded as
//! masked client frames), bit 4 the clock moves between chunks (0-15 ticks,
//! so head, ping and idle timers fire mid-stream), bit 5 a lazy reader
//! (nothing is read until everything is sent), bit 6 a reader that takes
//! 1-64 bytes per write (a slow consumer), bit 7 the head split like the
//! rest; bytes 1 and 2 seed the split points, byte 2 also picks the largest
//! chunk, and with bits 6 and 7 of byte 2 both set the client never sends
//! its FIN (the server's timers must end the connection).
//!
//! Invariants (a violation panics):
//! - nothing panics, and every call returns;
//! - time moves the connection on: once its deadline is handled, the next
//!   one is later, or the connection is over;
//! - the connection ends within bounded time after the input (its FIN, or
//!   the timers when there is none), with exactly one `Closed`, and no
//!   event after it;
//! - at most one `Left`, only after an upgrade, and the hub is empty after;
//! - nothing is queued after the write side is shut;
//! - a WebSocket client's queue is at most `max_queue` after a flush (past
//!   it the client is dropped);
//! - the output is what a client can read: complete HTTP/1.1 responses with
//!   known statuses, a body of their `Content-Length` (none for HEAD), none
//!   after one that says `Connection: close`; after a `101`, server frames
//!   (FIN, no mask, known opcode, control frames at most 125 bytes, text
//!   UTF-8, Close payloads of 0 or 2+ bytes with a code the server may
//!   send), nothing after a Close (checked by `wire.rs`, which the
//!   whole-worker target shares).

use std::net::{IpAddr, Ipv4Addr};

use wsnotify::app::hub::{Client, Endpoint, Here, Hub, Seqs};
use wsnotify::app::messages::{self, Action};
use wsnotify::app::protocol;
use wsnotify::app::publish;
use wsnotify::app::routes::{self, Route};
use wsnotify::app::snapshot::Snapshot;
use wsnotify::config::Config;
use wsnotify::conn::{Connection, Event, Settings, Stage, Tick, Verdict};
use wsnotify::proto::deflate::Inflater;
use wsnotify::proto::frame::Opcode;
use wsnotify::proto::http::{Response, Status};
use wsnotify::proto::negotiate::Agreement;

use crate::records::{encode_records, max_chunk, Path, Rng};
use crate::wire;

const SETTINGS: Settings = Settings {
    header: 10,
    idle: Some(50),
    ping: Some(20),
    linger: 30,
    max_message: 4096,
    max_queue: 8 * 1024,
};
/// Encoded records stop growing here: past `max_queue` many times over, so
/// a slow reader is dropped, and small enough to keep executions fast.
const MAX_STREAM: usize = 24 * 1024;
const MAX_CHUNKS: usize = 256;
/// Ticks the end may take: the longest timer chain is a head timeout, then
/// an idle timeout, then a linger.
const MAX_END_TICKS: Tick = 400;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Plan {
    path: Path,
    records: bool,
    clock_moves: bool,
    lazy: bool,
    trickle: bool,
    split_head: bool,
    no_fin: bool,
    seed: u64,
    max_chunk: usize,
}

impl Plan {
    fn from(data: &[u8]) -> (Plan, &[u8]) {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let flags = byte(0);
        let path = Path::from_flags(flags);
        let plan = Plan {
            path,
            records: flags & 0x08 != 0 && matches!(path, Path::Ws | Path::Echo),
            clock_moves: flags & 0x10 != 0,
            lazy: flags & 0x20 != 0,
            trickle: flags & 0x40 != 0,
            split_head: flags & 0x80 != 0,
            no_fin: byte(2) & 0xC0 == 0xC0,
            seed: (u64::from(byte(1)) << 8 | u64::from(byte(2))) + 1,
            max_chunk: max_chunk(byte(2)),
        };
        (plan, data.get(3..).unwrap_or(&[]))
    }

    fn stream(&self, payload: &[u8]) -> (Vec<u8>, usize) {
        let head = self.path.head(payload.len());
        let mut stream = head.into_bytes();
        let head_len = stream.len();
        if self.records {
            let mut rng = Rng(self.seed ^ 0x9E37_79B9_7F4A_7C15);
            stream.extend(encode_records(payload, MAX_STREAM, &mut rng));
        } else {
            stream.extend_from_slice(payload);
        }
        (stream, head_len)
    }

    /// The stream's chunks: the head whole (or split like the rest), then
    /// pseudo-random chunks of 1 to `max_chunk` bytes.
    fn pieces(&self, len: usize, head_len: usize) -> Vec<(usize, usize)> {
        let mut rng = Rng(self.seed);
        let mut pieces = Vec::new();
        let mut at = 0;
        if !self.split_head && head_len > 0 {
            pieces.push((0, head_len));
            at = head_len;
        }
        while at < len {
            let n = if pieces.len() >= MAX_CHUNKS {
                len - at
            } else {
                1 + (rng.next() as usize) % self.max_chunk.min(len - at)
            };
            pieces.push((at, at + n));
            at += n;
        }
        pieces
    }
}

/// The key of the one connection.
const CONN: wsnotify::ids::ConnKey = wsnotify::ids::ConnKey(0);

/// The worker's part, in memory.
struct Sim {
    conn: Connection<Client>,
    config: Config,
    hub: Hub,
    now: Tick,
    /// What the client has read.
    read: Vec<u8>,
    /// The reader takes this much per write (`None`: all).
    per_write: Option<usize>,
    reading: bool,
    upgraded: bool,
    left: u32,
    closed: bool,
    write_shut: bool,
    /// The connection ended with bytes unsent (a linger or keep-alive
    /// timeout while the client did not read): the output may stop short.
    cut: bool,
    next_id: u64,
    /// The worker's one decompressor.
    inflater: Inflater,
}

impl Seqs for Sim {
    fn seq_of(&self, key: wsnotify::ids::ConnKey) -> Option<u64> {
        (key == CONN)
            .then(|| self.conn.client().map(|client| client.seq))
            .flatten()
    }
}

pub fn run(data: &[u8]) {
    let (plan, payload) = Plan::from(data);
    let (stream, head_len) = plan.stream(payload);
    let mut rng = Rng(plan.seed ^ 0x5555);
    let config = Config {
        enable_echo: true,
        max_message_bytes: SETTINGS.max_message,
        max_queue_bytes: SETTINGS.max_queue,
        ..Config::default()
    };
    let mut sim = Sim {
        conn: Connection::new((PEER, 4000).into(), 0, &SETTINGS),
        config,
        hub: Hub::default(),
        now: 0,
        read: Vec::new(),
        per_write: plan.trickle.then(|| 1 + (rng.next() as usize) % 64),
        reading: !plan.lazy,
        upgraded: false,
        left: 0,
        closed: false,
        write_shut: false,
        cut: false,
        next_id: 0,
        inflater: Inflater::new(),
    };
    let mut pieces = plan.pieces(stream.len(), head_len).into_iter().peekable();
    while let Some(&(from, to)) = pieces.peek() {
        if sim.closed {
            break;
        }
        if sim.conn.wants_input().is_err() {
            if !sim.reading {
                // A reader that reads nothing while the server reads
                // nothing: the client's writes block until it reads.
                sim.reading = true;
            }
            sim.flush(pieces.len() > 0);
            if sim.conn.wants_input().is_err() {
                break;
            }
            continue;
        }
        pieces.next();
        sim.feed(&stream[from..to]);
        if plan.clock_moves {
            sim.advance((rng.next() % 16) as Tick);
        }
        if sim.reading {
            sim.flush(pieces.peek().is_some());
        }
    }
    // The client now reads everything, at full speed.
    sim.reading = true;
    sim.per_write = None;
    if !sim.closed && !plan.no_fin {
        let eof = sim.conn.peer_eof(sim.now, &SETTINGS);
        sim.step();
        if let Some(event) = eof {
            sim.on_event(event);
        }
    }
    let end = sim.now + MAX_END_TICKS;
    while !sim.closed {
        assert!(sim.now < end, "the connection did not end");
        sim.flush(false);
        if !sim.closed {
            // To the next deadline: the client only reads meanwhile.
            let next = sim.conn.deadline(&SETTINGS).saturating_sub(sim.now).max(1);
            sim.advance(next.min(end - sim.now));
        }
    }
    assert!(sim.hub.is_empty(), "a client is left in the hub");
    wire::read(&sim.read, sim.cut);
}

impl Sim {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            now_ms: 1_795_277_696_789 + u64::from(self.now) * 100,
            draining: false,
            drain_deadline_in_s: 0,
            active: u64::from(self.upgraded && self.left == 0),
            notify_clients: self.hub.len() as u64,
            connections_total: 1,
            messages_sent: 0,
            messages_received: 0,
            uptime_s: 1,
            redis: "disabled",
            peer_clients: 0,
            pid: 1,
            listener: "bound",
            listener_shared: false,
            memory: Default::default(),
        }
    }

    fn here(&self) -> Here<'_> {
        Here {
            instance: "fuzz",
            worker: 0,
            workers: 1,
            redis: false,
            peer: None,
            hub: &self.hub,
            seqs: self,
        }
    }

    /// Checks what every call into the connection must leave behind.
    fn step(&self) {
        assert!(!self.closed, "the connection was used after Closed");
        if self.write_shut {
            assert!(
                self.conn.out().is_empty(),
                "bytes queued after the write side was shut"
            );
        }
    }

    fn feed(&mut self, mut input: &[u8]) {
        loop {
            if self.closed {
                return;
            }
            let (used, event) = self
                .conn
                .receive(input, self.now, &SETTINGS, &mut self.inflater);
            self.step();
            assert!(used <= input.len());
            input = &input[used..];
            match event {
                Some(event) => self.on_event(event),
                None => return,
            }
        }
    }

    /// Moves the clock on by `ticks`, stopping at each deadline on the way
    /// (nothing happens between them).
    fn advance(&mut self, ticks: Tick) {
        let until = self.now + ticks;
        while !self.closed && self.now < until {
            self.now = self.conn.deadline(&SETTINGS).clamp(self.now + 1, until);
            if self.conn.deadline(&SETTINGS) <= self.now {
                let event = self.conn.on_deadline(self.now, &SETTINGS);
                self.step();
                if let Some(event) = event {
                    self.on_event(event);
                }
                if !self.closed {
                    assert!(
                        self.conn.deadline(&SETTINGS) > self.now,
                        "a handled deadline did not move on"
                    );
                }
            }
        }
    }

    /// The client reads what it takes; `more_input` says whether the
    /// client still has bytes on the way (a read would not find the socket
    /// quiet).
    fn flush(&mut self, more_input: bool) {
        if self.closed || !self.reading {
            return;
        }
        let mut reader = Reader {
            read: &mut self.read,
            left: self.per_write,
        };
        self.conn
            .flush_to(&mut reader)
            .expect("an in-memory write cannot fail");
        let verdict = self.conn.after_flush(self.now, &SETTINGS);
        self.step();
        match verdict {
            Some(Verdict::ResumeReading) => self.feed(&[]),
            Some(Verdict::ShutWrite) => self.write_shut = true,
            Some(Verdict::CheckQuiet) if !more_input => {
                if let Some(event) = self.conn.input_quiet() {
                    self.on_event(event);
                }
            }
            Some(Verdict::CheckQuiet) | None => {}
            Some(Verdict::Dropped(event)) => self.on_event(event),
        }
        if self.conn.stage() == Stage::Ws {
            assert!(
                self.conn.out().pending() <= SETTINGS.max_queue,
                "a client queue of {} bytes was not dropped",
                self.conn.out().pending()
            );
        }
    }

    fn on_event(&mut self, event: Event<Client>) {
        assert!(!self.closed, "an event after Closed");
        match event {
            Event::Request { request, body } => {
                let snapshot = self.snapshot();
                let route =
                    routes::route(&request, &body, PEER, &self.config, &self.here(), &snapshot);
                let response = match route {
                    Route::Respond(response) | Route::Refuse(_, response) => response,
                    Route::Metrics => Response::new(Status::OK, "text/plain", "metrics"),
                    Route::Channels => publish::channel_list(&[]),
                    Route::Upgrade {
                        endpoint,
                        accept,
                        deflate,
                        ..
                    } => {
                        return self.upgrade(endpoint, &accept, deflate);
                    }
                    Route::Publish(p) => {
                        let target = match publish::target(&p, &self.here()) {
                            Ok(target) => target,
                            Err(response) => return self.respond(&request, response),
                        };
                        self.next_id += 1;
                        let out =
                            publish::publish(p, target, self.next_id, &self.here(), &snapshot);
                        out.answer.unwrap_or_else(|| publish::published(false, 0))
                    }
                };
                self.respond(&request, response);
            }
            Event::Message(message) => {
                assert!(self.upgraded && self.left == 0, "a message outside /ws");
                let Some(from) = self.conn.client().copied() else {
                    panic!("a message from a connection that is no client");
                };
                let snapshot = self.snapshot();
                let now_ms = snapshot.now_ms;
                let action = messages::on_message(message, from, &self.here(), now_ms, || snapshot);
                match action {
                    Some(Action::Echo(opcode, data)) => self
                        .conn
                        .send_frame(opcode, &data)
                        .expect("a client takes messages"),
                    Some(
                        Action::Reply(json)
                        | Action::Reject { json, .. }
                        | Action::Broadcast(json)
                        | Action::Send { json, .. },
                    ) => self
                        .conn
                        .send_frame(Opcode::Text, json.as_bytes())
                        .expect("a client takes messages"),
                    Some(
                        Action::Mail { .. }
                        | Action::Forward { .. }
                        | Action::Subscribe { .. }
                        | Action::SubscribeUser { .. }
                        | Action::Unsubscribe { .. },
                    )
                    | None => {}
                    Some(Action::ChannelChat { json, .. }) => self
                        .conn
                        .send_frame(Opcode::Text, json.as_bytes())
                        .expect("a client takes messages"),
                }
                self.step();
            }
            Event::Left { client, .. } => {
                assert!(self.upgraded, "Left without an upgrade");
                self.left += 1;
                assert_eq!(self.left, 1, "Left twice");
                self.hub.leave(client.seq, CONN);
            }
            Event::Refused(_) | Event::Limit(_) => {}
            Event::ParkExpired(ticket) => {
                let answered = self.conn.answer_parked(
                    ticket,
                    publish::published(false, 0),
                    self.now,
                    &SETTINGS,
                );
                self.step();
                if let Ok(Some(event)) = answered {
                    self.on_event(event);
                }
            }
            Event::Closed(_) => {
                self.cut = !self.conn.out().is_empty();
                if let Some(client) = self.conn.client().copied() {
                    self.hub.leave(client.seq, CONN);
                }
                self.closed = true;
            }
        }
    }

    fn respond(&mut self, request: &wsnotify::proto::http::Request, response: Response) {
        let limit = self.conn.respond(request, response, self.now, &SETTINGS);
        self.step();
        if let Some(event) = limit {
            self.on_event(event);
        }
    }

    fn upgrade(&mut self, endpoint: Endpoint, accept: &str, deflate: Option<Agreement>) {
        let client = Client { endpoint, seq: 0 };
        let early = self
            .conn
            .upgrade(accept, deflate, client, self.now, &SETTINGS);
        self.step();
        self.upgraded = true;
        if endpoint == Endpoint::Notify {
            let seq = self.hub.join(CONN);
            if let Some(client) = self.conn.client_mut() {
                client.seq = seq;
            }
            let stream = protocol::Stream {
                epoch: "fuzz",
                offset: 0,
                resumed: None,
            };
            let welcome = protocol::welcome("fuzz-0-1", None, 0, stream, self.snapshot().now_ms);
            self.conn
                .send_frame(Opcode::Text, welcome.as_bytes())
                .expect("a client takes messages");
        }
        self.feed(&early);
    }
}

/// A client reading `left` bytes per write at most.
struct Reader<'a> {
    read: &'a mut Vec<u8>,
    left: Option<usize>,
}

impl std::io::Write for Reader<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.left {
            None => buf.len(),
            Some(0) => return Err(std::io::ErrorKind::WouldBlock.into()),
            Some(left) => {
                let n = buf.len().min(*left);
                *left -= n;
                n
            }
        };
        self.read.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
