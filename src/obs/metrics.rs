//! Process-wide counters (atomics shared by every worker) and their
//! Prometheus text exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why an upgrade was refused: the `reason` label of
/// `wsnotify_handshake_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    Method,
    HttpVersion,
    NotUpgrade,
    BadConnection,
    BadVersion,
    BadKey,
    Origin,
    Capacity,
    Draining,
    PerIp,
    /// `since` or `epoch` malformed on `/ws`.
    BadResume,
    /// A connection token refused, or missing with `--require-token`.
    Token,
}

impl HandshakeFailure {
    pub const ALL: [HandshakeFailure; 12] = [
        HandshakeFailure::Method,
        HandshakeFailure::HttpVersion,
        HandshakeFailure::NotUpgrade,
        HandshakeFailure::BadConnection,
        HandshakeFailure::BadVersion,
        HandshakeFailure::BadKey,
        HandshakeFailure::Origin,
        HandshakeFailure::Capacity,
        HandshakeFailure::Draining,
        HandshakeFailure::PerIp,
        HandshakeFailure::BadResume,
        HandshakeFailure::Token,
    ];

    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Method => "method",
            HandshakeFailure::HttpVersion => "http_version",
            HandshakeFailure::NotUpgrade => "not_upgrade",
            HandshakeFailure::BadConnection => "bad_connection",
            HandshakeFailure::BadVersion => "bad_version",
            HandshakeFailure::BadKey => "bad_key",
            HandshakeFailure::Origin => "origin",
            HandshakeFailure::Capacity => "capacity",
            HandshakeFailure::Draining => "draining",
            HandshakeFailure::PerIp => "per_ip",
            HandshakeFailure::BadResume => "bad_resume",
            HandshakeFailure::Token => "token",
        }
    }
}

/// Limits that peers run into: the `limit` label of
/// `wsnotify_limit_hits_total` (the connection cap and slow consumers have
/// metrics of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    HeaderTimeout,
    IdleTimeout,
    MessageTooBig,
    HeadTooLarge,
    BodyTooLarge,
    ChunkedBody,
    KeepAliveRequests,
    HttpBackpressure,
    OutOfDescriptors,
    PerIpHttp,
    TotalQueue,
    TotalReceive,
    MaxChannels,
}

impl Limit {
    pub const ALL: [Limit; 13] = [
        Limit::HeaderTimeout,
        Limit::IdleTimeout,
        Limit::MessageTooBig,
        Limit::HeadTooLarge,
        Limit::BodyTooLarge,
        Limit::ChunkedBody,
        Limit::KeepAliveRequests,
        Limit::HttpBackpressure,
        Limit::OutOfDescriptors,
        Limit::PerIpHttp,
        Limit::TotalQueue,
        Limit::TotalReceive,
        Limit::MaxChannels,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::HeaderTimeout => "header_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::MessageTooBig => "message_too_big",
            Limit::HeadTooLarge => "head_too_large",
            Limit::BodyTooLarge => "body_too_large",
            Limit::ChunkedBody => "chunked_body",
            Limit::KeepAliveRequests => "keep_alive_requests",
            Limit::HttpBackpressure => "http_backpressure",
            Limit::OutOfDescriptors => "out_of_descriptors",
            Limit::PerIpHttp => "per_ip_http",
            Limit::TotalQueue => "total_queue",
            Limit::TotalReceive => "total_receive",
            Limit::MaxChannels => "max_channels",
        }
    }
}

/// The `result` labels of `wsnotify_resumes_total`, in the order of
/// `Stats::resumes`.
pub const RESUME_RESULTS: [&str; 3] = ["recovered", "too_old", "unknown_epoch"];

