//! Redis Pub/Sub, driven by the worker's own event loop: one subscriber and
//! one publisher connection per worker, non-blocking, reconnecting with
//! exponential backoff and jitter. Every worker receives every message from
//! the channel and delivers it to its own clients, so nothing crosses
//! threads on the way in.

use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::config::RedisUrl;
use crate::log;
use crate::proto::resp::{self, Reply};
use crate::rand::Rng;

/// Published bytes waiting for a slow Redis beyond this are dropped rather
/// than buffered without bound.
const MAX_PENDING: usize = 4 * 1024 * 1024;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Subscriber,
    Publisher,
}

#[derive(Debug)]
enum State {
    Down {
        retry_at: Instant,
    },
    Connecting,
    /// Connected, waiting for the handshake replies.
    Handshake,
    Ready,
}

#[derive(Debug)]
struct Side {
    role: Role,
    token: Token,
    state: State,
    stream: Option<TcpStream>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    attempt: u32,
    /// Handshake replies (AUTH, SELECT, SUBSCRIBE) still to come.
    awaiting: usize,
}

/// What the link reports to the worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A message from the channel.
    Message(Vec<u8>),
    /// A side became ready (true) or was lost (false).
    Ready(bool),
}

#[derive(Debug)]
pub struct RedisLink {
    url: RedisUrl,
    channel: String,
    sides: [Side; 2],
    rng: Rng,
}

impl RedisLink {
    pub fn new(
        url: RedisUrl,
        channel: String,
        sub_token: Token,
        pub_token: Token,
        now: Instant,
    ) -> RedisLink {
        let side = |role, token| Side {
            role,
            token,
            state: State::Down { retry_at: now },
            stream: None,
            inbuf: Vec::new(),
            out: Vec::new(),
            attempt: 0,
            awaiting: 0,
        };
        RedisLink {
            url,
            channel,
            sides: [
                side(Role::Subscriber, sub_token),
                side(Role::Publisher, pub_token),
            ],
            rng: Rng::from_os(),
        }
    }

    pub fn owns(&self, token: Token) -> bool {
        self.sides.iter().any(|s| s.token == token)
    }

    /// When a side is due for a reconnect attempt.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sides
            .iter()
            .filter_map(|s| match s.state {
                State::Down { retry_at } => Some(retry_at),
                _ => None,
            })
            .min()
    }

    /// Starts the connection attempts that are due.
    pub fn on_timer(&mut self, now: Instant, registry: &Registry, events: &mut Vec<Event>) {
        for i in 0..self.sides.len() {
            if matches!(self.sides[i].state, State::Down { retry_at } if now >= retry_at) {
                if let Err(e) = self.connect(i, registry) {
                    self.fail(i, now, registry, &format!("cannot connect: {e}"), events);
                }
            }
        }
    }

    fn connect(&mut self, i: usize, registry: &Registry) -> io::Result<()> {
        let addr = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "no address for the Redis host")
            })?;
        let mut stream = TcpStream::connect(addr)?;
        let side = &mut self.sides[i];
        registry.register(
            &mut stream,
            side.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let mut handshake = Vec::new();
        let mut awaiting = 0;
        if let Some(password) = &self.url.password {
            handshake.extend(resp::command(&[b"AUTH", password.as_bytes()]));
            awaiting += 1;
        }
        if self.url.db != 0 {
            handshake.extend(resp::command(&[
                b"SELECT",
                self.url.db.to_string().as_bytes(),
            ]));
            awaiting += 1;
        }
        if side.role == Role::Subscriber {
            handshake.extend(resp::command(&[b"SUBSCRIBE", self.channel.as_bytes()]));
            awaiting += 1;
        }
        // Anything published while connecting follows the handshake.
        handshake.append(&mut side.out);
        side.out = handshake;
        side.inbuf.clear();
        side.stream = Some(stream);
        side.state = State::Connecting;
        side.awaiting = awaiting;
        Ok(())
    }

    /// Handles readiness on one of the link's sockets.
    pub fn on_ready(
        &mut self,
        token: Token,
        now: Instant,
        registry: &Registry,
        events: &mut Vec<Event>,
    ) {
        let Some(i) = self.sides.iter().position(|s| s.token == token) else {
            return;
        };
        if let Err(why) = self.pump(i, events) {
            self.fail(i, now, registry, &why, events);
        }
    }

    fn pump(&mut self, i: usize, events: &mut Vec<Event>) -> Result<(), String> {
        let side = &mut self.sides[i];
        let Some(mut stream) = side.stream.take() else {
            return Ok(());
        };
        let result = side.pump(&mut stream, events);
        side.stream = Some(stream);
        result
    }

    fn fail(
        &mut self,
        i: usize,
        now: Instant,
        registry: &Registry,
        why: &str,
        events: &mut Vec<Event>,
    ) {
        let jitter = self.rng.below(1000);
        let side = &mut self.sides[i];
        let was_ready = matches!(side.state, State::Ready);
        if let Some(mut stream) = side.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        let exp = BACKOFF_BASE
            .saturating_mul(1 << side.attempt.min(6))
            .min(BACKOFF_MAX);
        // Full jitter on the upper half: between 50 % and 100 % of the step.
        let delay = exp / 2 + exp.mul_f64(jitter as f64 / 2000.0);
        side.attempt = side.attempt.saturating_add(1);
        side.state = State::Down {
            retry_at: now + delay,
        };
        side.inbuf = Vec::new();
        if side.role == Role::Subscriber {
            side.out.clear();
        }
        if was_ready {
            events.push(Event::Ready(false));
        }
        log!(
            Warn,
            "redis connection lost; retrying",
            role = format!("{:?}", side.role).to_lowercase(),
            reason = why,
            retry_in_ms = delay.as_millis()
        );
    }

    /// Queues a PUBLISH; returns false when Redis is away (or too slow) and
    /// the message is dropped: Pub/Sub keeps nothing for later.
    pub fn publish(
        &mut self,
        payload: &[u8],
        events: &mut Vec<Event>,
        now: Instant,
        registry: &Registry,
    ) -> bool {
        let side = &mut self.sides[1];
        if matches!(side.state, State::Down { .. }) || side.out.len() > MAX_PENDING {
            return false;
        }
        side.out.extend(resp::command(&[
            b"PUBLISH",
            self.channel.as_bytes(),
            payload,
        ]));
        if matches!(side.state, State::Ready) {
            if let Err(why) = self.pump(1, events) {
                self.fail(1, now, registry, &why, events);
            }
        }
        true
    }
}

