//! Redis Pub/Sub, driven by the worker's own event loop: one subscriber and
//! one publisher connection per worker, reconnecting with exponential
//! backoff and jitter. Every worker receives every message from the channel
//! and delivers it to its own clients, so nothing crosses threads on the way
//! in.
//!
//! Nothing here blocks the loop: host names are looked up on a helper
//! thread (`redis_resolve.rs`), connects are non-blocking and time out, and
//! what waits for a slow Redis is capped (`redis_queue.rs`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

pub use super::redis_conn::Event;
use super::redis_conn::{Failure, Role, Side, State};
use super::redis_liveness::{Due, Liveness};
use super::redis_queue::Overflow;
use super::redis_resolve::{system_resolve, Lookup, Resolve, Wake};
use super::redis_stream;
use super::shared::Shared;
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
/// A publication unanswered this long means Redis has stopped (a stall, a
/// half-open connection): broadcasts are no longer left waiting for its
/// numbering (see `sequencing`).
const STALLED_AFTER: Duration = Duration::from_millis(250);

/// How the link reaches outside its sockets.
#[derive(Clone)]
pub struct Outside {
    pub resolve: Resolve,
    pub wake: Wake,
}

impl Outside {
    /// The system resolver, and a waker for `worker` that does not keep the
    /// process state alive in a lookup thread that outlives the worker.
    pub fn for_worker(shared: &Arc<Shared>, worker: usize) -> Outside {
        let shared = Arc::downgrade(shared);
        Outside {
            resolve: system_resolve,
            wake: Arc::new(move || {
                if let Some(shared) = shared.upgrade() {
                    shared.wake_worker(worker);
                }
            }),
        }
    }
}

impl std::fmt::Debug for Outside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outside")
    }
}

#[derive(Debug)]
pub struct RedisLink {
    url: RedisUrl,
    channel: String,
    sides: [Side; 2],
    rng: Rng,
    outside: Outside,
    /// Bytes of publications that may wait for Redis on this link.
    max_queue: usize,
    overflow: Overflow,
    /// The last failure logged, so a failure that repeats (Redis down for
    /// an hour, a wrong password) is logged once, not at every retry.
    last_failure: Option<String>,
    /// When a ready connection pings and when it is given up.
    liveness: Liveness,
}

impl RedisLink {
    pub fn new(
        url: RedisUrl,
        channel: String,
        tokens: [Token; 2],
        max_queue: usize,
        outside: Outside,
        now: Instant,
    ) -> RedisLink {
        RedisLink {
            url,
            channel,
            sides: [
                Side::new(Role::Subscriber, tokens[0], now),
                Side::new(Role::Publisher, tokens[1], now),
            ],
            rng: Rng::from_os(),
            outside,
            max_queue,
            overflow: Overflow::default(),
            last_failure: None,
            liveness: Liveness::default(),
        }
    }

