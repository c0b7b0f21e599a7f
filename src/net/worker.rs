//! One worker: a single-threaded mio loop that owns its listener, its
//! connections and its timers. This file is the loop itself: readiness,
//! accepting, timers and flushing; the HTTP and WebSocket phases live in
//! `http_conn.rs` and `ws_conn.rs`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::conn::{CloseMode, Conn, Phase, NOT_ARMED};
use super::mailbox::Mail;
use super::redis::{Event as RedisEvent, RedisLink};
use super::remote::redis_outside;
use super::socket_write::SocketWriter;
use super::timer_wheel::{Entry, Tick, TimerWheel, TICK_MS};
use super::write_queue::{Chunk, WriteQueue};
use crate::app::hub::Hub;
use crate::app::lifecycle::Lifecycle;
use crate::log;
use crate::obs::metrics;
use crate::per_ip::Slot;
use crate::proto::frame::Opcode;
use crate::rand::Rng;
use crate::shared::Shared;

const LISTENER: Token = Token(usize::MAX);
/// Woken by other threads: the drain started, or mail arrived.
const WAKER: Token = Token(usize::MAX - 1);
const REDIS_SUB: Token = Token(usize::MAX - 2);
const REDIS_PUB: Token = Token(usize::MAX - 3);
/// Reads per readiness event before other connections get their turn.
pub(super) const READS_PER_EVENT: usize = 4;
const SCRATCH_BYTES: usize = 64 * 1024;
/// How long accepting pauses when the process is out of file descriptors:
/// long enough not to spin, short enough to recover promptly.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long a closing connection may take to read our last bytes and close.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// Converts a duration to the ticks to add to the current tick for a
/// deadline. The current tick is rounded down, so one more tick (and the
/// duration rounded up) keeps every timer from firing early; it may fire up
/// to two ticks late.
pub fn ticks(d: Duration) -> Tick {
    // Capped at about 3 years, so adding it to the current tick cannot
    // overflow within a decade of uptime.
    let ticks = (d.as_millis() as u64).div_ceil(TICK_MS) + 1;
    ticks.min(1 << 30) as Tick
}

pub struct Worker {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub poll: Poll,
    listener: TcpListener,
    accept_paused_until: Option<Instant>,
    /// Accepting has failed for want of descriptors since the last success.
    accept_starved: bool,
    pub conns: Slab<Conn>,
    pub hub: Hub,
    wheel: TimerWheel,
    epoch: Instant,
    /// The current tick, refreshed once per loop turn.
    pub now: Tick,
    /// One read buffer for every connection of the loop: a connection keeps
    /// only the bytes it could not use yet.
    pub scratch: Vec<u8>,
    pub(super) dirty: Vec<usize>,
    /// Broadcast frames of this loop turn, not yet written (see
    /// `deliver_broadcasts`).
    pub(super) turn_broadcasts: Vec<Arc<[u8]>>,
    /// Connections whose write failed during a delivery pass, closed after
    /// it.
    pub(super) failed: Vec<usize>,
    /// Connections that hit READS_PER_EVENT with input still waiting.
    again: Vec<usize>,
    next_periodic: Option<Instant>,
    periodic_count: u64,
    pub lifecycle: Lifecycle,
    /// Mail taken from this worker's mailbox (kept to reuse its allocation).
    pub mail: Vec<Mail>,
    /// Numbers requests parked while another worker answers.
    pub next_ticket: u64,
    pub redis: Option<RedisLink>,
    pub redis_events: Vec<RedisEvent>,
    /// Open WebSocket connections (`/ws` and `/echo`) of this worker.
    pub clients: usize,
    /// Connections in their closing phase, so the drain can wait for them
    /// without scanning the slab.
    pub(super) closing: usize,
    pub rng: Rng,
    /// Timeouts in ticks, from the configuration.
    pub header_ticks: Tick,
    pub idle_ticks: Option<Tick>,
    pub ping_ticks: Option<Tick>,
    pub linger_ticks: Tick,
    /// The address each connection is counted under, while
    /// `--max-connections-per-ip` is on.
    pub(super) per_ip_held: HashMap<usize, (IpAddr, Slot)>,
}

