//! What the workers of one process share: the configuration, the counters,
//! the process-wide sequences, the mailboxes and the sequencer of the
//! broadcast stream. Everything mutable here is an atomic or behind a lock
//! held for a few instructions; nothing here does I/O or reads the clock
//! (the shell wakes the workers that mail is posted to).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::listener_state::{ListenerState, Origin};
use super::mailbox::{self, Mail, Mailbox};
use super::peer::state::Peer;
use super::queue_total::QueueTotal;
use crate::app::history::History;
use crate::app::snapshot::Snapshot;
use crate::config::Config;
use crate::obs::metrics::{self, Memory, Stats};
use crate::per_ip::PerIp;
use crate::rand::Rng;

#[derive(Debug)]
pub struct Process {
    pub config: Config,
    /// Names this process in client ids and notifications, so ids stay unique
    /// across instances that share Redis.
    pub instance: String,
    pub started: Instant,
    pub stats: Stats,
    /// Connections per client address (`--max-connections-per-ip`).
    pub per_ip: PerIp,
    notification_seq: AtomicU64,
    draining: AtomicBool,
    /// Milliseconds after `started` when the drain deadline falls.
    drain_deadline_ms: AtomicU64,
    mailboxes: Vec<Mailbox>,
    /// `/ws` clients of the whole process (echo connections excluded).
    notify_clients: AtomicU64,
    /// Redis connections (two per worker) that are up.
    redis_ready: AtomicUsize,
    pid: u32,
    /// Where the listening sockets came from, and whether another process
    /// serves them too.
    pub listener: ListenerState,
    /// The broadcast stream's epoch, last offset and recent frames. Without
    /// Redis its lock is also the sequencer: an offset is taken and the
    /// frame mailed to every worker under it, so every worker sees the
    /// offsets in order.
    stream: Mutex<History>,
    /// The other process of a hand-over, while there is one. Taken after
    /// `stream` when both are held (see `peer.rs`).
    peer: Mutex<Peer>,
    /// The instance name of the other process of a hand-over: ids issued
    /// there are reached over the link.
    peer_instance: Mutex<Option<Arc<str>>>,
    /// Bytes held for client messages still being received, every
    /// worker's connections together (each worker's `Conns` keeps it).
    pub receiving: Arc<AtomicUsize>,
    /// Bytes held for clients, in queues and between workers
    /// (`--max-total-queue-bytes`).
    pub queued: QueueTotal,
}

/// A mailbox holds at most this part of a worker's share of
/// `--max-total-queue-bytes` (and at most `mailbox::MAX_BYTES`) before it
/// counts as full.
pub const MAILBOX_PART: usize = 4;

/// A name for a history that starts now: random, so a restarted instance
/// never reuses one.
pub fn new_epoch(rng: &mut Rng) -> String {
    format!("{:016x}", rng.next_u64())
}

impl Process {
    /// `started`: the time the process began, for uptime and the drain
    /// deadline; `rng`: where the instance name and the epoch come from.
    pub fn new(config: Config, started: Instant, rng: &mut Rng) -> Process {
        let instance = format!("{:08x}", rng.next_u64() as u32);
        let workers = config.workers;
        let per_ip = PerIp::new(config.max_connections_per_ip);
        let mailbox_bytes =
            (config.max_total_queue_bytes / workers / MAILBOX_PART).clamp(1, mailbox::MAX_BYTES);
        let mut stream = History::new(new_epoch(rng), config.history_size, config.history_ttl)
            .with_max_bytes(config.max_history_bytes)
            .with_max_channels(config.max_channels);
        if config.redis.is_some() {
            stream = stream.with_channels_numbered_elsewhere();
        }
        Process {
            instance,
            started,
            stats: Stats::new(workers),
            per_ip,
            notification_seq: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            drain_deadline_ms: AtomicU64::new(0),
            mailboxes: (0..workers).map(|_| Mailbox::new(mailbox_bytes)).collect(),
            notify_clients: AtomicU64::new(0),
            redis_ready: AtomicUsize::new(0),
            pid: std::process::id(),
            listener: ListenerState::new(Origin::Bound),
            stream: Mutex::new(stream),
            peer: Mutex::new(Peer::default()),
            peer_instance: Mutex::new(None),
            receiving: Arc::default(),
            queued: QueueTotal::new(config.max_total_queue_bytes),
            config,
        }
    }

    pub fn with_listener(mut self, origin: Origin) -> Process {
        self.listener = ListenerState::new(origin);
        self
    }

