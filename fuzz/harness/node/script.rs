//! The fuzzer's bytes as a configuration and a script of operations (the
//! layout is in `node.rs`). Every byte string decodes: missing bytes read
//! as 0, so a short input is a short script, never a rejected one.

use std::time::Duration;

use wsnotify::config::{Config, LogFormat, LogLevel};

/// Operations per input: enough for a few dozen connections' lives, few
/// enough to keep an execution in the milliseconds.
const MAX_OPS: usize = 300;
/// Bytes one operation may send: several times the largest
/// `max_message_bytes` below, so messages go past it.
const MAX_SEND: usize = 24 * 1024;

pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { rest: data }
    }

    pub fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.rest.split_first() else {
            return 0;
        };
        self.rest = rest;
        b
    }

    /// The next byte says how many bytes follow (up to 255), taken as they
    /// are.
    pub fn short(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// Two bytes say how many follow (up to `MAX_SEND`): room for frames
    /// past `max_message_bytes` from one operation.
    pub fn long(&mut self) -> &'a [u8] {
        let n = usize::from(u16::from_be_bytes([self.byte(), self.byte()])) % MAX_SEND;
        self.take(n)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = rest;
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

fn pick<T: Copy>(table: &[T], byte: u8) -> T {
    table[usize::from(byte) % table.len()]
}

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// The configuration, a byte per setting (each picks from its table
/// modulo its length): workers, flags (bit 0 `/echo`, bit 1 an admin
/// token, bit 2 only the origin `http://fuzz` allowed), per-address limit, queue bound, message bound, history size,
/// total queue bound, connection limit, head timeout, ping, idle timeout,
/// periodic notification, history age, drain timeout. The limits are
/// small, so queues overflow, messages are too long, addresses hit their
/// limit and timers fire within seconds of fake time.
pub fn config(input: &mut Bytes) -> Config {
    let workers = 1 + usize::from(input.byte()) % 3;
    let flags = input.byte();
    Config {
        workers,
        enable_echo: flags & 1 != 0,
        admin_token: (flags & 2 != 0).then(|| "secret".to_string()),
        allowed_origins: (flags & 4 != 0).then(|| vec!["http://fuzz".to_string()]),
        max_connections_per_ip: pick(&[0, 0, 1, 2, 3], input.byte()),
        max_queue_bytes: pick(
            &[512, 1024, 2048, 4096, 8192, 16_384, 65_536, 1 << 20],
            input.byte(),
        ),
        max_message_bytes: pick(&[16, 125, 126, 1024, 4096, 65_536], input.byte()),
        history_size: pick(&[0, 1, 3, 100], input.byte()),
        max_total_queue_bytes: pick(
            &[1024, 4096, 16_384, 65_536, 1 << 20, 1 << 28],
            input.byte(),
        ),
        max_connections: pick(&[1, 2, 4, 10_000], input.byte()),
        header_timeout: pick(&[S / 2, S, 2 * S, 10 * S], input.byte()),
        ping_interval: pick(&[None, Some(S), Some(3 * S), Some(30 * S)], input.byte()),
        idle_timeout: pick(
            &[None, Some(2 * S), Some(5 * S), Some(75 * S)],
            input.byte(),
        ),
        notify_interval: pick(&[None, None, Some(S), Some(5 * S)], input.byte()),
        history_ttl: pick(&[S, 300 * S], input.byte()),
        drain_timeout: pick(&[Duration::ZERO, S, 5 * S, 30 * S, 120 * S], input.byte()),
        log_format: LogFormat::Text,
        log_level: LogLevel::Error,
        ..Config::default()
    }
}

/// The socket room a client gives the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Nothing,
    Bytes(usize),
    Everything,
}

impl Room {
    pub fn takes_any(self) -> bool {
        !matches!(self, Room::Nothing | Room::Bytes(0))
    }
}

/// A connection as the script names it: resolved at run time to one of the
/// connections open then.
pub type Pick = u8;

#[derive(Debug)]
pub enum Op<'a> {
    /// A new connection on `node` (modulo the workers) from address `from`.
    Accept { node: u8, from: u8 },
    /// Bytes as they are.
    Raw { conn: Pick, bytes: &'a [u8] },
    /// Frame records (`records.rs`), encoded as masked client frames.
    Frames { conn: Pick, records: &'a [u8] },
    /// A `/ws` client message: chat, ping, status, a direct message.
    Message {
        conn: Pick,
        kind: u8,
        arg: u8,
        text: &'a [u8],
    },
    /// An HTTP request (`client.rs` has the kinds and flags).
    Request {
        conn: Pick,
        kind: u8,
        flags: u8,
        arg: u8,
        body: &'a [u8],
    },
    /// The client shuts its write side.
    Fin { conn: Pick },
    /// The client's socket takes this much from now on.
    Room { conn: Pick, room: Room },
    /// The client's socket fails: on the next read (reported at once) or
    /// only on the server's next write.
    Fail { conn: Pick, on_read: bool },
    /// The clock moves on, every node's timers firing on the way.
    Clock { by: Duration },
    /// The first signal: the process drains.
    Drain,
    /// One loop turn of each node in the mask (0: every node).
    Turn { nodes: u8 },
    /// A quiet point: `/status` is asked how many clients there are.
    Status,
}

/// The script's operations, decoded one at a time.
pub fn ops<'a>(mut input: Bytes<'a>) -> impl Iterator<Item = Op<'a>> {
    std::iter::from_fn(move || (!input.is_empty()).then(|| op(&mut input))).take(MAX_OPS)
}

fn op<'a>(input: &mut Bytes<'a>) -> Op<'a> {
    match input.byte() % 16 {
        0 | 1 => Op::Accept {
            node: input.byte(),
            from: input.byte(),
        },
        2 => Op::Raw {
            conn: input.byte(),
            bytes: input.short(),
        },
        3 | 4 => Op::Frames {
            conn: input.byte(),
            records: input.long(),
        },
        5 => Op::Message {
            conn: input.byte(),
            kind: input.byte(),
            arg: input.byte(),
            text: input.short(),
        },
        6 | 7 => Op::Request {
            conn: input.byte(),
            kind: input.byte(),
            flags: input.byte(),
            arg: input.byte(),
            body: input.short(),
        },
        8 => Op::Fin { conn: input.byte() },
        9 => {
            let conn = input.byte();
            let b = input.byte();
            let room = match b % 4 {
                0 => Room::Nothing,
                1 => Room::Bytes(usize::from(b >> 2) * 7 + 1),
                2 => Room::Bytes(usize::from(b >> 2) * 509 + 1),
                _ => Room::Everything,
            };
            Op::Room { conn, room }
        }
        10 => {
            let conn = input.byte();
            Op::Fail {
                conn,
                on_read: input.byte() & 1 == 0,
            }
        }
        11 | 12 => {
            // Fine steps (25 ms) for what happens within a tick or a
            // linger, whole seconds for pings, idle clients and deadlines.
            let b = input.byte();
            let by = match b {
                0..=127 => u32::from(b) * 25 * MS,
                _ => u32::from(b - 128) * S,
            };
            Op::Clock { by }
        }
        13 => Op::Drain,
        14 => Op::Turn {
            nodes: input.byte(),
        },
        _ => Op::Status,
    }
}
