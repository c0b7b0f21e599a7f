//! One worker as data: everything a worker knows and decides, with no
//! socket, no `mio` and no clock. The shell hands it what happened
//! (`accept`, `handle` with an [`Input`]) and the time of the loop turn
//! ([`Now`]); once per turn it lets it write (`transmit`, through a
//! [`Transmit`] it lends), then carries out what it asks ([`Output`]s from
//! `poll_output`) and sleeps until `poll_timeout`. Two nodes (two workers,
//! or an old and a new process) can be driven against each other in a
//! test with no socket at all; see `tests/`.
//!
//! Inside, components own their data and keep their own counts: the
//! connections table (`conns`), the turn's broadcasts (`fanout`), the
//! channels' subscribers (`channels`), the place
//! in the stream (`stream`), the replays of resuming clients (`replays`),
//! the drain (`drain`), the per-address slots (`per_ip`), the
//! authenticated clients (`users`), the periodic timer (`periodic`), the
//! mail (`mail_room`) and the Redis link (`redis`, held in `remote`). The
//! files without a component (`clients`, `subscribing`, `requests`,
//! `delivery`, `channel_delivery`, `channel_sequencing`, `writing`,
//! `lifecycle`, `instances`)
//! are the node's own steps between them.

mod awaiting_follow;
mod channel_delivery;
mod channel_instances;
mod channel_sequencing;
mod channels;
mod clients;
mod clock;
mod compressor;
mod conns;
mod delivery;
mod drain;
mod fanout;
mod held_back;
mod input;
mod instances;
mod lifecycle;
pub mod listener_state;
mod mail_room;
pub mod mailbox;
mod notice;
mod output;
pub mod peer;
mod per_ip;
mod periodic;
mod pressure;
pub mod process;
mod queue_bound;
mod queue_total;
pub mod redis;
mod remote;
mod replay;
mod requests;
mod stream;
mod subscribing;
mod timer_wheel;
mod transmit;
mod users;
mod writing;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use clock::Now;
pub use conns::CONNECTION_BYTES;
pub use input::{Input, MayRead};
pub use output::Output;
pub use process::Process;
pub use transmit::Transmit;

use crate::app::hub::{Client, Here, Hub};
use crate::app::snapshot::Snapshot;
use crate::conn::{Ending, Event, Settings, Stage};
use crate::ids::ConnKey;
use crate::log;
use crate::obs::metrics::{self, Limit};
use crate::proto::close::CloseCode;
use crate::proto::deflate::{Deflater, Inflater};
use crate::rand::Rng;
use channels::Channels;
use clock::{ticks, Clock};
use compressor::Compressor;
use conns::{Conn, Conns};
use drain::Drain;
use fanout::Fanout;
use held_back::HeldBack;
use mail_room::MailRoom;
use per_ip::PerIpSlots;
use periodic::Periodic;
use remote::Remote;
use replay::Replays;
use stream::StreamCursor;
use timer_wheel::{Entry, Tick};
use users::Users;

/// How long a closing connection may take to read our last bytes and close.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Node {
    /// This worker's index in the process.
    id: usize,
    process: Arc<Process>,
    clock: Clock,
    conns: Conns,
    /// The `/ws` clients by id.
    hub: Hub,
    /// The identities of the clients that joined with a token.
    users: Users,
    fanout: Fanout,
    compressor: Compressor,
    /// Each channel's subscribers among this worker's clients.
    channels: Channels,
    stream: StreamCursor,
    replays: Replays,
    drain: Drain,
    per_ip: PerIpSlots,
    periodic: Periodic,
    mail: MailRoom,
    remote: Option<Remote>,
    /// This worker's share of `--max-total-queue-bytes`: past the bound, a
    /// worker holding more than this drops its largest queues.
    queue_budget: usize,
    /// Reads waiting for the process to be within the total queue bound.
    held_back: HeldBack,
    /// This worker's share of `--max-total-receive-bytes`.
    receive_budget: usize,
    rng: Rng,
    outputs: VecDeque<Output>,
    /// The worker's one decompressor, reset per message: no connection
    /// keeps compression state (see `proto::negotiate`).
    inflater: Inflater,
    /// The worker's compressor for what `/echo` sends back compressed.
    deflater: Deflater,
}

