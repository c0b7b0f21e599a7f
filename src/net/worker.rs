//! One worker: a single-threaded mio loop that owns its listener, its
//! connections and its timers. This file is the loop itself: readiness,
//! accepting, the clock and the timer wheel. Reading and writing are in
//! `reading.rs` and `writing.rs`; what the application decides is carried
//! out in `actions.rs` and `delivery.rs`.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::mailbox::Mail;
use super::redis::{Event as RedisEvent, Outside, RedisLink};
use super::shared::Shared;
use super::slot::Slot;
use super::timer_wheel::{Entry, Tick, TimerWheel, TICK_MS};
use crate::app::history::Position;
use crate::app::hub::{Client, Here, Hub};
use crate::app::lifecycle::Lifecycle;
use crate::app::snapshot::Snapshot;
use crate::conn::{Connection, Settings, Stage, NEVER};
use crate::log;
use crate::obs::metrics::Limit;
use crate::per_ip::Kind;
use crate::rand::Rng;

/// Listener `i` has token `FIRST_LISTENER + i`; connection keys never get
/// that high.
const FIRST_LISTENER: usize = usize::MAX / 2;
/// Woken by other threads: the drain started, or mail arrived.
const WAKER: Token = Token(usize::MAX - 1);
const REDIS_SUB: Token = Token(usize::MAX - 2);
const REDIS_PUB: Token = Token(usize::MAX - 3);
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
    pub(super) poll: Poll,
    /// Empty once a drain has stopped accepting (see `stop_accepting`).
    listeners: Vec<TcpListener>,
    accept_paused_until: Option<Instant>,
    /// Accepting has failed for want of descriptors since the last success.
    accept_starved: bool,
    pub(super) conns: Slab<Slot>,
    pub(super) hub: Hub,
    wheel: TimerWheel,
    epoch: Instant,
    /// The current tick, refreshed once per loop turn.
    pub(super) now: Tick,
    /// The wall clock of this loop turn (ms since the Unix epoch), read
    /// once per turn: the time server messages carry.
    pub(super) wall_ms: u64,
    /// One read buffer for every connection of the loop: a connection keeps
    /// only the bytes it could not use yet.
    pub(super) scratch: Vec<u8>,
    pub(super) dirty: Vec<usize>,
    /// Broadcast frames of this loop turn, not yet written (see
    /// `deliver_broadcasts`).
    pub(super) turn_broadcasts: Vec<Arc<[u8]>>,
    /// Connections whose write failed during a delivery pass, closed after
    /// it.
    pub(super) failed: Vec<usize>,
    /// Connections to read again once the others have had their turn.
    again: Vec<usize>,
    /// Clients still to be sent their Close at the drain deadline, a batch
    /// per loop turn (see `close_some`).
    pub(super) to_close: Vec<usize>,
    pub(super) next_periodic: Option<Instant>,
    pub(super) periodic_count: u64,
    pub(super) lifecycle: Lifecycle,
    /// Mail taken from this worker's mailbox (kept to reuse its allocation).
    pub(super) mail: Vec<Mail>,
    /// Numbers requests parked while another worker answers.
    pub(super) next_ticket: u64,
    pub(super) redis: Option<RedisLink>,
    pub(super) redis_events: Vec<RedisEvent>,
    /// Open WebSocket connections (`/ws` and `/echo`) of this worker.
    pub(super) clients: usize,
    /// Connections in their closing phase, so the drain can wait for them
    /// without scanning the slab.
    pub(super) closing: usize,
    /// Connections whose queue the socket did not take at their last flush
    /// (registered for writability).
    pub(super) backlogged: usize,
    /// This worker's share of `--max-total-queue-bytes`.
    pub(super) queue_budget: usize,
    pub(super) rng: Rng,
    /// Timeouts in ticks and size limits, from the configuration.
    pub(super) settings: Settings,
    /// The address each connection is counted under, and as what, while
    /// `--max-connections-per-ip` is on.
    pub(super) per_ip_held: HashMap<usize, (IpAddr, Kind)>,
    /// Where this worker stands in the broadcast stream: the last numbered
    /// message it handed to its clients.
    pub(super) position: Position,
    /// Clients that resumed from further on than this worker stood, with
    /// the offset up to which they have everything (see `stream.rs`).
    pub(super) ahead: HashMap<usize, u64>,
}