/// What the process holds in memory that clients can make it hold, each
/// part under a bound of its own (see docs/limits.md).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Client queues and the workers' batches for the turn.
    pub queued_bytes: usize,
    /// Mail between workers, posted and not yet taken.
    pub mailbox_bytes: usize,
    /// Messages and requests still being received.
    pub receiving_bytes: usize,
    pub history_bytes: usize,
    pub history_entries: usize,
    /// Channels with a subscriber, and the subscriptions to them (each
    /// one an entry of a worker's channel index).
    pub channels: usize,
    pub subscriptions: usize,
    /// Channels the process holds, with a subscriber or kept for their
    /// messages (within `--max-channels`).
    pub channels_held: usize,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_total: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub notifications: AtomicU64,
    pub slow_consumers_dropped: AtomicU64,
    pub redis_reconnects: AtomicU64,
    pub redis_published: AtomicU64,
    pub redis_received: AtomicU64,
    pub redis_dropped: AtomicU64,
    /// Broadcasts this process's clients got without an offset because
    /// Redis could not number them, and the holes published for them.
    pub redis_unnumbered: AtomicU64,
    pub redis_holes: AtomicU64,
    /// Messages of channels taken from the workers' Redis subscriptions.
    pub redis_channel_received: AtomicU64,
    /// Channels the workers' Redis subscriptions follow, one per channel
    /// per worker with a subscriber of it.
    pub redis_channel_subscriptions: AtomicU64,
    /// Messages queued for, and received from, the other process of a
    /// hand-over.
    pub handover_sent: AtomicU64,
    pub handover_received: AtomicU64,
    /// Bytes waiting for the other process of a hand-over (a gauge, set
    /// by the link's shell).
    pub handover_queued_bytes: AtomicU64,
    /// Resumes by result: recovered, too_old, unknown_epoch.
    pub resumes: [AtomicU64; 3],
    /// Replayed messages written whole to their client's socket.
    pub messages_replayed: AtomicU64,
    /// Clients whose replay is under way (a gauge).
    pub replays_active: AtomicU64,
    /// Replays ended with 4002 because the history lost what they needed.
    pub replays_lost: AtomicU64,
    /// Messages of channels queued for their subscribers, one per
    /// recipient.
    pub channel_deliveries: AtomicU64,
    /// `/ws` clients that negotiated permessage-deflate (a gauge, each
    /// worker's share counted at its joins and at every pass of its
    /// broadcasts): while there is none, nothing is compressed.
    pub deflate_clients: AtomicU64,
    /// Messages compressed for every client that negotiated: once per
    /// message for everyone or a channel, once per recipient for a
    /// message to one client.
    pub messages_compressed: AtomicU64,
    /// `/ws` clients that connected with a valid token (a gauge): the
    /// entries of every worker's `Users`, identities and expiry timers.
    pub authenticated_clients: AtomicU64,
    /// Clients closed with 4001 when their token's `exp` came.
    pub tokens_expired: AtomicU64,
    handshake_failures: [AtomicU64; HandshakeFailure::ALL.len()],
    limit_hits: [AtomicU64; Limit::ALL.len()],
    /// Open WebSocket connections, one gauge per worker.
    per_worker_active: Vec<AtomicU64>,
}

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Lowers a gauge.
pub fn sub(gauge: &AtomicU64, n: u64) {
    gauge.fetch_sub(n, Ordering::Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Stats {
    pub fn new(workers: usize) -> Stats {
        Stats {
            per_worker_active: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            ..Stats::default()
        }
    }

    pub fn handshake_failed(&self, reason: HandshakeFailure) {
        add(&self.handshake_failures[reason as usize], 1);
    }

    pub fn limit_hit(&self, limit: Limit) {
        add(&self.limit_hits[limit as usize], 1);
    }

    pub fn limit_hits(&self, limit: Limit) -> u64 {
        get(&self.limit_hits[limit as usize])
    }

    pub fn connection_opened(&self, worker: usize) {
        add(&self.connections_total, 1);
        if let Some(gauge) = self.per_worker_active.get(worker) {
            add(gauge, 1);
        }
    }

    pub fn connection_closed(&self, worker: usize) {
        if let Some(gauge) = self.per_worker_active.get(worker) {
            gauge.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn active(&self) -> u64 {
        self.per_worker_active.iter().map(get).sum()
    }

    /// The Prometheus text format, version 0.0.4. `memory`: what the
    /// process holds for its clients.
    pub fn render(&self, draining: bool, uptime_s: f64, memory: &Memory) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP wsnotify_{name} {help}");
            let _ = writeln!(out, "# TYPE wsnotify_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "wsnotify_{name}{labels} {value}");
            }
        };
        let one = |counter: &AtomicU64| vec![(String::new(), get(counter))];
        metric(
            "connections_active",
            "gauge",
            "Open WebSocket connections.",
            &[(String::new(), self.active())],
        );
        let per_worker: Vec<_> = self
            .per_worker_active
            .iter()
            .enumerate()
            .map(|(i, g)| (format!("{{worker=\"{i}\"}}"), get(g)))
            .collect();
        metric(
            "worker_connections_active",
            "gauge",
            "Open WebSocket connections per worker.",
            &per_worker,
        );
        metric(
            "connections_total",
            "counter",
            "WebSocket connections accepted since start.",
            &one(&self.connections_total),
        );
        metric(
            "messages_sent_total",
            "counter",
            "Data frames written to clients, one per recipient.",
            &one(&self.messages_sent),
        );
        metric(
            "messages_received_total",
            "counter",
            "Data messages received from clients.",
            &one(&self.messages_received),
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Bytes written to sockets.",
            &one(&self.bytes_sent),
        );
        metric(
            "bytes_received_total",
            "counter",
            "Bytes read from sockets.",
            &one(&self.bytes_received),
        );
        metric(
            "notifications_total",
            "counter",
            "Notifications created (periodic and published).",
            &one(&self.notifications),
        );
        let failures: Vec<_> = HandshakeFailure::ALL
            .iter()
            .zip(&self.handshake_failures)
            .map(|(reason, c)| (format!("{{reason=\"{}\"}}", reason.label()), get(c)))
            .collect();
        metric(
            "handshake_failures_total",
            "counter",
            "Refused WebSocket upgrades by reason.",
            &failures,
        );
        let hits: Vec<_> = Limit::ALL
            .iter()
            .zip(&self.limit_hits)
            .map(|(limit, c)| (format!("{{limit=\"{}\"}}", limit.label()), get(c)))
            .collect();
        metric(
            "limit_hits_total",
            "counter",
            "Times a peer ran into a limit, by limit.",
            &hits,
        );
        metric(
            "slow_consumers_dropped_total",
            "counter",
            "Clients dropped because their unsent bytes exceeded --max-queue-bytes.",
            &one(&self.slow_consumers_dropped),
        );
        metric(
            "redis_reconnects_total",
            "counter",
            "Redis connections lost and retried.",
            &one(&self.redis_reconnects),
        );
        metric(
            "redis_published_total",
            "counter",
            "Messages published to the Redis channel.",
            &one(&self.redis_published),
        );
        metric(
            "redis_received_total",
            "counter",
            "Messages from other instances delivered from the Redis channel.",
            &one(&self.redis_received),
        );
        metric(
            "redis_dropped_total",
            "counter",
            "Messages not published: Redis was unreachable, or more than --redis-max-queue-bytes already waited for it (Pub/Sub keeps nothing).",
            &one(&self.redis_dropped),
        );
        metric(
            "redis_unnumbered_total",
            "counter",
            "Broadcasts and channel messages delivered here without an offset because Redis could not number them in time (away, stalled, or over --redis-max-queue-bytes); no resume is recovered across them.",
            &one(&self.redis_unnumbered),
        );
        metric(
            "redis_holes_total",
            "counter",
            "Holes published: offsets Redis numbered with no message, telling every instance that broadcasts went out here unnumbered.",
            &one(&self.redis_holes),
        );
        metric(
            "redis_channel_received_total",
            "counter",
            "Messages of channels taken from the workers' Redis subscriptions (each worker subscribes to the channels its clients joined, and only to those).",
            &one(&self.redis_channel_received),
        );
        metric(
            "redis_channel_subscriptions",
            "gauge",
            "Channels the workers' Redis subscriptions follow now (one per channel and worker with a subscriber of it).",
            &one(&self.redis_channel_subscriptions),
        );
        metric(
            "handover_messages_total",
            "counter",
            "Messages over the link between the two processes of a hand-over, by direction.",
            &[
                ("{direction=\"sent\"}".to_owned(), get(&self.handover_sent)),
                (
                    "{direction=\"received\"}".to_owned(),
                    get(&self.handover_received),
                ),
            ],
        );
        metric(
            "handover_queued_bytes",
            "gauge",
            "Bytes waiting for the other process of a hand-over (bounded: past 8 MiB the link is given up).",
            &one(&self.handover_queued_bytes),
        );
        metric(
            "log_lines_dropped_total",
            "counter",
            "Log lines dropped because stderr did not take them in time (a log reader that stalled).",
            &[(String::new(), super::log_writer::dropped_total())],
        );
        let resumes: Vec<_> = RESUME_RESULTS
            .iter()
            .zip(&self.resumes)
            .map(|(result, c)| (format!("{{result=\"{result}\"}}"), get(c)))
            .collect();
        metric(
            "resumes_total",
            "counter",
            "Clients that asked to resume (/ws?since=N&epoch=E), by result.",
            &resumes,
        );
        metric(
            "messages_replayed_total",
            "counter",
            "Replayed messages written to resuming clients' sockets.",
            &one(&self.messages_replayed),
        );
        metric(
            "replays_active",
            "gauge",
            "Resuming clients whose replay is under way (sent as they read).",
            &one(&self.replays_active),
        );
        metric(
            "replays_lost_total",
            "counter",
            "Replays closed with 4002: the history lost a message they still needed.",
            &one(&self.replays_lost),
        );
        metric(
            "authenticated_clients",
            "gauge",
            "WebSocket clients connected with a valid token.",
            &one(&self.authenticated_clients),
        );
        metric(
            "tokens_expired_total",
            "counter",
            "Clients closed with 4001 when their token expired.",
            &one(&self.tokens_expired),
        );
        metric(
            "history_messages",
            "gauge",
            "Messages kept for resume, everyone's and every channel's.",
            &[(String::new(), memory.history_entries as u64)],
        );
        metric(
            "history_bytes",
            "gauge",
            "Bytes of the messages kept for resume (everyone's and every channel's), with each entry's cost and the channels nobody follows.",
            &[(String::new(), memory.history_bytes as u64)],
        );
        metric(
            "channels",
            "gauge",
            "Channels with at least one subscriber.",
            &[(String::new(), memory.channels as u64)],
        );
        metric(
            "channels_held",
            "gauge",
            "Channels the process holds, subscribed or kept for their messages, within --max-channels.",
            &[(String::new(), memory.channels_held as u64)],
        );
        metric(
            "subscriptions",
            "gauge",
            "Subscriptions of connections to channels (user channels included).",
            &[(String::new(), memory.subscriptions as u64)],
        );
        metric(
            "channel_deliveries_total",
            "counter",
            "Messages of channels queued for their subscribers, one per recipient.",
            &one(&self.channel_deliveries),
        );
        metric(
            "deflate_clients",
            "gauge",
            "WebSocket clients that negotiated permessage-deflate.",
            &one(&self.deflate_clients),
        );
        metric(
            "messages_compressed_total",
            "counter",
            "Messages compressed: once per message for everyone or a channel, shared by every client that negotiated.",
            &one(&self.messages_compressed),
        );
        metric(
            "queued_bytes",
            "gauge",
            "Bytes queued for clients (their queues and the turn's broadcasts), counted toward --max-total-queue-bytes.",
            &[(String::new(), memory.queued_bytes as u64)],
        );
        metric(
            "mailbox_bytes",
            "gauge",
            "Bytes of mail between workers not yet taken, counted toward --max-total-queue-bytes.",
            &[(String::new(), memory.mailbox_bytes as u64)],
        );
        metric(
            "receiving_bytes",
            "gauge",
            "Bytes held for messages and requests still being received (--max-total-receive-bytes).",
            &[(String::new(), memory.receiving_bytes as u64)],
        );
        metric(
            "draining",
            "gauge",
            "1 while the server drains, else 0.",
            &[(String::new(), u64::from(draining))],
        );
        let _ = writeln!(
            out,
            "# HELP wsnotify_uptime_seconds Seconds since the process started."
        );
        let _ = writeln!(out, "# TYPE wsnotify_uptime_seconds gauge");
        let _ = writeln!(out, "wsnotify_uptime_seconds {uptime_s:.3}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_follow_the_enum_order() {
        for (i, reason) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{}", reason.label());
        }
        for (i, limit) in Limit::ALL.iter().enumerate() {
            assert_eq!(*limit as usize, i, "{}", limit.label());
        }
    }

    #[test]
    fn exposition_has_help_type_and_samples() {
        let stats = Stats::new(2);
        stats.connection_opened(1);
        stats.handshake_failed(HandshakeFailure::Capacity);
        add(&stats.messages_sent, 3);
        stats.limit_hit(Limit::IdleTimeout);
        add(&stats.resumes[1], 2);
        let memory = Memory {
            queued_bytes: 7,
            mailbox_bytes: 8,
            receiving_bytes: 9,
            history_bytes: 400,
            history_entries: 4,
            channels: 2,
            subscriptions: 5,
            channels_held: 7,
        };
        let text = stats.render(true, 1.5, &memory);
        assert!(text
            .contains("# TYPE wsnotify_connections_active gauge\nwsnotify_connections_active 1\n"));
        assert!(text.contains("wsnotify_worker_connections_active{worker=\"1\"} 1\n"));
        assert!(text.contains("wsnotify_handshake_failures_total{reason=\"capacity\"} 1\n"));
        assert!(text.contains("wsnotify_messages_sent_total 3\n"));
        assert!(text.contains("wsnotify_limit_hits_total{limit=\"idle_timeout\"} 1\n"));
        assert!(text.contains("wsnotify_draining 1\n"));
        assert!(text.contains("wsnotify_resumes_total{result=\"too_old\"} 2\n"));
        assert!(text.contains("wsnotify_history_bytes 400\n"));
        assert!(text.contains("wsnotify_queued_bytes 7\n"));
        assert!(text.contains("wsnotify_channels 2\n"));
        assert!(text.contains("wsnotify_channels_held 7\n"));
        assert!(text.contains("wsnotify_subscriptions 5\n"));
        assert!(text.contains("wsnotify_channel_deliveries_total 0\n"));
        assert!(text.contains("wsnotify_mailbox_bytes 8\n"));
        assert!(text.contains("wsnotify_receiving_bytes 9\n"));
        assert!(text.contains("wsnotify_uptime_seconds 1.500\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} lacks HELP"
            );
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} lacks TYPE"
            );
        }
        stats.connection_closed(1);
        assert_eq!(stats.active(), 0);
    }
}
