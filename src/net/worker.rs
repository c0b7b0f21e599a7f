//! One worker's shell: a single-threaded mio loop that owns the worker's
//! sockets and moves bytes between them and its `Node`, which decides
//! everything. Per turn it reads the clock once, reads the Redis sockets
//! first, then accepts and reads what is ready, lets the node handle its
//! timers and write, and carries out what the node asks.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::clock::now;
use super::redis_io::RedisIo;
use super::redis_resolve::{system_resolve, Wake};
use super::sockets::Sockets;
use super::wakeups::Wakeups;
use crate::conn::Stage;
use crate::ids::ConnKey;
use crate::log;
use crate::node::redis::LinkInput;
use crate::node::{Input, MayRead, Node, Now, Output, Process};
use crate::obs::metrics::Limit;
use crate::rand::Rng;

/// Listener `i` has token `FIRST_LISTENER + i`; connection keys never get
/// that high.
const FIRST_LISTENER: usize = usize::MAX / 2;
/// Woken by other threads: mail, the drain, a hand-over, a Redis lookup.
const WAKER: Token = Token(usize::MAX - 1);
const REDIS: [Token; 2] = [Token(usize::MAX - 2), Token(usize::MAX - 3)];
const SCRATCH_BYTES: usize = 64 * 1024;
/// Reads per readiness event before other connections get their turn.
const READS_PER_EVENT: usize = 4;

/// When a connection's reading may stop short of a read that finds
/// nothing.
///
/// Readiness is edge-triggered: whatever arrives after `poll` reported a
/// socket (bytes, or the peer's FIN) reports it again. So a read that did
/// not fill the buffer, after an event that saw no FIN and no error, has
/// taken everything there is, and the next event will say when more comes
/// (`Short`). A read for any other reason (a FIN or an error already
/// reported, reading resumed after back-pressure, a connection left for
/// later) has no event to come after it and goes on until the socket says
/// it is empty (`Empty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadUntil {
    Short,
    Empty,
}
/// How long accepting pauses when the process is out of file descriptors:
/// long enough not to spin, short enough to recover promptly.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

pub struct Worker {
    id: usize,
    node: Node,
    poll: Poll,
    process: Arc<Process>,
    wakeups: Arc<Wakeups>,
    /// Empty once the drain has stopped accepting.
    listeners: Vec<TcpListener>,
    accept_paused_until: Option<Instant>,
    /// Accepting has failed for want of descriptors since the last success.
    accept_starved: bool,
    sockets: Sockets,
    /// One read buffer for every connection of the loop: a connection keeps
    /// only the bytes it could not use yet.
    scratch: Vec<u8>,
    /// Connections to read again once the others have had their turn.
    again: Vec<ConnKey>,
}

impl Worker {
    /// The waker other threads use to interrupt this worker's `poll`.
    pub fn waker(poll: &Poll) -> io::Result<Waker> {
        Waker::new(poll.registry(), WAKER)
    }