impl Side {
    /// Connects, writes what is queued, reads and handles every reply.
    fn pump(&mut self, stream: &mut TcpStream, events: &mut Vec<Event>) -> Result<(), String> {
        let side = self;
        if let Some(e) = stream.take_error().map_err(|e| e.to_string())? {
            return Err(format!("connection failed: {e}"));
        }
        if matches!(side.state, State::Connecting) {
            match stream.peer_addr() {
                Ok(_) => side.state = State::Handshake,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("connection failed: {e}")),
            }
            side.handshake_step(events);
        }
        while !side.out.is_empty() {
            match stream.write(&side.out) {
                Ok(0) => return Err("connection closed".into()),
                Ok(n) => {
                    side.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write failed: {e}")),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed by Redis".into()),
                Ok(n) => side.inbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
        let mut used = 0;
        while let Some((reply, n)) =
            resp::parse(&side.inbuf[used..]).map_err(|e| format!("bad reply: {}", e.0))?
        {
            used += n;
            side.on_reply(reply, events)?;
        }
        side.inbuf.drain(..used);
        Ok(())
    }

    /// Counts one handshake reply; the side is ready when none are left.
    fn handshake_step(&mut self, events: &mut Vec<Event>) {
        if matches!(self.state, State::Handshake) && self.awaiting == 0 {
            self.state = State::Ready;
            self.attempt = 0;
            events.push(Event::Ready(true));
            log!(
                Info,
                "redis connected",
                role = format!("{:?}", self.role).to_lowercase()
            );
        }
    }

    fn on_reply(&mut self, reply: Reply, events: &mut Vec<Event>) -> Result<(), String> {
        match (&self.state, reply) {
            (State::Handshake, Reply::Error(e)) => Err(format!("Redis refused the handshake: {e}")),
            (State::Handshake, _) => {
                self.awaiting = self.awaiting.saturating_sub(1);
                self.handshake_step(events);
                Ok(())
            }
            (State::Ready, Reply::Array(Some(items))) if self.role == Role::Subscriber => {
                if let [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(payload))] = items.as_slice() {
                    if kind == b"message" {
                        events.push(Event::Message(payload.clone()));
                    }
                }
                Ok(())
            }
            (State::Ready, Reply::Error(e)) => {
                log!(Warn, "redis error reply", error = e);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