impl Node {
    /// Worker `id` of `process`, starting at `now`; `seed` makes its random
    /// choices (reconnect delays, Redis backoff).
    pub fn new(id: usize, process: Arc<Process>, now: Now, seed: u64) -> Node {
        let config = &process.config;
        let settings = Settings {
            header: ticks(config.header_timeout),
            idle: config.idle_timeout.map(ticks),
            ping: config.ping_interval.map(ticks),
            linger: ticks(CLOSE_LINGER),
            max_message: config.max_message_bytes,
            max_queue: config.max_queue_bytes,
        };
        let mut rng = Rng::seeded(seed);
        let periodic = Periodic::new(config.notify_interval.filter(|_| id == 0), now.at);
        let remote = config
            .redis
            .clone()
            .map(|url| Remote::new(url, config, Rng::seeded(rng.next_u64()), now.at));
        Node {
            id,
            conns: Conns::new(settings, 0).share_receiving(Arc::clone(&process.receiving)),
            hub: Hub::default(),
            users: Users::default(),
            fanout: Fanout::default(),
            compressor: Compressor::default(),
            channels: Channels::default(),
            stream: StreamCursor::default(),
            replays: Replays::default(),
            drain: Drain::new(config.drain_timeout, CLOSE_LINGER),
            per_ip: PerIpSlots::default(),
            periodic,
            mail: MailRoom::default(),
            remote,
            queue_budget: (config.max_total_queue_bytes / config.workers).max(1),
            held_back: HeldBack::default(),
            receive_budget: (config.max_total_receive_bytes / config.workers).max(1),
            clock: Clock::new(now),
            rng,
            outputs: VecDeque::new(),
            inflater: Inflater::new(),
            deflater: Deflater::new(),
            process,
        }
    }

    /// A connection the shell accepted from `peer`: the key its socket is to
    /// be known by.
    pub fn accept(&mut self, peer: SocketAddr, now: Now) -> ConnKey {
        self.at(now);
        let key = self.conns.open(peer, self.clock.tick());
        log!(Trace, "connection accepted", peer = peer, worker = self.id);
        self.admit_per_ip(key, peer);
        key
    }

    /// Whether the shell may accept another connection. Not once the
    /// process drains while another process serves its sockets: the
    /// worker may not have seen the drain yet (its `StopAccepting` comes
    /// with its next turn), and a connection it took meanwhile would
    /// reach the process that leaves instead of the one that stays.
    pub fn takes_new_connections(&self) -> bool {
        !(self.process.is_draining() && self.process.listener.is_shared())
    }

    pub fn handle(&mut self, input: Input<'_>, now: Now) {
        self.at(now);
        match input {
            // Requests already read, taken before anything new: answering
            // them queues bytes, so they wait like a read past the bound.
            Input::Received { key, bytes: [] }
                if self.stage(key) == Some(Stage::Http) && self.must_wait(key) => {}
            Input::Received { key, bytes } => {
                metrics::add(&self.process.stats.bytes_received, bytes.len() as u64);
                self.receive(key, bytes);
            }
            Input::Quiet(key) => {
                if let Some(Some(event)) = self.drive(key, |conn, _, _| conn.input_quiet()) {
                    self.on_event(key, event);
                }
            }
            Input::Eof(key) => {
                if let Some(Some(event)) = self.drive(key, |conn, now, s| conn.peer_eof(now, s)) {
                    self.on_event(key, event);
                }
            }
            Input::Failed { key, error } => self.remove(key, &format!("socket error: {error}")),
            Input::Writable(key) => self.conns.mark_dirty(key),
            Input::Woken => {
                self.read_mail();
                self.release_reads();
            }
            Input::Redis(input) => self.on_redis(input),
        }
    }

    /// Whatever is due at `now`: Redis reconnects, the periodic
    /// notification, connection timers, the next batch of drain Closes.
    pub fn handle_timeout(&mut self, now: Now) {
        self.at(now);
        self.redis_timers();
        if self.drain.is_running() {
            if let Some(count) = self.periodic.due(self.clock.at()) {
                self.periodic(count);
            }
        }
        if self
            .history_expiry()
            .is_some_and(|at| at <= self.clock.at())
        {
            self.process.stream().expire(self.clock.at());
        }
        self.close_expired();
        let (mut entries, mut due) = (Vec::<Entry>::new(), Vec::new());
        self.conns.due(self.clock.tick(), &mut entries, &mut due);
        for key in due {
            // A ping or an idle Close is output: what went to everyone
            // before it goes first.
            self.fanout.prime(key, &mut self.conns);
            if let Some(Some(event)) = self.drive(key, |conn, now, s| conn.on_deadline(now, s)) {
                self.on_event(key, event);
            }
            self.conns.rearm(key, self.clock.tick());
        }
        if self.drain.closes_pending() {
            self.close_some();
        }
        if !self.held_back.is_empty() {
            self.release_reads();
        }
    }