    /// Worker `id`, starting at `started`.
    pub fn new(
        id: usize,
        process: Arc<Process>,
        wakeups: Arc<Wakeups>,
        mut listeners: Vec<TcpListener>,
        poll: Poll,
        started: Now,
    ) -> io::Result<Worker> {
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(listener, Token(FIRST_LISTENER + i), Interest::READABLE)?;
        }
        let redis = process.config.redis.as_ref().map(|_| {
            // A lookup thread that outlives the worker must not keep the
            // wakers alive.
            let wakeups = Arc::downgrade(&wakeups);
            let wake: Wake = Arc::new(move || {
                if let Some(wakeups) = wakeups.upgrade() {
                    wakeups.wake_worker(id);
                }
            });
            RedisIo::new(REDIS, system_resolve, wake)
        });
        let node = Node::new(id, Arc::clone(&process), started, Rng::from_os().next_u64());
        Ok(Worker {
            id,
            node,
            poll,
            process,
            wakeups,
            listeners,
            accept_paused_until: None,
            accept_starved: false,
            sockets: Sockets::new(redis),
            scratch: vec![0; SCRATCH_BYTES],
            again: Vec::new(),
        })
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout(now().at);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = now();
            // Redis first: a reply that came while the last turn wrote to
            // clients is in before anything is decided this turn (see
            // `RedisLink::sequencing`).
            for event in events.iter().filter(|e| REDIS.contains(&e.token())) {
                self.redis_ready(event.token(), now);
            }
            self.redis_lookups(now);
            for event in events.iter() {
                match event.token() {
                    WAKER => self.node.handle(Input::Woken, now),
                    token if REDIS.contains(&token) => {}
                    Token(t) if t >= FIRST_LISTENER => {
                        let index = t - FIRST_LISTENER;
                        self.accept(index..index + 1, now)
                    }
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let until = if event.is_read_closed() || event.is_error() {
                                ReadUntil::Empty
                            } else {
                                ReadUntil::Short
                            };
                            self.read(ConnKey(key), until, now);
                        }
                        if event.is_writable() {
                            self.node.handle(Input::Writable(ConnKey(key)), now);
                        }
                    }
                }
                self.carry_out(now);
            }
            for key in std::mem::take(&mut self.again) {
                self.read(key, ReadUntil::Empty, now);
            }
            if self
                .accept_paused_until
                .is_some_and(|until| now.at >= until)
            {
                self.accept_paused_until = None;
                self.accept(0..self.listeners.len(), now);
            }
            self.node.handle_timeout(now);
            self.node.transmit(&mut self.sockets, now);
            if self.carry_out(now) {
                return Ok(());
            }
        }
    }

    /// Sleep until the node's next deadline or the end of an accept pause;
    /// not at all while reads are pending.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [self.node.poll_timeout(), self.accept_paused_until]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Carries out what the node asks; true once it is done.
    fn carry_out(&mut self, now: Now) -> bool {
        let registry = self.poll.registry();
        while let Some(output) = self.node.poll_output() {
            match output {
                Output::Close(key) => self.sockets.close(key, registry),
                Output::ShutWrite(key) => self.sockets.shut_write(key),
                Output::Writable { key, on } => self.sockets.watch_writable(key, on, registry),
                Output::ReadAgain(key) => self.again.push(key),
                Output::Wake(worker) => self.wakeups.wake_worker(worker),
                // The supervisor's loop carries the hand-over link.
                Output::WakeLink => self.wakeups.wake_supervisor(),
                Output::StopAccepting => {
                    for mut listener in self.listeners.drain(..) {
                        let _ = registry.deregister(&mut listener);
                    }
                    self.accept_paused_until = None;
                }
                Output::Redis(out) => {
                    let Some(redis) = self.sockets.redis.as_mut() else {
                        continue;
                    };
                    if let Some((side, why)) = redis.carry_out(out, registry) {
                        self.node
                            .handle(Input::Redis(LinkInput::Failed { side, why }), now);
                    }
                    // An address literal needs no lookup thread: it is
                    // answered at once, and nothing would wake the loop.
                    let node = &mut self.node;
                    redis.finished_lookups(|input| node.handle(Input::Redis(input), now));
                }
                Output::Exit => return true,
            }
        }
        false
    }

    fn redis_ready(&mut self, token: Token, now: Now) {
        let Some(redis) = self.sockets.redis.as_mut() else {
            return;
        };
        let node = &mut self.node;
        redis.on_ready(token, &mut self.scratch, |input| {
            node.handle(Input::Redis(input), now)
        });
        self.carry_out(now);
    }

    fn redis_lookups(&mut self, now: Now) {
        let Some(redis) = self.sockets.redis.as_mut() else {
            return;
        };
        let node = &mut self.node;
        redis.finished_lookups(|input| node.handle(Input::Redis(input), now));
        self.carry_out(now);
    }

    /// Reads a connection that has input (or a verdict that needs a read),
    /// a few times at most before the others get their turn.
    fn read(&mut self, key: ConnKey, until: ReadUntil, now: Now) {
        let Some(stage) = self.node.stage(key) else {
            return;
        };
        if stage == Stage::Http {
            // Requests held back (parked, or while answers piled up) are
            // taken before anything new is read.
            self.node.handle(Input::Received { key, bytes: &[] }, now);
            self.carry_out(now);
        }
        for _ in 0..READS_PER_EVENT {
            match self.node.may_read(key, stage) {
                MayRead::Now => {}
                MayRead::Later => return self.again.push(key),
                MayRead::No => return,
            }
            let read = loop {
                match self.sockets.read(key, &mut self.scratch) {
                    Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            let input = match read {
                None => return,
                Some(Ok(0)) => Input::Eof(key),
                Some(Ok(n)) => Input::Received {
                    key,
                    bytes: &self.scratch[..n],
                },
                Some(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => Input::Quiet(key),
                Some(Err(error)) => Input::Failed { key, error },
            };
            let (more, drained) = match input {
                Input::Received { bytes, .. } => (true, bytes.len() < self.scratch.len()),
                _ => (false, false),
            };
            self.node.handle(input, now);
            self.carry_out(now);
            if drained && until == ReadUntil::Short {
                // The read emptied the socket: saying so spares the
                // read that would only find nothing (one per chat message).
                self.node.handle(Input::Quiet(key), now);
                self.carry_out(now);
                return;
            }
            if !more {
                return;
            }
        }
        self.again.push(key);
    }

    /// Accepts what is queued on the listeners with these indexes.
    fn accept(&mut self, listeners: Range<usize>, now: Now) {
        for index in listeners {
            if self.accept_paused_until.is_some() {
                return;
            }
            self.accept_from(index, now);
        }
    }

    fn accept_from(&mut self, index: usize, now: Now) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            if !self.node.takes_new_connections() {
                return;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if std::mem::take(&mut self.accept_starved) {
                        log!(Info, "accepting again", worker = self.id);
                    }
                    let _ = stream.set_nodelay(true);
                    let key = self.node.accept(peer, now);
                    if let Err(error) = self.sockets.insert(key, stream, self.poll.registry()) {
                        log!(
                            Warn,
                            "could not register connection",
                            peer = peer,
                            error = error
                        );
                        self.node.handle(Input::Failed { key, error }, now);
                    }
                    self.carry_out(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: the pending connection stays
                    // in the backlog and would wake us again at once, so
                    // stop accepting for a moment instead of spinning.
                    // Warned once per shortage, not every pause.
                    self.process.stats.limit_hit(Limit::OutOfDescriptors);
                    if !std::mem::replace(&mut self.accept_starved, true) {
                        log!(
                            Warn,
                            "accept failed; pausing accepts until descriptors free up",
                            error = e,
                            pause_ms = ACCEPT_PAUSE.as_millis(),
                            worker = self.id
                        );
                    }
                    self.accept_paused_until = Some(now.at + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }
}