impl Worker {
    /// The waker other threads use to interrupt this worker's `poll`.
    pub fn waker(poll: &Poll) -> io::Result<Waker> {
        Waker::new(poll.registry(), WAKER)
    }

    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mut listeners: Vec<TcpListener>,
        poll: Poll,
    ) -> io::Result<Worker> {
        for (i, listener) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(listener, Token(FIRST_LISTENER + i), Interest::READABLE)?;
        }
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
                Outside::for_worker(&shared, id),
                now,
            )
        });
        let queue_budget = (config.max_total_queue_bytes / config.workers).max(1);
        let settings = Settings {
            header: ticks(config.header_timeout),
            idle: config.idle_timeout.map(ticks),
            ping: config.ping_interval.map(ticks),
            linger: ticks(CLOSE_LINGER),
            max_message: config.max_message_bytes,
            max_queue: config.max_queue_bytes,
        };
        Ok(Worker {
            id,
            settings,
            lifecycle: Lifecycle::new(config.drain_timeout, CLOSE_LINGER),
            shared,
            poll,
            listeners,
            accept_paused_until: None,
            accept_starved: false,
            conns: Slab::new(),
            hub: Hub::default(),
            wheel: TimerWheel::new(0),
            epoch: now,
            now: 0,
            wall_ms: wall_clock_ms(),
            scratch: vec![0; SCRATCH_BYTES],
            dirty: Vec::new(),
            turn_broadcasts: Vec::new(),
            failed: Vec::new(),
            again: Vec::new(),
            to_close: Vec::new(),
            next_periodic,
            periodic_count: 0,
            clients: 0,
            closing: 0,
            backlogged: 0,
            queue_budget,
            mail: Vec::new(),
            next_ticket: 0,
            redis,
            redis_events: Vec::new(),
            rng: Rng::from_os(),
            per_ip_held: HashMap::new(),
            position: Position::default(),
            ahead: HashMap::new(),
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
            self.wall_ms = wall_clock_ms();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.read_mail(),
                    token @ (REDIS_SUB | REDIS_PUB) => self.on_redis(Some(token), now),
                    Token(t) if t >= FIRST_LISTENER => {
                        self.accept(t - FIRST_LISTENER..t - FIRST_LISTENER + 1, now)
                    }
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
                self.accept(0..self.listeners.len(), now);
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
            if !self.to_close.is_empty() {
                self.close_some();
            }
            // The lifecycle moves before the turn's writes, so a drain that
            // starts now writes each client this turn's broadcasts and its
            // notice in one pass (see `deliver_turn`), not in two.
            loop {
                let clients = self.clients;
                let done = self.update_lifecycle(now);
                self.write_out();
                if done {
                    return Ok(());
                }
                // Writing may find clients gone: the drain must see that in
                // this turn, not at its next timer.
                if self.clients == clients {
                    break;
                }
            }
        }
    }

    /// Sleep until the nearest deadline: a timer tick, the periodic
    /// notification, a drain deadline, the end of an accept pause, or not at
    /// all when reads are pending.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.again.is_empty() || !self.to_close.is_empty() {
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

    /// Accepts what is queued on the listeners with these indexes.
    fn accept(&mut self, listeners: std::ops::Range<usize>, now: Instant) {
        for index in listeners {
            if self.accept_paused_until.is_some() {
                return;
            }
            self.accept_from(index, now);
        }
    }

    /// Stops accepting for good: a process whose sockets another process
    /// serves leaves the connections still queued to that process (see
    /// `ListenerState`). Those accepted so far are served.
    pub(super) fn stop_accepting(&mut self) {
        if self.listeners.is_empty() {
            return;
        }
        for mut listener in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        log!(Info, "stopped accepting", worker = self.id);
    }

    fn accept_from(&mut self, index: usize, now: Instant) {
        loop {
            let Some(listener) = self.listeners.get(index) else {
                return;
            };
            match listener.accept() {
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
                    let conn = Connection::new(peer, self.now, &self.settings);
                    entry.insert(Slot::new(stream, conn));
                    log!(Trace, "connection accepted", peer = peer, worker = self.id);
                    self.admit_per_ip(key, peer.ip());
                    self.arm(key);
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
                    self.shared.stats.limit_hit(Limit::OutOfDescriptors);
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

    /// Runs one step of a connection's state machine with the current tick,
    /// and keeps the loop's view of it in step: a connection with new bytes
    /// to send or in a new phase is flushed at the end of the turn, one that
    /// starts closing is counted, and its timer follows its deadline.
    pub(super) fn drive<R>(
        &mut self,
        key: usize,
        step: impl FnOnce(&mut Connection<Client>, Tick, &Settings) -> R,
    ) -> Option<R> {
        let slot = self.conns.get_mut(key)?;
        let stage = slot.conn.stage();
        let pending = slot.conn.out().pending();
        let result = step(&mut slot.conn, self.now, &self.settings);
        let changed = slot.conn.stage() != stage;
        if changed && slot.conn.stage() == Stage::Closing {
            self.closing += 1;
        }
        if (changed || slot.conn.out().pending() != pending) && !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key);
        }
        self.arm(key);
        Some(result)
    }

    /// Remembers that a connection has input to read (or a verdict to
    /// check) once the others have had their turn.
    pub(super) fn read_later(&mut self, key: usize) {
        self.again.push(key);
    }

    /// Makes sure the wheel holds an entry no later than the connection's
    /// deadline. Later deadlines need nothing: the early entry re-arms.
    pub(super) fn arm(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let deadline = slot.conn.deadline(&self.settings);
        if deadline == NEVER || (slot.armed != NEVER && slot.armed <= deadline) {
            return;
        }
        let at = deadline.max(self.now + 1);
        slot.armed = at;
        self.wheel.schedule(key, at);
    }

    fn on_wheel_entry(&mut self, entry: Entry) {
        let key = entry.key as usize;
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        if slot.armed != entry.at {
            return;
        }
        slot.armed = NEVER;
        // A ping is output: broadcasts made before it go first.
        self.before_output(key);
        if let Some(Some(event)) = self.drive(key, |conn, now, s| conn.on_deadline(now, s)) {
            self.on_event(key, event);
        }
        self.arm(key);
    }

    /// What the application may know this moment (the wall clock of the
    /// turn, the process's counters and drain).
    pub(super) fn snapshot(&self) -> Snapshot {
        self.shared.snapshot(self.wall_ms)
    }

    /// Where this worker stands, for finding clients by id.
    pub(super) fn here(&self) -> Here<'_> {
        Here {
            instance: &self.shared.instance,
            worker: self.id,
            workers: self.shared.config.workers,
            redis: self.redis.is_some(),
            hub: &self.hub,
        }
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