    /// Writes what is due through `io`: queued answers first, then the
    /// turn's broadcasts (and the drain's notices), then what those left
    /// queued, and Redis commands. The drain moves first, so a drain that
    /// starts now writes each client the turn's broadcasts and its notice in
    /// one pass; and again when clients left meanwhile, or answers a drain
    /// waited for went out, so it sees that in this turn, not at its next
    /// timer.
    pub fn transmit<T: Transmit>(&mut self, io: &mut T, now: Now) {
        self.at(now);
        loop {
            let clients = self.conns.clients();
            let owed = self.answers_owed();
            let done = self.update_lifecycle(owed, io);
            self.write_out(io);
            if done {
                self.retire();
                self.outputs.push_back(Output::Exit);
                return;
            }
            if self.conns.clients() == clients && (owed == 0 || self.answers_owed() == owed) {
                return;
            }
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the node next needs `handle_timeout`: a connection timer, the
    /// periodic notification, a drain deadline, a Redis timer; at once while
    /// drain Closes remain to be sent or replays can go on.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.drain.closes_pending() || self.replays.wants_turn() {
            return Some(self.clock.at());
        }
        // Reads held back are let go by whoever finds the process within
        // the bound; a look every tick as well costs nothing.
        let held_back = (!self.held_back.is_empty())
            .then(|| self.clock.at() + Duration::from_millis(timer_wheel::TICK_MS));
        [
            held_back,
            self.conns.next_tick().map(|t| self.clock.instant_of(t)),
            self.periodic
                .next_deadline()
                .filter(|_| self.drain.is_running()),
            self.drain.next_deadline(),
            self.remote
                .as_ref()
                .and_then(|remote| remote.next_deadline(self.clock.at())),
            self.history_expiry(),
            self.token_expiry(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// When the process's oldest kept broadcast turns `--history-ttl` old.
    /// Worker 0 sees to it (as to the periodic notification), so the
    /// history shrinks on time with no traffic at all.
    fn history_expiry(&self) -> Option<Instant> {
        (self.id == 0)
            .then(|| self.process.stream().next_expiry())
            .flatten()
    }

    /// When the next client's token expires. `exp` is wall-clock time, and
    /// deadlines are monotonic: the wait is measured from this turn's wall
    /// clock, and taken again at every turn, so a wall clock that moved
    /// meanwhile only moves the deadline, and `close_expired` decides by
    /// the wall clock, never before `exp`.
    fn token_expiry(&self) -> Option<Instant> {
        let exp_ms = self.users.next_expiry()?.saturating_mul(1000);
        let wait = exp_ms.saturating_sub(self.clock.wall_ms());
        // An `exp` past what an instant can hold is never.
        self.clock.at().checked_add(Duration::from_millis(wait))
    }

    /// The phase a connection is in, if it is open.
    pub fn stage(&self, key: ConnKey) -> Option<Stage> {
        self.conns.get(key).map(|conn| conn.stage())
    }

    /// What a connection's queue holds, as charged against
    /// `--max-queue-bytes`, if it is open: a harness checks the bound with
    /// it at the end of a turn.
    pub fn queued(&self, key: ConnKey) -> Option<usize> {
        self.conns.get(key).map(|conn| conn.out().held())
    }

    /// Whether the shell should read a connection again in a burst of
    /// reads that began in phase `began`: not while it holds more than one
    /// request can use or its answers pile up unread, and later if its phase
    /// changed (upgraded or closing: the socket may already hold frames or
    /// the FIN, which an edge-triggered poll will not announce again, so the
    /// new phase reads on once the others have had their turn).
    pub fn may_read(&mut self, key: ConnKey, began: Stage) -> MayRead {
        match self.conns.wants_input(key) {
            None => MayRead::No,
            Some(Err(limit)) => {
                if let Some(limit) = limit {
                    self.process.stats.limit_hit(limit);
                }
                MayRead::No
            }
            Some(Ok(stage)) if stage != began => MayRead::Later,
            Some(Ok(Stage::Closing)) => MayRead::Now,
            Some(Ok(_)) if self.must_wait(key) => MayRead::No,
            Some(Ok(_)) => MayRead::Now,
        }
    }

    /// Hands bytes to the connection and carries out each event, in order,
    /// until the bytes are used and no event is left.
    ///
    /// What went to everyone earlier in the turn, its own chats included,
    /// goes to this client before anything the connection answers on its
    /// own (a Pong, its Close): a client gets its answers in the order of
    /// its frames.
    fn receive(&mut self, key: ConnKey, mut input: &[u8]) {
        let closing = self.stage(key) == Some(Stage::Closing);
        self.fanout.prime(key, &mut self.conns);
        loop {
            let inflater = &mut self.inflater;
            let Some((used, event)) = self.conns.drive(key, self.clock.tick(), |conn, now, s| {
                conn.receive(input, now, s, inflater)
            }) else {
                return;
            };
            input = &input[used..];
            match event {
                Some(Event::Message(message)) => {
                    self.on_message(key, message);
                    // What the message sent everyone (a chat) goes to the
                    // sender before whatever its next frames bring back (a
                    // Pong, a Close).
                    self.fanout.prime(key, &mut self.conns);
                }
                Some(event) => self.on_event(key, event),
                None => break,
            }
        }
        if closing {
            // A closing peer's bytes may change what its end waits for.
            self.conns.mark_dirty(key);
        }
        self.bound_receiving();
    }

    /// Past this worker's share of `--max-total-receive-bytes` (unfinished
    /// messages of all its connections), the connection holding the most
    /// is closed with 1009 until the rest fit: however many connections
    /// each hold a message short of `--max-message-bytes`, the process's
    /// total stays bounded.
    fn bound_receiving(&mut self) {
        while self.conns.receiving() > self.receive_budget {
            let Some((key, held)) = self.conns.most_receiving() else {
                return;
            };
            self.process.stats.limit_hit(Limit::TotalReceive);
            log!(
                Warn,
                "closing the connection that holds the most of an unfinished message: the receive bound is reached",
                limit = "total_receive",
                held_bytes = held,
                worker_receiving_bytes = self.conns.receiving(),
                worker_share = self.receive_budget
            );
            self.fanout.prime(key, &mut self.conns);
            let closed = self.drive(key, |conn, now, s| {
                conn.close(CloseCode::MESSAGE_TOO_BIG, "receive bound", now, s)
            });
            match closed {
                Some(Some(event)) => self.on_event(key, event),
                // A request still being sent has no Close to send: the
                // connection goes.
                _ => self.remove(key, &"receive bound"),
            }
        }
    }

    /// Takes the time of the call. The first call of a loop turn also
    /// starts the wait for replies to what Redis was sent in earlier turns.
    fn at(&mut self, now: Now) {
        if self.clock.set(now) {
            if let Some(remote) = &mut self.remote {
                remote.link.turn_began(now.at);
            }
        }
    }

    /// Runs one step of a connection's state machine with the current tick.
    fn drive<R>(
        &mut self,
        key: ConnKey,
        step: impl FnOnce(&mut Conn, Tick, &Settings) -> R,
    ) -> Option<R> {
        self.conns.drive(key, self.clock.tick(), step)
    }

    /// Carries out what a connection reports.
    fn on_event(&mut self, key: ConnKey, event: Event<Client>) {
        match event {
            Event::Request { request, body } => self.on_request(key, request, body),
            Event::Message(message) => self.on_message(key, message),
            Event::Left { client, why } => {
                if let Some(limit) = why.limit() {
                    self.process.stats.limit_hit(limit);
                }
                match why {
                    Ending::Fault(error) => log!(
                        Debug,
                        "protocol violation",
                        client = self.label(key, &client),
                        error = error
                    ),
                    Ending::SlowConsumer => {
                        metrics::add(&self.process.stats.slow_consumers_dropped, 1);
                        log!(
                            Warn,
                            "dropping slow consumer",
                            client = self.label(key, &client)
                        );
                    }
                    _ => {}
                }
                self.leave(key, client, &why);
            }
            Event::Refused(error) => {
                if let Some(limit) = error.limit() {
                    self.process.stats.limit_hit(limit);
                }
                if let Some(peer) = self.conns.get(key).and_then(|conn| conn.peer()) {
                    log!(Debug, "http error", error = error, peer = peer);
                }
            }
            Event::Limit(limit) => self.process.stats.limit_hit(limit),
            // The worker that should have answered has stopped: it had no
            // clients left, so the client asked for is not connected.
            Event::ParkExpired(ticket) => {
                self.answer_parked(key, ticket, crate::app::publish::published(false, 0))
            }
            Event::Closed(why) => self.remove(key, &why),
        }
    }

    /// Removes a connection at once; a WebSocket client still in its phase
    /// leaves first.
    fn remove(&mut self, key: ConnKey, why: &dyn std::fmt::Display) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if let Some(client) = conn.client().copied() {
            self.leave(key, client, why);
        }
        self.per_ip.release(&self.process.per_ip, key);
        self.conns.remove(key);
        self.outputs.push_back(Output::Close(key));
        log!(Trace, "connection closed", conn = key, reason = why);
    }

    /// What the application may know this moment.
    fn snapshot(&self) -> Snapshot {
        self.process.snapshot(self.clock.at(), self.clock.wall_ms())
    }

    /// Where this worker stands, for finding clients by id.
    fn here(&self) -> Here<'_> {
        Here {
            instance: &self.process.instance,
            worker: self.id,
            workers: self.process.config.workers,
            redis: self.remote.is_some(),
            peer: self.process.peer_instance(),
            hub: &self.hub,
            seqs: &self.conns,
        }
    }
}
