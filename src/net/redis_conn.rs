//! One Redis connection of a link: its states, its handshake (AUTH,
//! SELECT, SUBSCRIBE or the stream position) and the replies it reads. When to connect, and what a
//! failure leads to, is the link's business (`redis.rs`).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use mio::Token;

use super::redis_queue::OutQueue;
use super::redis_resolve::Lookup;
use super::redis_stream::parse_position;
use crate::log;
use crate::proto::resp::{self, Reply};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Subscriber,
    Publisher,
}

#[derive(Debug)]
pub(super) enum State {
    Down {
        retry_at: Instant,
    },
    /// The host name is being looked up on a helper thread.
    Resolving {
        lookup: Lookup,
        since: Instant,
    },
    /// A non-blocking connect is under way; `rest` are the addresses to
    /// try if this one fails.
    Connecting {
        deadline: Instant,
        rest: Vec<SocketAddr>,
    },
    /// Connected, waiting for the handshake replies.
    Handshake {
        deadline: Instant,
    },
    Ready,
}

#[derive(Debug)]
pub(super) struct Side {
    pub(super) role: Role,
    pub(super) token: Token,
    pub(super) state: State,
    pub(super) stream: Option<TcpStream>,
    pub(super) inbuf: Vec<u8>,
    pub(super) out: OutQueue,
    pub(super) attempt: u32,
    /// The handshake commands (AUTH, SELECT, SUBSCRIBE) whose replies are
    /// still to come, in order.
    pub(super) awaiting: VecDeque<&'static str>,
    /// When each command still unanswered once ready was queued (the
    /// publisher's publications and PINGs, the subscriber's PINGs; Redis
    /// answers in order): the oldest tells a Redis that stopped answering
    /// from one that is busy.
    pub(super) unanswered: VecDeque<Instant>,
    /// When bytes last came from Redis (see `redis_liveness`).
    pub(super) last_heard: Instant,
}

/// Why a connection attempt or connection ended.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) why: String,
    /// Redis refused the credentials: retrying soon cannot help.
    pub(super) credentials: bool,
}

impl From<String> for Failure {
    fn from(why: String) -> Failure {
        Failure {
            why,
            credentials: false,
        }
    }
}

/// What the link reports to the worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A message from the channel.
    Message(Vec<u8>),
    /// A side became ready (true) or was lost (false).
    Ready(bool),
    /// Where the broadcast stream stands, as Redis (its sequencer) says
    /// when the publishing side connects.
    Position { epoch: String, offset: u64 },
}

impl Side {
    pub(super) fn new(role: Role, token: Token, now: Instant) -> Side {
        Side {
            role,
            token,
            state: State::Down { retry_at: now },
            stream: None,
            inbuf: Vec::new(),
            out: OutQueue::default(),
            attempt: 0,
            awaiting: VecDeque::new(),
            unanswered: VecDeque::new(),
            last_heard: now,
        }
    }

    /// Completes the connect, writes what is queued, reads and handles
    /// every reply.
    pub(super) fn pump(
        &mut self,
        stream: &mut TcpStream,
        now: Instant,
        events: &mut Vec<Event>,
    ) -> Result<(), Failure> {
        if let Some(e) = stream.take_error().map_err(|e| e.to_string())? {
            return Err(format!("connection failed: {e}").into());
        }
        if let State::Connecting { deadline, .. } = self.state {
            // Writable without an error: connected, unless the socket
            // says it is not yet.
            match stream.peer_addr() {
                Ok(_) => self.state = State::Handshake { deadline },
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("connection failed: {e}").into()),
            }
            self.handshake_step(events);
        }
        while self.out.pending() > 0 {
            match stream.write(self.out.unsent()) {
                Ok(0) => return Err(String::from("connection closed").into()),
                Ok(n) => self.out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write failed: {e}").into()),
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err(String::from("connection closed by Redis").into()),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    self.last_heard = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read failed: {e}").into()),
            }
        }
        let mut used = 0;
        while let Some((reply, n)) =
            resp::parse(&self.inbuf[used..]).map_err(|e| format!("bad reply: {}", e.0))?
        {
            used += n;
            self.on_reply(reply, events)?;
        }
        self.inbuf.drain(..used);
        Ok(())
    }

    /// The side is ready once every handshake reply is in.
    fn handshake_step(&mut self, events: &mut Vec<Event>) {
        if matches!(self.state, State::Handshake { .. }) && self.awaiting.is_empty() {
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

    fn on_reply(&mut self, reply: Reply, events: &mut Vec<Event>) -> Result<(), Failure> {
        match (&self.state, reply) {
            (State::Handshake { .. }, Reply::Error(e)) => {
                let command = self.awaiting.pop_front().unwrap_or("?");
                let credentials =
                    command == "AUTH" || e.starts_with("NOAUTH") || e.starts_with("WRONGPASS");
                let hint = if credentials {
                    " (check the user and password in --redis)"
                } else {
                    ""
                };
                Err(Failure {
                    why: format!("Redis refused the handshake ({command}): {e}{hint}"),
                    credentials,
                })
            }
            (State::Handshake { .. }, reply) => {
                if self.awaiting.pop_front() == Some("POSITION") {
                    let (epoch, offset) = parse_position(&reply)
                        .ok_or_else(|| String::from("unexpected reply to the stream script"))?;
                    events.push(Event::Position { epoch, offset });
                }
                self.handshake_step(events);
                Ok(())
            }
            (State::Ready, Reply::Array(Some(items))) if self.role == Role::Subscriber => {
                match items.as_slice() {
                    [Reply::Bulk(Some(kind)), _, Reply::Bulk(Some(payload))]
                        if kind == b"message" =>
                    {
                        events.push(Event::Message(payload.clone()));
                    }
                    // A subscribed connection answers PING with `pong`.
                    [Reply::Bulk(Some(kind)), _] if kind == b"pong" => {
                        self.unanswered.pop_front();
                    }
                    _ => {}
                }
                Ok(())
            }
            (State::Ready, reply) if self.role == Role::Publisher => {
                self.unanswered.pop_front();
                if let Reply::Error(e) = reply {
                    log!(Warn, "redis error reply", error = e);
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