    pub fn stream(&self) -> MutexGuard<'_, History> {
        self.stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn peer(&self) -> MutexGuard<'_, Peer> {
        self.peer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The other process of a hand-over while the link to it is up.
    pub fn peer_instance(&self) -> Option<Arc<str>> {
        self.peer_instance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The link to `instance` is up, or (`false`) no longer.
    pub fn met_peer(&self, instance: &str, linked: bool) {
        *self
            .peer_instance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = linked.then(|| instance.into());
    }

    /// Queues mail for a worker, counted toward the total queue bound until
    /// it is taken; returns whether that worker must be woken (it wakes
    /// once per batch, not per mail).
    #[must_use]
    pub fn post(&self, worker: usize, mail: Mail) -> bool {
        let Some(mailbox) = self.mailboxes.get(worker) else {
            return false;
        };
        let posted = mailbox.post(mail);
        self.queued.posted(posted);
        posted.wake
    }

    /// Everything posted to `worker`, in order.
    pub fn take_mail(&self, worker: usize) -> Vec<Mail> {
        let Some(mailbox) = self.mailboxes.get(worker) else {
            return Vec::new();
        };
        let taken = mailbox.take();
        self.queued.taken(&taken);
        taken.mail
    }

    /// `worker` stopped: its mail is given back, and none is kept for it
    /// any more.
    pub fn close_mailbox(&self, worker: usize) {
        if let Some(mailbox) = self.mailboxes.get(worker) {
            self.queued.taken(&mailbox.close());
        }
    }

    /// What the process holds in memory that clients can make it hold.
    pub fn memory(&self) -> Memory {
        let (history_entries, history_bytes, channels, subscriptions, channels_held) = {
            let stream = self.stream();
            (
                stream.len(),
                stream.bytes(),
                stream.channel_count(),
                stream.subscription_count(),
                stream.channels_held(),
            )
        };
        Memory {
            queued_bytes: self.queued.queued(),
            mailbox_bytes: self.queued.mail(),
            receiving_bytes: self.receiving.load(Ordering::Relaxed),
            history_bytes,
            history_entries,
            channels,
            subscriptions,
            channels_held,
        }
    }

    pub fn notify_client_joined(&self) {
        self.notify_clients.fetch_add(1, Ordering::Relaxed);
    }

    pub fn notify_client_left(&self) {
        self.notify_clients.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn redis_link_changed(&self, up: bool) {
        if up {
            self.redis_ready.fetch_add(1, Ordering::Relaxed);
        } else {
            self.redis_ready.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `disabled`, `connected` (every worker's two connections are up) or
    /// `reconnecting`.
    pub fn redis_state(&self) -> &'static str {
        if self.config.redis.is_none() {
            "disabled"
        } else if self.redis_ready.load(Ordering::Relaxed) >= 2 * self.config.workers {
            "connected"
        } else {
            "reconnecting"
        }
    }

    pub fn notify_clients(&self) -> u64 {
        self.notify_clients.load(Ordering::Relaxed)
    }

    /// The next notification id: one increasing sequence per instance.
    pub fn next_notification_id(&self) -> u64 {
        self.notification_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts the drain of every worker; the caller wakes them.
    pub fn start_drain(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.started).as_millis() as u64;
        self.drain_deadline_ms.store(ms, Ordering::Release);
        self.draining.store(true, Ordering::Release);
    }

    pub fn drain_deadline(&self) -> Instant {
        self.started + Duration::from_millis(self.drain_deadline_ms.load(Ordering::Acquire))
    }

    /// Whole seconds left before the drain deadline, rounded up.
    pub fn drain_deadline_in_s(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started).as_millis() as u64;
        self.drain_deadline_ms
            .load(Ordering::Relaxed)
            .saturating_sub(elapsed)
            .div_ceil(1000)
    }

    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// What the application may know at `now` (`now_ms`: the wall clock of
    /// the loop turn).
    pub fn snapshot(&self, now: Instant, now_ms: u64) -> Snapshot {
        let stats = &self.stats;
        let draining = self.is_draining();
        Snapshot {
            now_ms,
            draining,
            drain_deadline_in_s: if draining {
                self.drain_deadline_in_s(now)
            } else {
                0
            },
            active: stats.active(),
            notify_clients: self.notify_clients(),
            connections_total: metrics::get(&stats.connections_total),
            messages_sent: metrics::get(&stats.messages_sent),
            messages_received: metrics::get(&stats.messages_received),
            uptime_s: self.uptime(now).as_secs(),
            redis: self.redis_state(),
            peer_clients: 0,
            pid: self.pid,
            listener: self.listener.origin.as_str(),
            listener_shared: self.listener.is_shared(),
            memory: self.memory(),
        }
    }
}
