//! What every worker of the process shares: the configuration, the counters
//! and the process-wide sequences. Everything mutable here is atomic.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::listener_state::{ListenerState, Origin};
use super::mailbox::{Mail, Mailbox};
use crate::app::snapshot::Snapshot;
use crate::config::Config;
use crate::obs::metrics::{self, Stats};
use crate::per_ip::PerIp;
use crate::rand::Rng;

#[derive(Debug)]
pub struct Shared {
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
    wakeups: Wakeups,
    mailboxes: Vec<Mailbox>,
    finished_workers: AtomicUsize,
    /// `/ws` clients of the whole process (echo connections excluded).
    notify_clients: AtomicU64,
    /// Redis connections (two per worker) that are up.
    redis_ready: AtomicUsize,
    pid: u32,
    /// Where the listening sockets came from, and whether another process
    /// serves them too.
    pub listener: ListenerState,
}

/// How the threads wake each other: one waker per worker loop, and one for
/// the supervisor (the main thread).
#[derive(Debug, Default)]
pub struct Wakeups {
    pub workers: Vec<mio::Waker>,
    pub supervisor: Option<mio::Waker>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let instance = format!("{:08x}", Rng::from_os().next_u64() as u32);
        let workers = config.workers;
        let per_ip = PerIp::new(config.max_connections_per_ip);
        Shared {
            config,
            instance,
            started: Instant::now(),
            stats: Stats::new(workers),
            per_ip,
            notification_seq: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            drain_deadline_ms: AtomicU64::new(0),
            wakeups: Wakeups::default(),
            mailboxes: (0..workers).map(|_| Mailbox::default()).collect(),
            finished_workers: AtomicUsize::new(0),
            notify_clients: AtomicU64::new(0),
            redis_ready: AtomicUsize::new(0),
            pid: std::process::id(),
            listener: ListenerState::new(Origin::Bound),
        }
    }

    pub fn with_listener(mut self, origin: Origin) -> Shared {
        self.listener = ListenerState::new(origin);
        self
    }

    pub fn with_wakeups(mut self, wakeups: Wakeups) -> Shared {
        self.wakeups = wakeups;
        self
    }

    /// Wakes every worker loop, so each sees a change of process state.
    pub fn wake_workers(&self) {
        for waker in &self.wakeups.workers {
            let _ = waker.wake();
        }
    }

    /// Wakes one worker loop.
    pub fn wake_worker(&self, worker: usize) {
        if let Some(waker) = self.wakeups.workers.get(worker) {
            let _ = waker.wake();
        }
    }

    /// Sends mail to a worker and wakes it if it was not already due to
    /// look.
    pub fn post(&self, worker: usize, mail: Mail) {
        let Some(mailbox) = self.mailboxes.get(worker) else {
            return;
        };
        if mailbox.post(mail) {
            if let Some(waker) = self.wakeups.workers.get(worker) {
                let _ = waker.wake();
            }
        }
    }

    pub fn take_mail(&self, worker: usize, into: &mut Vec<Mail>) {
        if let Some(mailbox) = self.mailboxes.get(worker) {
            mailbox.take(into);
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

    /// A worker has finished; the supervisor counts and reaps it.
    pub fn worker_finished(&self) {
        self.finished_workers.fetch_add(1, Ordering::AcqRel);
        self.wake_supervisor();
    }

    /// Wakes the main thread to look at the process state.
    pub fn wake_supervisor(&self) {
        if let Some(waker) = &self.wakeups.supervisor {
            let _ = waker.wake();
        }
    }

    pub fn finished_workers(&self) -> usize {
        self.finished_workers.load(Ordering::Acquire)
    }

    /// The next notification id: one increasing sequence per instance.
    pub fn next_notification_id(&self) -> u64 {
        self.notification_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_drain(&self, deadline: Instant) {
        let ms = deadline.saturating_duration_since(self.started).as_millis() as u64;
        self.drain_deadline_ms.store(ms, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        self.wake_workers();
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

    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// What the application may know at `now_ms` (the wall clock of the
    /// loop turn).
    pub fn snapshot(&self, now_ms: u64) -> Snapshot {
        let stats = &self.stats;
        let draining = self.is_draining();
        Snapshot {
            now_ms,
            draining,
            drain_deadline_in_s: if draining {
                self.drain_deadline_in_s(Instant::now())
            } else {
                0
            },
            active: stats.active(),
            notify_clients: self.notify_clients(),
            connections_total: metrics::get(&stats.connections_total),
            messages_sent: metrics::get(&stats.messages_sent),
            messages_received: metrics::get(&stats.messages_received),
            uptime_s: self.uptime_s() as u64,
            redis: self.redis_state(),
            peer_clients: 0,
            pid: self.pid,
            listener: self.listener.origin.as_str(),
            listener_shared: self.listener.is_shared(),
        }
    }
}
