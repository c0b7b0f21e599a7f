//! The link: both connections, when each is (re)connected, what a failure
//! leads to, and what may be published. The shell carries out its
//! `LinkOutput`s and hands in `LinkInput`s; the worker takes its `Event`s.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handshake;
use super::queue::Overflow;
use super::returns::Returns;
use super::script;
use super::side::{Awaited, Connection, Event, Failure, Held, Pushed, Side, State, Unanswered};
use super::subscriptions::{Full, Subscriptions};
use crate::config::{LogLevel, RedisUrl};
use crate::log;
use crate::obs::log::{emit, enabled};
use crate::proto::resp;
use crate::rand::Rng;

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// From the start of a TCP connect to the last handshake reply. A peer that
/// never answers (a full backlog, a filtered port) is given up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A publication unanswered this long, or a broadcast not back on the
/// subscription this long, means Redis has stopped (a stall, a half-open
/// connection): broadcasts are no longer left waiting for its numbering,
/// and those that wait are delivered without it (see
/// `RedisLink::sequencing`).
pub const STALLED_AFTER: Duration = Duration::from_millis(250);

/// What the shell saw happen to one side's lookup or socket.
#[derive(Debug)]
pub enum LinkInput<'a> {
    /// The lookup asked for finished.
    Resolved {
        side: Side,
        addrs: Result<Vec<SocketAddr>, String>,
    },
    /// The connect asked for completed.
    Connected { side: Side },
    /// Bytes read from that side's socket.
    Received { side: Side, bytes: &'a [u8] },
    /// A connect, read or write failed, or Redis closed the connection.
    Failed { side: Side, why: String },
}

/// What the shell must do with the sockets, in the order asked.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkOutput {
    Lookup {
        side: Side,
        host: String,
        port: u16,
    },
    Connect {
        side: Side,
        addr: SocketAddr,
    },
    /// Drop that side's socket, and its lookup if one is in flight.
    Close {
        side: Side,
    },
}

#[derive(Debug)]
pub struct RedisLink {
    url: RedisUrl,
    channel: String,
    conns: [Connection; 2],
    rng: Rng,
    /// Bytes of publications that may wait for Redis on this link: those
    /// not yet written, and the broadcasts kept until they come back.
    max_queue: usize,
    overflow: Overflow,
    /// Broadcasts sent for numbering, until they come back.
    returns: Returns,
    /// A hole to publish, for the history of that generation: this worker
    /// handed its clients a broadcast without an offset.
    hole_owed: Option<u64>,
    /// The same for channels: each channel whose message this worker
    /// handed out without an offset, and that generation.
    channel_holes_owed: BTreeMap<Arc<str>, u64>,
    /// The channels the subscription connection follows or should.
    subscriptions: Subscriptions,
    /// Channel messages kept on a publishing connection that was lost
    /// before Redis answered, or that Redis refused: released with the
    /// rest (`release`), at once.
    orphans: Vec<Held>,
    /// When the first of `orphans` was left.
    orphaned_at: Option<Instant>,
    /// The last failure logged, so a failure that repeats (Redis down for
    /// an hour, a wrong password) is logged once, not at every retry.
    last_failure: Option<String>,
    outputs: VecDeque<LinkOutput>,
    events: VecDeque<Event>,
}