impl Worker {
    /// The waker other threads use to interrupt this worker's `poll`.
    pub fn waker(poll: &Poll) -> io::Result<Waker> {
        Waker::new(poll.registry(), WAKER)
    }

    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mut listener: TcpListener,
        poll: Poll,
    ) -> io::Result<Worker> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let config = &shared.config;
        let now = Instant::now();
        // Only worker 0 runs the periodic timer, so a notification goes out
        // once per process however many workers there are.
        let next_periodic = match config.notify_interval {
            Some(every) if id == 0 => Some(now + every),
            _ => None,
        };
        let redis = config.redis.clone().map(|url| {
            // The process-wide cap, shared evenly by the workers' links.
            let max_queue = (config.redis_max_queue_bytes / config.workers).max(1);
            RedisLink::new(
                url,
                config.redis_channel.clone(),
                [REDIS_SUB, REDIS_PUB],
                max_queue,
                redis_outside(&shared, id),
                now,
            )
        });
        Ok(Worker {
            id,
            header_ticks: ticks(config.header_timeout),
            idle_ticks: config.idle_timeout.map(ticks),
            ping_ticks: config.ping_interval.map(ticks),
            linger_ticks: ticks(CLOSE_LINGER),
            lifecycle: Lifecycle::new(config.drain_timeout, CLOSE_LINGER),
            shared,
            poll,
            listener,
            accept_paused_until: None,
            accept_starved: false,
            conns: Slab::new(),
            hub: Hub::default(),
            wheel: TimerWheel::new(0),
            epoch: now,
            now: 0,
            scratch: vec![0; SCRATCH_BYTES],
            dirty: Vec::new(),
            turn_broadcasts: Vec::new(),
            failed: Vec::new(),
            again: Vec::new(),
            next_periodic,
            periodic_count: 0,
            clients: 0,
            closing: 0,
            mail: Vec::new(),
            next_ticket: 0,
            redis,
            redis_events: Vec::new(),
            rng: Rng::from_os(),
            per_ip_held: HashMap::new(),
        })
    }

    fn tick_of(&self, at: Instant) -> Tick {
        (at.saturating_duration_since(self.epoch).as_millis() as u64 / TICK_MS) as Tick
    }

    fn instant_of(&self, tick: Tick) -> Instant {
        self.epoch + Duration::from_millis(u64::from(tick) * TICK_MS)
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut due: Vec<Entry> = Vec::new();
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            self.now = self.tick_of(now);
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => self.read_mail(),
                    token @ (REDIS_SUB | REDIS_PUB) => self.on_redis(Some(token), now),
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key);
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.again) {
                self.on_readable(key);
            }
            if self.accept_paused_until.is_some_and(|until| now >= until) {
                self.accept_paused_until = None;
                self.accept(now);
            }
            if self
                .redis
                .as_ref()
                .and_then(|r| r.next_deadline())
                .is_some_and(|at| now >= at)
            {
                self.on_redis(None, now);
            }
            if self.lifecycle.is_running() && self.next_periodic.is_some_and(|at| now >= at) {
                self.periodic(now);
            }
            self.wheel.advance(self.now, &mut due);
            for entry in due.drain(..) {
                self.on_wheel_entry(entry);
            }
            self.write_out();
            if self.update_lifecycle(now) {
                self.write_out();
                return Ok(());
            }
            self.write_out();
        }
    }

    /// Sleep until the nearest deadline: a timer tick, the periodic
    /// notification, a drain deadline, the end of an accept pause, or not at
    /// all when reads are pending.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.wheel.next_tick().map(|t| self.instant_of(t)),
            self.next_periodic.filter(|_| self.lifecycle.is_running()),
            self.accept_paused_until,
            self.lifecycle.next_deadline(),
            self.redis.as_ref().and_then(|r| r.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    fn accept(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if std::mem::take(&mut self.accept_starved) {
                        log!(Info, "accepting again", worker = self.id);
                    }
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, Token(key), Interest::READABLE)
                    {
                        log!(
                            Warn,
                            "could not register connection",
                            peer = peer,
                            error = e
                        );
                        continue;
                    }
                    entry.insert(Conn::new(stream, peer, self.now + self.header_ticks));
                    log!(Trace, "connection accepted", peer = peer, worker = self.id);
                    if self.admit_per_ip(key, peer.ip()) {
                        self.arm(key);
                    }
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
                    self.shared.stats.limit_hit("out_of_descriptors");
                    if !std::mem::replace(&mut self.accept_starved, true) {
                        log!(
                            Warn,
                            "accept failed; pausing accepts until descriptors free up",
                            error = e,
                            pause_ms = ACCEPT_PAUSE.as_millis(),
                            worker = self.id
                        );
                    }
                    self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn on_readable(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.phase {
            Phase::Http(_) => self.read_http(key),
            Phase::Ws(_) => self.read_ws(key),
            Phase::Closing { .. } => self.read_closing(key),
        }
    }

    /// Reads the socket once into the scratch buffer. `None` means the
    /// connection is gone (closed, failed, or removed here); `Some(0)` that
    /// there is nothing to read now.
    pub(super) fn read_once(&mut self, key: usize) -> Option<usize> {
        use std::io::Read;
        let conn = self.conns.get_mut(key)?;
        loop {
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.on_peer_eof(key);
                    return None;
                }
                Ok(n) => {
                    metrics::add(&self.shared.stats.bytes_received, n as u64);
                    return Some(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(key, &format!("read error: {e}"));
                    return None;
                }
            }
        }
    }

    /// Remembers that a connection still has input to read once the others
    /// have had their turn.
    pub fn read_later(&mut self, key: usize) {
        self.again.push(key);
    }

    /// Queues bytes for a connection; they are written when the loop turn
    /// ends, together with anything else queued meanwhile.
    pub fn send(&mut self, key: usize, chunk: Chunk) {
        if let Some(out) = self.queue_of(key) {
            out.push(chunk);
        }
    }

    /// Queues one frame built from `payload` (see `WriteQueue::push_frame`).
    pub fn send_frame_bytes(&mut self, key: usize, opcode: Opcode, payload: &[u8]) {
        if let Some(out) = self.queue_of(key) {
            out.push_frame(opcode, payload);
        }
    }

    /// A connection's queue, marked to be flushed at the end of the turn.
    fn queue_of(&mut self, key: usize) -> Option<&mut WriteQueue> {
        // A client's own messages must not overtake broadcasts made before
        // them in this turn.
        if !self.turn_broadcasts.is_empty() && self.conns.get(key).is_some_and(Conn::is_ws) {
            self.deliver_broadcasts();
        }
        let conn = self.conns.get_mut(key)?;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
        Some(&mut conn.out)
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// The end of a loop turn: queued answers first, then this turn's
    /// broadcasts, then whatever those could not write at once.
    fn write_out(&mut self) {
        self.flush_dirty();
        self.deliver_broadcasts();
        self.flush_dirty();
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            self.flush(key);
        }
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        match conn
            .out
            .flush_to(&mut SocketWriter(conn.stream.as_raw_fd()))
        {
            Ok(n) => metrics::add(&self.shared.stats.bytes_sent, n as u64),
            Err(e) => {
                self.close(key, &format!("write error: {e}"));
                return;
            }
        }
        if let Phase::Http(http) = &mut conn.phase {
            if http.stalled && conn.out.pending() <= super::http_conn::MAX_HTTP_QUEUED {
                http.stalled = false;
                self.read_later(key);
            }
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.out.is_empty() {
            if let Phase::Closing {
                write_shut, mode, ..
            } = &mut conn.phase
            {
                if matches!(mode, CloseMode::AfterFlush) {
                    if Self::input_drained(&mut conn.stream, &mut self.scratch) {
                        self.close(key, "closed");
                        return;
                    }
                    // The peer is still sending: wait for its FIN instead.
                    *mode = CloseMode::Linger;
                }
                if !*write_shut {
                    *write_shut = true;
                    let _ = conn.stream.shutdown(Shutdown::Write);
                }
            }
            if conn.writable {
                conn.writable = false;
                let _ = self.poll.registry().reregister(
                    &mut conn.stream,
                    Token(key),
                    Interest::READABLE,
                );
            }
        } else if conn.is_ws() && conn.out.pending() > self.shared.config.max_queue_bytes {
            self.drop_slow_consumer(key);
        } else if !conn.writable {
            conn.writable = true;
            let _ = self.poll.registry().reregister(
                &mut conn.stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    /// Reads and drops what the peer sent that nobody will read: closing a
    /// socket with unread input makes the kernel reset the connection, which
    /// destroys whatever the peer has not read yet, our last frames
    /// included (found by the connection fuzz target). False if the peer
    /// keeps sending.
    ///
    /// A peer that sent anything after its Close may still be sending (the
    /// fuzz target caught bytes arriving 3 ms after an empty read), so only
    /// a socket that is quiet at the first look, or at its end, counts as
    /// drained; otherwise the connection waits for the peer's FIN.
    fn input_drained(stream: &mut mio::net::TcpStream, scratch: &mut [u8]) -> bool {
        use std::io::Read;
        loop {
            match stream.read(scratch) {
                Ok(0) => return true,
                Ok(_) => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Removes a connection at once.
    pub fn close(&mut self, key: usize, why: &str) {
        if !self.conns.contains(key) {
            return;
        }
        self.leave_ws(key, why);
        self.release_per_ip(key);
        let mut conn = self.conns.remove(key);
        if matches!(conn.phase, Phase::Closing { .. }) {
            self.closing -= 1;
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        log!(
            Trace,
            "connection closed",
            peer = conn.peer_label(),
            reason = why
        );
    }

    /// The tick at which this connection next needs attention.
    fn deadline(&self, conn: &Conn) -> Tick {
        match &conn.phase {
            Phase::Http(http) => http.deadline,
            Phase::Ws(ws) => {
                let idle = self.idle_ticks.map_or(NOT_ARMED, |t| ws.last_seen + t);
                let ping = self.ping_ticks.map_or(NOT_ARMED, |_| ws.next_ping);
                idle.min(ping)
            }
            Phase::Closing { until, .. } => *until,
        }
    }

    /// Makes sure the wheel holds an entry no later than the connection's
    /// deadline. Later deadlines need nothing: the early entry re-arms.
    pub fn arm(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let deadline = self.deadline(conn);
        if deadline == NOT_ARMED || (conn.armed != NOT_ARMED && conn.armed <= deadline) {
            return;
        }
        let at = deadline.max(self.now + 1);
        self.wheel.schedule(key, at);
        if let Some(conn) = self.conns.get_mut(key) {
            conn.armed = at;
        }
    }

    fn on_wheel_entry(&mut self, entry: Entry) {
        let key = entry.key as usize;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.armed != entry.at {
            return;
        }
        conn.armed = NOT_ARMED;
        let due = self
            .conns
            .get(key)
            .is_some_and(|c| self.deadline(c) <= self.now);
        if due {
            self.on_deadline(key);
        }
        self.arm(key);
    }

    fn on_deadline(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match &conn.phase {
            Phase::Http(_) => self.on_http_deadline(key),
            Phase::Ws(_) => self.on_ws_deadline(key),
            Phase::Closing { .. } => self.close(key, "close linger expired"),
        }
    }

    fn periodic(&mut self, now: Instant) {
        let Some(every) = self.shared.config.notify_interval else {
            return;
        };
        self.next_periodic = Some(now + every);
        self.periodic_count += 1;
        self.send_periodic(self.periodic_count);
    }
}