    /// When the link next needs `on_timer`: a reconnect that is due, a
    /// lookup that has finished (already due), a connect timing out, or a
    /// ready connection's PING or verdict (see `redis_liveness`).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sides
            .iter()
            .filter_map(|s| match &s.state {
                State::Down { retry_at } => Some(*retry_at),
                State::Resolving { lookup, since } => lookup.is_done().then_some(*since),
                State::Connecting { deadline, .. } | State::Handshake { deadline } => {
                    Some(*deadline)
                }
                State::Ready => Some(self.liveness.deadline(s)),
            })
            .min()
    }

    /// Moves every side whose moment has come: starts lookups, connects
    /// to looked-up addresses, gives up on attempts that took too long,
    /// pings silent connections and gives up on dead ones.
    pub fn on_timer(&mut self, now: Instant, registry: &Registry, events: &mut Vec<Event>) {
        for i in 0..self.sides.len() {
            match &self.sides[i].state {
                State::Down { retry_at } if now >= *retry_at => {
                    match Lookup::start(
                        &self.url.host,
                        self.url.port,
                        self.outside.resolve,
                        &self.outside.wake,
                    ) {
                        Ok(lookup) => {
                            let done = lookup.is_done();
                            self.sides[i].state = State::Resolving { lookup, since: now };
                            if done {
                                self.resolved(i, now, registry, events);
                            }
                        }
                        Err(e) => {
                            let why = format!("cannot start a lookup: {e}");
                            self.fail(i, now, registry, why.into(), events);
                        }
                    }
                }
                State::Resolving { lookup, .. } if lookup.is_done() => {
                    self.resolved(i, now, registry, events);
                }
                State::Connecting { deadline, .. } | State::Handshake { deadline }
                    if now >= *deadline =>
                {
                    let why = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                    self.fail(i, now, registry, why.into(), events);
                }
                State::Ready => self.keep_alive(i, now, registry, events),
                _ => {}
            }
        }
    }

    /// A PING for a connection silent for a while; a failure for one that
    /// has waited too long for an answer. The socket is read first: a
    /// worker busy for that long may find the answer waiting there.
    fn keep_alive(&mut self, i: usize, now: Instant, registry: &Registry, events: &mut Vec<Event>) {
        match self.liveness.due(&self.sides[i], now) {
            Due::Nothing => {}
            Due::Ping => {
                let side = &mut self.sides[i];
                side.out.push(&resp::command(&[b"PING"]));
                side.unanswered.push_back(now);
                self.pump(i, now, registry, events);
            }
            Due::Dead => {
                self.pump(i, now, registry, events);
                let side = &self.sides[i];
                if matches!(side.state, State::Ready) && self.liveness.due(side, now) == Due::Dead {
                    let why = format!(
                        "no answer from Redis for {} s; the connection is taken as dead",
                        self.liveness.dead_after.as_secs_f64()
                    );
                    self.fail(i, now, registry, why.into(), events);
                }
            }
        }
    }

    fn resolved(&mut self, i: usize, now: Instant, registry: &Registry, events: &mut Vec<Event>) {
        let State::Resolving { lookup, .. } = &self.sides[i].state else {
            return;
        };
        match lookup.addresses() {
            Some(Ok(mut addrs)) => {
                // Tried from the front: popped from the back.
                addrs.reverse();
                self.connect(i, addrs, now, registry, events);
            }
            Some(Err(e)) => {
                let why = format!("cannot resolve {}: {e}", self.url.host);
                self.fail(i, now, registry, why.into(), events);
            }
            None => {}
        }
    }

    /// Starts a connect to the next address of `addrs` that takes one.
    fn connect(
        &mut self,
        i: usize,
        mut addrs: Vec<SocketAddr>,
        now: Instant,
        registry: &Registry,
        events: &mut Vec<Event>,
    ) {
        let mut why = String::from("no address for the Redis host");
        while let Some(addr) = addrs.pop() {
            match self.open(i, addr, registry) {
                Ok(()) => {
                    self.sides[i].state = State::Connecting {
                        deadline: now + CONNECT_TIMEOUT,
                        rest: addrs,
                    };
                    return;
                }
                Err(e) => why = format!("cannot connect to {addr}: {e}"),
            }
        }
        self.fail(i, now, registry, why.into(), events);
    }

    fn open(&mut self, i: usize, addr: SocketAddr, registry: &Registry) -> io::Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        let side = &mut self.sides[i];
        registry.register(
            &mut stream,
            side.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        side.out.clear();
        side.awaiting.clear();
        let url = &self.url;
        let auth: Option<Vec<&[u8]>> = match (&url.username, &url.password) {
            (Some(user), password) => Some(vec![
                b"AUTH",
                user.as_bytes(),
                password.as_deref().unwrap_or("").as_bytes(),
            ]),
            (None, Some(password)) => Some(vec![b"AUTH", password.as_bytes()]),
            (None, None) => None,
        };
        if let Some(auth) = auth {
            side.out.push(&resp::command(&auth));
            side.awaiting.push_back("AUTH");
        }
        if url.db != 0 {
            let db = url.db.to_string();
            side.out.push(&resp::command(&[b"SELECT", db.as_bytes()]));
            side.awaiting.push_back("SELECT");
        }
        match side.role {
            Role::Subscriber => {
                side.out
                    .push(&resp::command(&[b"SUBSCRIBE", self.channel.as_bytes()]));
                side.awaiting.push_back("SUBSCRIBE");
            }
            Role::Publisher => {
                let candidate = format!("{:016x}", self.rng.next_u64());
                side.out
                    .push(&redis_stream::position(&self.channel, &candidate));
                side.awaiting.push_back("POSITION");
            }
        }
        side.inbuf.clear();
        side.stream = Some(stream);
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
        if let Some(i) = self.sides.iter().position(|s| s.token == token) {
            self.pump(i, now, registry, events);
        }
    }

    fn pump(&mut self, i: usize, now: Instant, registry: &Registry, events: &mut Vec<Event>) {
        let side = &mut self.sides[i];
        let Some(mut stream) = side.stream.take() else {
            return;
        };
        let was_ready = matches!(side.state, State::Ready);
        let result = side.pump(&mut stream, now, events);
        side.stream = Some(stream);
        if !was_ready && matches!(side.state, State::Ready) {
            self.last_failure = None;
        }
        if let Err(failure) = result {
            self.fail(i, now, registry, failure, events);
            return;
        }
        if side.role == Role::Publisher
            && self.overflow.is_active()
            && self.sides[i].out.pending() <= self.max_queue / 2
        {
            self.overflow.relieved();
        }
    }

    fn fail(
        &mut self,
        i: usize,
        now: Instant,
        registry: &Registry,
        failure: Failure,
        events: &mut Vec<Event>,
    ) {
        let jitter = self.rng.below(1000);
        let side = &mut self.sides[i];
        if let Some(mut stream) = side.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        // A host with several addresses: the next one before any backoff.
        if let State::Connecting { rest, .. } = &mut side.state {
            if !rest.is_empty() {
                let rest = std::mem::take(rest);
                log!(
                    Debug,
                    "redis address failed; trying the next",
                    reason = failure.why
                );
                self.connect(i, rest, now, registry, events);
                return;
            }
        }
        let was_ready = matches!(side.state, State::Ready);
        let exp = if failure.credentials {
            BACKOFF_MAX
        } else {
            BACKOFF_BASE
                .saturating_mul(1 << side.attempt.min(6))
                .min(BACKOFF_MAX)
        };
        // Full jitter on the upper half: between 50 % and 100 % of the step.
        let delay = exp / 2 + exp.mul_f64(jitter as f64 / 2000.0);
        side.attempt = side.attempt.saturating_add(1);
        side.state = State::Down {
            retry_at: now + delay,
        };
        side.inbuf = Vec::new();
        side.awaiting.clear();
        side.unanswered.clear();
        // A command cut by the failure cannot be finished on a new
        // connection, and Pub/Sub keeps nothing for later anyway.
        let unsent = side.out.clear();
        if was_ready {
            events.push(Event::Ready(false));
        }
        let repeated = self.last_failure.as_deref() == Some(failure.why.as_str());
        let level = match (repeated, failure.credentials) {
            (true, _) => LogLevel::Debug,
            (false, true) => LogLevel::Error,
            (false, false) => LogLevel::Warn,
        };
        if enabled(level) {
            let role = format!("{:?}", side.role).to_lowercase();
            let msg = if was_ready {
                "redis connection lost; retrying"
            } else {
                "redis connection failed; retrying (repeats are logged at debug level)"
            };
            emit(
                level,
                msg,
                &[
                    ("role", &role),
                    ("reason", &failure.why),
                    ("retry_in_ms", &delay.as_millis()),
                    ("attempt", &side.attempt),
                    ("unsent_bytes", &unsent),
                ],
            );
        }
        self.last_failure = Some(failure.why);
    }

    /// Redis can number a broadcast now: both connections are up (what it
    /// numbers comes back to this worker) and it answers (no publication
    /// or PING has waited for its reply longer than `STALLED_AFTER`). A
    /// reply the clock says is overdue is looked for on the socket first:
    /// a worker that spent that long writing to its clients reads Redis
    /// late, and taking its own delay for a stall would send broadcasts
    /// around the sequencer, ahead of numbered ones still on their way
    /// back.
    pub fn sequencing(
        &mut self,
        now: Instant,
        registry: &Registry,
        events: &mut Vec<Event>,
    ) -> bool {
        let ready = |link: &RedisLink| link.sides.iter().all(|s| matches!(s.state, State::Ready));
        if !ready(self) {
            return false;
        }
        if self.overdue(now) {
            self.pump(1, now, registry, events);
        }
        ready(self) && !self.overdue(now)
    }

    /// A publication (or PING) has waited for its reply `STALLED_AFTER` or
    /// longer.
    fn overdue(&self, now: Instant) -> bool {
        self.sides[1]
            .unanswered
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= STALLED_AFTER)
    }

    /// Queues a PUBLISH (`numbered`: through the sequencer script, see
    /// `redis_stream`); returns false when the message is dropped: while
    /// Redis is away (Pub/Sub keeps nothing for later) or while more than
    /// the cap already waits for it.
    pub fn publish(
        &mut self,
        payload: &[u8],
        numbered: bool,
        events: &mut Vec<Event>,
        now: Instant,
        registry: &Registry,
    ) -> bool {
        if !matches!(self.sides[1].state, State::Ready) {
            return false;
        }
        let command = if numbered {
            let candidate = format!("{:016x}", self.rng.next_u64());
            redis_stream::publish(&self.channel, &candidate, payload)
        } else {
            resp::command(&[b"PUBLISH", self.channel.as_bytes(), payload])
        };
        let side = &mut self.sides[1];
        let queued = side.out.pending();
        if queued > 0 && queued + command.len() > self.max_queue {
            self.overflow.dropped_one(now, queued, self.max_queue);
            return false;
        }
        side.out.push(&command);
        side.unanswered.push_back(now);
        self.pump(1, now, registry, events);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Waker};
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const WAKER: Token = Token(9);

    /// A resolver as slow as DNS on a bad day.
    fn slow_loopback(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_millis(500));
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    /// A fake Redis that accepts both connections and answers SUBSCRIBE and
    /// the stream position.
    fn fake_redis() -> (u16, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut held = Vec::new();
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let mut buf = [0u8; 256];
                let n = stream.read(&mut buf).unwrap_or(0);
                let asked = |word: &[u8]| buf[..n].windows(word.len()).any(|w| w == word);
                if asked(b"SUBSCRIBE") {
                    stream
                        .write_all(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
                        .unwrap();
                } else if asked(b"EVAL") {
                    stream.write_all(b"*2\r\n$2\r\ne1\r\n:0\r\n").unwrap();
                }
                held.push(stream);
            }
            std::thread::sleep(Duration::from_secs(1));
        });
        (port, server)
    }

    #[test]
    fn a_slow_lookup_never_blocks_the_loop_and_wakes_it_when_done() {
        let (port, server) = fake_redis();
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
        let outside = Outside {
            resolve: slow_loopback,
            wake: Arc::new(move || {
                let _ = waker.wake();
            }),
        };
        let url: RedisUrl = format!("redis://redis.test:{port}").parse().unwrap();
        let tokens = [Token(1), Token(2)];
        let mut link = RedisLink::new(url, "ch".into(), tokens, 1024, outside, Instant::now());
        let mut events = Vec::new();

        let started = Instant::now();
        link.on_timer(Instant::now(), poll.registry(), &mut events);
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(link.next_deadline(), None, "nothing due while looking up");

        let mut ready = Events::with_capacity(8);
        poll.poll(&mut ready, Some(Duration::from_secs(5))).unwrap();
        assert!(ready.iter().any(|e| e.token() == WAKER), "woken");
        assert!(link.next_deadline().is_some_and(|at| at <= Instant::now()));

        until_ready(&mut link, &mut poll, &mut events);
        let mut events = Vec::new();
        assert!(link.publish(b"hi", false, &mut events, Instant::now(), poll.registry()));
        server.join().unwrap();
    }

    /// The worker's loop, in short, until both connections are ready.
    fn until_ready(link: &mut RedisLink, poll: &mut Poll, events: &mut Vec<Event>) {
        let end = Instant::now() + Duration::from_secs(5);
        while events.iter().filter(|e| **e == Event::Ready(true)).count() < 2 {
            assert!(Instant::now() < end, "not ready: {link:?}");
            turn(link, poll, events);
        }
    }

    /// One turn of the worker's loop: the link's timer if due, then a wait
    /// of at most 100 ms for its sockets.
    fn turn(link: &mut RedisLink, poll: &mut Poll, events: &mut Vec<Event>) {
        let mut ready = Events::with_capacity(8);
        if link.next_deadline().is_some_and(|at| at <= Instant::now()) {
            link.on_timer(Instant::now(), poll.registry(), events);
        }
        let wait = link
            .next_deadline()
            .map_or(Duration::from_millis(100), |at| {
                at.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            });
        poll.poll(&mut ready, Some(wait)).unwrap();
        for event in ready.iter().filter(|e| e.token() != WAKER) {
            link.on_ready(event.token(), Instant::now(), poll.registry(), events);
        }
    }

    fn loopback(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    /// A fake Redis for publications: the handshakes as `fake_redis`, on
    /// every connection it is offered, then every later EVAL (a numbered
    /// publication) answered at once, or never when `answers` is false (a
    /// stalled Redis), and every PING answered when `pongs` (as a
    /// subscribed connection or a plain one). Serves for `for_how_long`.
    fn publishing_redis(answers: bool, pongs: bool, for_how_long: Duration) -> FakeRedis {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let fake = FakeRedis {
            port: listener.local_addr().unwrap().port(),
            accepted: Arc::default(),
            pings: Arc::default(),
        };
        let (accepted, pings) = (Arc::clone(&fake.accepted), Arc::clone(&fake.pings));
        std::thread::spawn(move || {
            let end = Instant::now() + for_how_long;
            while Instant::now() < end {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let pings = Arc::clone(&pings);
                std::thread::spawn(move || serve(stream, answers, pongs, end, &pings));
            }
        });
        fake
    }

    /// One connection of `publishing_redis`.
    fn serve(
        mut stream: std::net::TcpStream,
        answers: bool,
        pongs: bool,
        end: Instant,
        pings: &AtomicUsize,
    ) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        let mut evals = 0;
        let mut subscribed = false;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            let Ok(n) = stream.read(&mut buf) else {
                continue;
            };
            if n == 0 {
                return;
            }
            let count = |word: &[u8]| buf[..n].windows(word.len()).filter(|w| *w == word).count();
            let mut reply: Vec<u8> = Vec::new();
            if count(b"SUBSCRIBE") > 0 {
                subscribed = true;
                reply.extend(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
            } else if count(b"EVAL") > 0 {
                evals += 1;
                match (evals, answers) {
                    (1, _) => reply.extend(b"*2\r\n$2\r\ne1\r\n:0\r\n"),
                    (_, true) => reply.extend(b":1\r\n"),
                    (_, false) => {}
                }
            }
            let asked = count(b"PING");
            pings.fetch_add(asked, Ordering::SeqCst);
            let pong: &[u8] = if subscribed {
                b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
            } else {
                b"+PONG\r\n"
            };
            for _ in 0..asked {
                if pongs {
                    reply.extend(pong);
                }
            }
            if stream.write_all(&reply).is_err() {
                return;
            }
        }
    }

    struct FakeRedis {
        port: u16,
        /// Connections accepted: more than two are reconnects.
        accepted: Arc<AtomicUsize>,
        /// PINGs received on all of them.
        pings: Arc<AtomicUsize>,
    }

    /// A link to `port`, both connections ready.
    fn ready_link(port: u16, poll: &mut Poll) -> RedisLink {
        let outside = Outside {
            resolve: loopback,
            wake: Arc::new(|| {}),
        };
        let url: RedisUrl = format!("redis://127.0.0.1:{port}").parse().unwrap();
        let tokens = [Token(1), Token(2)];
        let mut link = RedisLink::new(url, "ch".into(), tokens, 1 << 20, outside, Instant::now());
        let mut events = Vec::new();
        link.on_timer(Instant::now(), poll.registry(), &mut events);
        until_ready(&mut link, poll, &mut events);
        link
    }

    #[test]
    fn a_busy_worker_does_not_take_its_own_delay_for_a_stalled_redis() {
        let mut poll = Poll::new().unwrap();
        let fake = publishing_redis(true, true, Duration::from_secs(3));
        let mut link = ready_link(fake.port, &mut poll);
        let mut events = Vec::new();
        assert!(link.publish(b"hi", true, &mut events, Instant::now(), poll.registry()));
        // Redis answers at once, but the worker is busy (writing to its
        // clients) and reads nothing for longer than the stall limit.
        std::thread::sleep(STALLED_AFTER + Duration::from_millis(100));
        assert!(link.sequencing(Instant::now(), poll.registry(), &mut events));
        assert!(link.sides[1].unanswered.is_empty(), "the answer was read");
    }

    #[test]
    fn a_redis_that_stops_answering_is_stalled_after_the_limit() {
        let mut poll = Poll::new().unwrap();
        let fake = publishing_redis(false, true, Duration::from_secs(3));
        let mut link = ready_link(fake.port, &mut poll);
        let mut events = Vec::new();
        assert!(link.publish(b"hi", true, &mut events, Instant::now(), poll.registry()));
        assert!(link.sequencing(Instant::now(), poll.registry(), &mut events));
        std::thread::sleep(STALLED_AFTER + Duration::from_millis(100));
        assert!(!link.sequencing(Instant::now(), poll.registry(), &mut events));
    }

    /// Intervals short enough for a test: a PING after 100 ms of silence,
    /// given up after 300 ms without an answer.
    fn quick(link: &mut RedisLink) {
        link.liveness = Liveness {
            ping_after: Duration::from_millis(100),
            dead_after: Duration::from_millis(300),
        };
    }

    #[test]
    fn a_redis_gone_silent_is_pinged_then_given_up_and_reconnected() {
        let mut poll = Poll::new().unwrap();
        let fake = publishing_redis(false, false, Duration::from_secs(5));
        let mut link = ready_link(fake.port, &mut poll);
        quick(&mut link);
        let silent_since = Instant::now();
        let mut events = Vec::new();
        let end = silent_since + Duration::from_secs(3);
        while !events.contains(&Event::Ready(false)) {
            assert!(Instant::now() < end, "never given up: {link:?}");
            turn(&mut link, &mut poll, &mut events);
        }
        assert!(silent_since.elapsed() >= Duration::from_millis(400));
        assert!(fake.pings.load(Ordering::SeqCst) >= 1, "no PING first");
        assert!(link
            .last_failure
            .as_deref()
            .is_some_and(|why| why.contains("no answer from Redis for 0.3 s")));
        // Both connections: given up, then connected again.
        while events.iter().filter(|e| **e == Event::Ready(true)).count() < 2 {
            assert!(Instant::now() < end, "not reconnected: {events:?}");
            turn(&mut link, &mut poll, &mut events);
        }
        assert_eq!(
            events.iter().filter(|e| **e == Event::Ready(false)).count(),
            2
        );
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_redis_that_answers_pings_keeps_both_connections() {
        let mut poll = Poll::new().unwrap();
        let fake = publishing_redis(true, true, Duration::from_secs(5));
        let mut link = ready_link(fake.port, &mut poll);
        quick(&mut link);
        let mut events = Vec::new();
        let end = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < end {
            turn(&mut link, &mut poll, &mut events);
        }
        assert_eq!(events, [], "a connection was lost");
        assert_eq!(fake.accepted.load(Ordering::SeqCst), 2);
        // Both connections ping about every 100 ms, one PING at a time.
        let pings = fake.pings.load(Ordering::SeqCst);
        assert!((8..=30).contains(&pings), "{pings} PINGs in 1.2 s");
        // The publisher's PONGs kept its bookkeeping in step: a
        // publication is answered, and its answer is the one counted.
        assert!(link.publish(b"hi", true, &mut events, Instant::now(), poll.registry()));
        let end = Instant::now() + Duration::from_secs(1);
        while !link.sides[1].unanswered.is_empty() {
            assert!(Instant::now() < end, "the publication was never answered");
            turn(&mut link, &mut poll, &mut events);
        }
        assert!(link.sequencing(Instant::now(), poll.registry(), &mut events));
    }

    #[test]
    fn a_busy_worker_does_not_take_its_own_delay_for_a_dead_connection() {
        let mut poll = Poll::new().unwrap();
        let fake = publishing_redis(true, true, Duration::from_secs(5));
        let mut link = ready_link(fake.port, &mut poll);
        quick(&mut link);
        let mut events = Vec::new();
        // A PONG may be read right after its PING is written (the fake's
        // thread woken in between): pinged until one is left waiting.
        let waiting = (0..10)
            .find_map(|_| {
                std::thread::sleep(Duration::from_millis(150));
                link.on_timer(Instant::now(), poll.registry(), &mut events);
                link.sides.iter().position(|s| !s.unanswered.is_empty())
            })
            .expect("every PONG read with its PING");
        // Redis answers at once, but the worker reads nothing for longer
        // than the limit.
        std::thread::sleep(Duration::from_millis(500));
        link.on_timer(Instant::now(), poll.registry(), &mut events);
        assert_eq!(events, [], "a connection was given up");
        assert!(link.sides[waiting].unanswered.is_empty());
    }
}