impl RedisLink {
    /// A link whose first lookups are due at `now`, whose subscription
    /// follows at most `max_channels` channels.
    pub fn new(
        url: RedisUrl,
        channel: String,
        max_queue: usize,
        max_channels: usize,
        rng: Rng,
        now: Instant,
    ) -> Self {
        RedisLink {
            url,
            subscriptions: Subscriptions::new(channel.clone(), max_channels),
            channel_holes_owed: BTreeMap::new(),
            orphans: Vec::new(),
            orphaned_at: None,
            channel,
            conns: Side::BOTH.map(|side| Connection::new(side, now)),
            rng,
            max_queue,
            overflow: Overflow::default(),
            returns: Returns::default(),
            hole_owed: None,
            last_failure: None,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn handle(&mut self, input: LinkInput<'_>, now: Instant) {
        // What no longer matches the side's state was meant for a socket
        // or lookup the link has already given up.
        match input {
            LinkInput::Resolved { side, addrs } => {
                if matches!(self.conns[side.index()].state, State::Resolving) {
                    self.resolved(side, addrs, now);
                }
            }
            LinkInput::Connected { side } => {
                let conn = &mut self.conns[side.index()];
                if let State::Connecting { deadline, .. } = conn.state {
                    let handshake =
                        handshake::commands(&self.url, &self.channel, side, &mut self.rng);
                    conn.connected(deadline, handshake, &mut self.events);
                }
            }
            LinkInput::Received { side, bytes } => {
                let conn = &mut self.conns[side.index()];
                if !conn.is_connected() {
                    return;
                }
                let was_ready = conn.is_ready();
                let result = conn.received(bytes, &mut self.events);
                if !was_ready && conn.is_ready() {
                    self.last_failure = None;
                    if side == Side::Subscriber {
                        for command in self.subscriptions.resubscribe() {
                            self.conns[side.index()].out.push(&command);
                        }
                    }
                }
                self.take_pushed(side);
                let refused = std::mem::take(&mut self.conns[side.index()].refused);
                if !refused.is_empty() {
                    self.orphans.extend(refused);
                    self.orphaned_at.get_or_insert(now);
                }
                if let Err(failure) = result {
                    self.fail(side, failure, now);
                }
            }
            LinkInput::Failed { side, why } => {
                if !matches!(self.conns[side.index()].state, State::Down { .. }) {
                    self.fail(side, why.into(), now);
                }
            }
        }
    }

    /// Starts the lookups whose backoff is over, gives up the connects and
    /// handshakes that took too long.
    pub fn on_timer(&mut self, now: Instant) {
        for side in Side::BOTH {
            match self.conns[side.index()].state {
                State::Down { retry_at } if now >= retry_at => {
                    self.conns[side.index()].state = State::Resolving;
                    self.outputs.push_back(LinkOutput::Lookup {
                        side,
                        host: self.url.host.clone(),
                        port: self.url.port,
                    });
                }
                State::Connecting { deadline, .. } | State::Handshake { deadline }
                    if now >= deadline =>
                {
                    let why = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                    self.fail(side, why.into(), now);
                }
                _ => {}
            }
        }
    }

    /// When `on_timer` next has something to do, or broadcasts that wait
    /// for their numbering are to be given up (`stalled`); nothing while a
    /// lookup is under way (the shell says when it ends) or while both
    /// sides serve with nothing waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stall = self.waits().then(|| self.stall_at()).flatten();
        let stall = stall.into_iter().chain(self.orphaned_at).min();
        self.conns
            .iter()
            .filter_map(|c| match c.state {
                State::Down { retry_at } => Some(retry_at),
                State::Connecting { deadline, .. } | State::Handshake { deadline } => {
                    Some(deadline)
                }
                State::Resolving | State::Ready => None,
            })
            .chain(stall)
            .min()
    }

    pub fn poll_output(&mut self) -> Option<LinkOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The bytes that side's socket should take now.
    pub fn unsent(&self, side: Side) -> &[u8] {
        let conn = &self.conns[side.index()];
        if conn.is_connected() {
            conn.out.unsent()
        } else {
            &[]
        }
    }

    /// The first `n` bytes of `unsent(side)` were written.
    pub fn written(&mut self, side: Side, n: usize) {
        let conn = &mut self.conns[side.index()];
        conn.out.consume(n);
        if side == Side::Publisher
            && self.overflow.is_active()
            && conn.out.pending() <= self.max_queue / 2
        {
            self.overflow.relieved();
        }
    }

    /// Queues a plain PUBLISH of `payload` (an envelope for one client, or
    /// a broadcast that goes out unnumbered); returns false when it is
    /// dropped: while Redis is away (Pub/Sub keeps nothing for later) or
    /// while more than the cap already waits for it. The shell writes it
    /// with `unsent`.
    pub fn publish(&mut self, payload: &[u8], now: Instant) -> bool {
        let command = resp::command(&[b"PUBLISH", self.channel.as_bytes(), payload]);
        self.queue(command, now)
    }

    /// Queues broadcast `json` for Redis to number and publish to every
    /// instance, this worker included, in the envelope `envelope(seq)`
    /// makes (`seq`: this worker's count of them, see `returned`). It is
    /// kept until it comes back; returns false when it is dropped, as
    /// `publish`.
    pub fn publish_numbered(
        &mut self,
        json: &str,
        envelope: impl FnOnce(u64) -> Vec<u8>,
        now: Instant,
    ) -> bool {
        if !self.is_ready(Side::Publisher) {
            return false;
        }
        let seq = self.returns.next_seq();
        let candidate = format!("{:016x}", self.rng.next_u64());
        let command = script::publish(&self.channel, &candidate, &envelope(seq));
        let queued = self.queue(command, now);
        if queued {
            self.returns.push(seq, json);
        }
        queued
    }

    fn queue(&mut self, command: Vec<u8>, now: Instant) -> bool {
        self.queue_as(command, Awaited::Publication, 0, now)
    }

    /// Queues `command` unless more than the cap would wait for Redis;
    /// `kept`: what the publication keeps besides the command's bytes.
    fn queue_as(&mut self, command: Vec<u8>, what: Awaited, kept: usize, now: Instant) -> bool {
        let conn = &mut self.conns[Side::Publisher.index()];
        if !conn.is_ready() {
            return false;
        }
        let waiting = conn.out.pending() + self.returns.bytes() + conn.held_bytes;
        if waiting > 0 && waiting + command.len() + kept > self.max_queue {
            self.overflow.dropped_one(now, waiting, self.max_queue);
            return false;
        }
        conn.out.push(&command);
        conn.unanswered.push_back(Unanswered::new(what));
        true
    }

    /// This worker's broadcast `seq` came back numbered on its
    /// subscription: it and those before it wait no more.
    pub fn returned(&mut self, seq: u64) {
        self.returns.returned(seq);
    }

    /// Whether broadcasts wait for their numbering while Redis no longer
    /// numbers them (see `sequencing`): time to `release` them.
    pub fn stalled(&self, now: Instant) -> bool {
        !self.orphans.is_empty() || (self.waits() && !self.sequencing(now))
    }

    /// Whether messages of this worker wait for Redis's numbering: broadcasts
    /// to come back, channel messages to be answered.
    fn waits(&self) -> bool {
        !self.returns.is_empty()
            || !self.orphans.is_empty()
            || self.conns[Side::Publisher.index()].held_bytes > 0
    }

    /// Every message still waiting for its numbering, oldest first, with
    /// its `seq` (and its channel, for a channel's): the worker delivers
    /// them itself, without an offset.
    pub fn release(&mut self) -> Vec<Released> {
        let conn = &mut self.conns[Side::Publisher.index()];
        let mut held = std::mem::take(&mut self.orphans);
        self.orphaned_at = None;
        for unanswered in &mut conn.unanswered {
            if let Awaited::Channel(_) = unanswered.what {
                if let Awaited::Channel(h) =
                    std::mem::replace(&mut unanswered.what, Awaited::Publication)
                {
                    held.push(h);
                }
            }
        }
        conn.held_bytes = 0;
        let mut released: Vec<Released> = self
            .returns
            .release()
            .into_iter()
            .map(|(seq, json)| Released {
                seq,
                channel: None,
                json,
            })
            .chain(held.into_iter().map(|h| Released {
                seq: h.seq,
                channel: Some(h.channel),
                json: h.json,
            }))
            .collect();
        released.sort_by_key(|r| r.seq);
        released
    }

    /// The worker's first subscriber of channel `name` joined: its
    /// subscription follows the channel (once Redis confirms, see
    /// `Event::Following`). Refused past the bound.
    pub fn subscribe_channel(&mut self, name: &str) -> Result<(), Full> {
        let conn = &mut self.conns[Side::Subscriber.index()];
        if let Some(command) = self.subscriptions.want(name, conn.is_ready())? {
            conn.out.push(&command);
        }
        Ok(())
    }

    /// The worker's last subscriber of channel `name` left.
    pub fn unsubscribe_channel(&mut self, name: &str) {
        let conn = &mut self.conns[Side::Subscriber.index()];
        if let Some(command) = self.subscriptions.unwant(name, conn.is_ready()) {
            conn.out.push(&command);
        }
    }

    /// Whether this worker's subscription follows channel `name` now.
    pub fn follows(&self, name: &str) -> bool {
        self.subscriptions.follows(name)
    }

    /// How many channels the subscription follows or is to follow.
    pub fn channels_wanted(&self) -> usize {
        self.subscriptions.wanted()
    }

    /// Queues channel message `json` for Redis to number in channel `name`
    /// and publish to every worker that follows it, in the envelope
    /// `envelope(seq)` makes. Kept until Redis answers (its subscription
    /// brings it to this worker's own subscribers, if any); returns false
    /// when it is dropped, as `publish`.
    pub fn publish_channel_numbered(
        &mut self,
        name: &Arc<str>,
        json: &str,
        envelope: impl FnOnce(u64) -> Vec<u8>,
        now: Instant,
    ) -> bool {
        if !self.is_ready(Side::Publisher) {
            return false;
        }
        let seq = self.returns.next_seq();
        let candidate = format!("{:016x}", self.rng.next_u64());
        let command = script::publish_channel(&self.channel, &candidate, name, &envelope(seq));
        let held = Held {
            seq,
            channel: Arc::clone(name),
            json: json.into(),
        };
        let cost = held.cost();
        if !self.queue_as(command, Awaited::Channel(held), cost, now) {
            return false;
        }
        self.conns[Side::Publisher.index()].held_bytes += cost;
        true
    }

    /// Queues a plain PUBLISH of `payload` on channel `name`'s topic (a
    /// channel message that goes out unnumbered); false when dropped.
    pub fn publish_channel(&mut self, name: &str, payload: &[u8], now: Instant) -> bool {
        let topic = script::channel_topic(&self.channel, name);
        let command = resp::command(&[b"PUBLISH", topic.as_bytes(), payload]);
        self.queue(command, now)
    }

    /// Asks Redis where channel `name` stands (answered by
    /// `Event::ChannelPosition`); false if the publishing side is not up.
    pub fn ask_channel_position(&mut self, name: &Arc<str>) -> bool {
        let conn = &mut self.conns[Side::Publisher.index()];
        if !conn.is_ready() {
            return false;
        }
        let candidate = format!("{:016x}", self.rng.next_u64());
        conn.out
            .push(&script::channel_position(&self.channel, &candidate, name));
        conn.unanswered
            .push_back(Unanswered::new(Awaited::ChannelPosition(Arc::clone(name))));
        true
    }

    /// This worker handed its subscribers of channel `name` a message
    /// without an offset while the history was at `generation`: a hole of
    /// that channel is to be numbered after it (`send_holes`). Bounded by
    /// the channels whose messages this worker published.
    pub fn owe_channel_hole(&mut self, name: &Arc<str>, generation: u64) {
        self.channel_holes_owed.insert(Arc::clone(name), generation);
    }

    /// Queues the channel holes owed (one per channel, if none of that
    /// channel waits for its reply), dropping those owed for an older
    /// generation than `generation`. Returns how many were queued.
    pub fn send_channel_holes(&mut self, generation: u64, origin: &str) -> usize {
        let conn = &mut self.conns[Side::Publisher.index()];
        if self.channel_holes_owed.is_empty() || !conn.is_ready() {
            return 0;
        }
        let waiting: Vec<Arc<str>> = conn
            .unanswered
            .iter()
            .filter_map(|u| match &u.what {
                Awaited::ChannelHole(name, _) => Some(Arc::clone(name)),
                _ => None,
            })
            .collect();
        let mut sent = 0;
        let owed = std::mem::take(&mut self.channel_holes_owed);
        for (name, owed_for) in owed {
            if owed_for != generation {
                continue;
            }
            if waiting.contains(&name) {
                self.channel_holes_owed.insert(name, owed_for);
                continue;
            }
            let candidate = format!("{:016x}", self.rng.next_u64());
            conn.out.push(&script::channel_hole(
                &self.channel,
                &candidate,
                &name,
                origin,
            ));
            conn.unanswered
                .push_back(Unanswered::new(Awaited::ChannelHole(name, owed_for)));
            sent += 1;
        }
        sent
    }

    /// Whether channel holes are owed.
    pub fn channel_holes_due(&self) -> bool {
        !self.channel_holes_owed.is_empty() && self.is_ready(Side::Publisher)
    }

    /// Turns what the subscription pushed into events: the stream's own
    /// messages, channels' messages, and the channels followed.
    fn take_pushed(&mut self, side: Side) {
        while let Some(pushed) = self.conns[side.index()].pushed.pop_front() {
            match pushed {
                Pushed::Message { topic, payload } if topic == self.channel.as_bytes() => {
                    self.events.push_back(Event::Message(payload));
                }
                Pushed::Message { topic, payload } => {
                    if let Some(name) = script::channel_of(&self.channel, &topic) {
                        // Only while followed: a message that was on its
                        // way when the channel was left belongs to no one.
                        if self.subscriptions.follows(name) {
                            let channel = name.into();
                            self.events
                                .push_back(Event::ChannelMessage { channel, payload });
                        }
                    }
                }
                Pushed::Confirmed { topic, subscribed } => {
                    if let Some(following) = self.subscriptions.confirmed(&topic, subscribed) {
                        self.events.push_back(Event::Following(following));
                    }
                }
            }
        }
    }

    /// This worker handed its clients a broadcast without an offset while
    /// the history was at `generation`: a hole is to be numbered after it
    /// (`send_hole`).
    pub fn owe_hole(&mut self, generation: u64) {
        self.hole_owed = Some(generation);
    }

    /// A hole is owed and may be queued now (`send_hole`).
    pub fn hole_due(&self) -> bool {
        let conn = &self.conns[Side::Publisher.index()];
        self.hole_owed.is_some()
            && conn.is_ready()
            && !conn.unanswered.iter().any(|u| u.hole().is_some())
    }

    /// Queues the hole owed, if the history is still at the generation it
    /// was owed for (a new epoch already tells everyone that the history
    /// before it is gone) and no other hole waits for its reply: one
    /// queued after every broadcast handed out unnumbered so far covers
    /// them all. Not bounded by the cap: one hole at a time, a few hundred
    /// bytes.
    /// Returns whether one was queued.
    pub fn send_hole(&mut self, generation: u64, origin: &str) -> bool {
        let Some(owed) = self.hole_owed else {
            return false;
        };
        if owed != generation {
            self.hole_owed = None;
            return false;
        }
        if !self.hole_due() {
            return false;
        }
        let conn = &mut self.conns[Side::Publisher.index()];
        let candidate = format!("{:016x}", self.rng.next_u64());
        conn.out
            .push(&script::hole(&self.channel, &candidate, origin));
        conn.unanswered
            .push_back(Unanswered::new(Awaited::Hole(owed)));
        self.hole_owed = None;
        true
    }

    /// Broadcasts sent this turn start their wait for Redis at the next
    /// one (`turn_began`): a worker with nothing else to do must have that
    /// turn soon, or it would neither start the wait nor ever see a stall.
    pub fn wants_next_turn(&self) -> bool {
        self.returns.unstarted()
    }

    /// A loop turn began at `now`. What earlier turns queued was written
    /// at their end (or waits for a socket that does not take it): the wait
    /// for its reply, and for its return on the subscription, counts from
    /// now. Timed from when it was queued, a turn that spent longer than
    /// the limit writing to its clients would leave its own publications
    /// overdue before they were even sent.
    pub fn turn_began(&mut self, now: Instant) {
        for unanswered in &mut self.conns[Side::Publisher.index()].unanswered {
            unanswered.since.get_or_insert(now);
        }
        self.returns.turn_began(now);
    }

    /// When Redis counts as stalled if nothing comes before: the oldest
    /// reply or return due `STALLED_AFTER` after its wait began.
    fn stall_at(&self) -> Option<Instant> {
        let reply = self.conns[Side::Publisher.index()]
            .unanswered
            .front()
            .and_then(|u| u.since)
            .map(|since| since + STALLED_AFTER);
        let back = self.returns.overdue_at(STALLED_AFTER);
        reply.into_iter().chain(back).min()
    }

    /// Redis can number a broadcast now: both connections are up (what it
    /// numbers comes back to this worker) and it answers (no publication
    /// has waited for its reply `STALLED_AFTER` or longer).
    ///
    /// Judged by the clock alone, which is fair only under this contract:
    /// at the start of each loop turn, before it handles any client, the
    /// shell reads every Redis socket that is ready and hands all of it
    /// in, and `now` is that turn's time, not a later clock reading. A
    /// worker that spent longer than the limit writing to its clients has
    /// then read the replies that arrived meanwhile before it asks, so it
    /// does not take its own delay for a stall, which would send
    /// broadcasts around the sequencer, ahead of numbered ones still on
    /// their way back.
    pub fn sequencing(&self, now: Instant) -> bool {
        let overdue = self.stall_at().is_some_and(|at| now >= at);
        self.conns.iter().all(Connection::is_ready) && !overdue
    }

    pub fn is_ready(&self, side: Side) -> bool {
        self.conns[side.index()].is_ready()
    }

    fn resolved(&mut self, side: Side, addrs: Result<Vec<SocketAddr>, String>, now: Instant) {
        let host = &self.url.host;
        let mut addrs = match addrs {
            Ok(addrs) => addrs,
            Err(e) => return self.fail(side, format!("cannot resolve {host}: {e}").into(), now),
        };
        // Tried from the front: popped from the back.
        addrs.reverse();
        match addrs.pop() {
            Some(addr) => self.connect(side, addr, addrs, now),
            None => {
                let why = format!("cannot resolve {host}: no address for the Redis host");
                self.fail(side, why.into(), now);
            }
        }
    }

    fn connect(&mut self, side: Side, addr: SocketAddr, rest: Vec<SocketAddr>, now: Instant) {
        self.conns[side.index()].state = State::Connecting {
            deadline: now + CONNECT_TIMEOUT,
            rest,
        };
        self.outputs.push_back(LinkOutput::Connect { side, addr });
    }

    fn fail(&mut self, side: Side, failure: Failure, now: Instant) {
        let jitter = self.rng.below(1000);
        self.outputs.push_back(LinkOutput::Close { side });
        let conn = &mut self.conns[side.index()];
        // A host with several addresses: the next one before any backoff.
        if let State::Connecting { rest, .. } = &mut conn.state {
            if let Some(addr) = rest.pop() {
                let rest = std::mem::take(rest);
                log!(
                    Debug,
                    "redis address failed; trying the next",
                    reason = failure.why
                );
                return self.connect(side, addr, rest, now);
            }
        }
        let was_ready = conn.is_ready();
        // A hole that may never have reached Redis is owed again; a
        // channel message that may never have is released.
        for unanswered in conn.unanswered.drain(..) {
            match unanswered.what {
                Awaited::Hole(hole) => self.hole_owed = self.hole_owed.or(Some(hole)),
                Awaited::ChannelHole(name, generation) => {
                    self.channel_holes_owed.entry(name).or_insert(generation);
                }
                Awaited::Channel(held) => {
                    self.orphans.push(held);
                    self.orphaned_at.get_or_insert(now);
                }
                Awaited::Publication | Awaited::ChannelPosition(_) => {}
            }
        }
        if side == Side::Subscriber {
            for stopped in self.subscriptions.lost() {
                self.events.push_back(Event::Following(stopped));
            }
        }
        let delay = backoff(conn.attempt, failure.credentials, jitter);
        conn.attempt = conn.attempt.saturating_add(1);
        let unsent = conn.reset(now + delay);
        if was_ready {
            self.events.push_back(Event::Ready(false));
        }
        let repeated = self.last_failure.as_deref() == Some(failure.why.as_str());
        let level = failure_level(repeated, failure.credentials);
        if enabled(level) {
            let msg = if was_ready {
                "redis connection lost; retrying"
            } else {
                "redis connection failed; retrying (repeats are logged at debug level)"
            };
            emit(
                level,
                msg,
                &[
                    ("role", &side.name()),
                    ("reason", &failure.why),
                    ("retry_in_ms", &delay.as_millis()),
                    ("attempt", &conn.attempt),
                    ("unsent_bytes", &unsent),
                ],
            );
        }
        self.last_failure = Some(failure.why);
    }
}

/// A message released unnumbered (see `RedisLink::release`).
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    pub seq: u64,
    /// The channel it was for; None: for everyone.
    pub channel: Option<Arc<str>>,
    pub json: Box<str>,
}

/// The wait before the next attempt after `attempt` failures in a row:
/// doubling from `BACKOFF_BASE` up to `BACKOFF_MAX`, or the longest at once
/// when Redis refused the credentials (retrying soon cannot help). Full
/// jitter on the upper half, `jitter` being in 0..1000: between 50 % and
/// 100 % of the step, so workers and instances do not retry in step.
fn backoff(attempt: u32, credentials: bool, jitter: u64) -> Duration {
    let step = if credentials {
        BACKOFF_MAX
    } else {
        BACKOFF_BASE
            .saturating_mul(1 << attempt.min(6))
            .min(BACKOFF_MAX)
    };
    step / 2 + step.mul_f64(jitter as f64 / 2000.0)
}

/// A failure is worth an error when only the operator can fix it, a warning
/// otherwise, and a debug line when it only repeats the last one.
fn failure_level(repeated: bool, credentials: bool) -> LogLevel {
    match (repeated, credentials) {
        (true, _) => LogLevel::Debug,
        (false, true) => LogLevel::Error,
        (false, false) => LogLevel::Warn,
    }
}

#[cfg(test)]
mod tests;
