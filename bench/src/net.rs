//! The client event loop: many WebSocket connections on one mio `Poll`.
//!
//! Every connection is read into one loop-wide scratch buffer and its
//! frames are decoded there in place; a connection keeps only the bytes of
//! an incomplete frame. Outgoing frames are encoded into the connection's
//! own buffer and written at once; only what the socket did not take stays
//! queued. Pings are answered, every server frame is checked, and any
//! violation or unexpected close ends that connection and counts an error.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::args::Sources;
use crate::frame::{self, Decoder, Msg, Rng, Step};
use crate::handshake;
use crate::wire;

const SCRATCH: usize = 256 * 1024;
/// Room kept free in the scratch buffer for one read.
const MIN_READ: usize = 16 * 1024;
/// Connections per automatic source address (127.0.0.1, then .2, ...).
pub const PER_SOURCE: usize = 25_000;
/// Error messages printed to stderr before the rest are only counted.
const ERRORS_LOGGED: u64 = 20;

/// When a connection counts as ready.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ReadyOn {
    /// At the validated 101 (`/echo` sends nothing first).
    Open,
    /// At its first text frame (the welcome on `/ws`), which is consumed.
    FirstText,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Connecting,
    Handshaking,
    Open,
    /// Our Close is sent; waiting for the server's Close and TCP close.
    Closing,
}

/// Which of the loop's counters a connection is counted in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    InFlight,
    Ready,
    Closing,
}

/// Where a connection's upgrade request goes when it is not the loop's
/// default (a resume to another server, with its own query).
struct Request {
    host_header: String,
    path: String,
}

pub struct Conn {
    sock: TcpStream,
    request: Option<Box<Request>>,
    phase: Phase,
    ready: bool,
    slot: Slot,
    accept: [u8; 28],
    /// Received bytes not yet decoded (an incomplete frame or head).
    pending: Vec<u8>,
    /// Bytes the socket has not taken yet.
    out: Vec<u8>,
    dec: Decoder,
    /// It offered permessage-deflate.
    offered: bool,
}

/// Sends on one connection from inside a handler callback.
pub struct Tx<'a> {
    out: &'a mut Vec<u8>,
    rng: &'a mut Rng,
}

impl<'a> Tx<'a> {
    /// A sender outside the loop, for handlers' unit tests.
    #[cfg(test)]
    pub fn for_test(out: &'a mut Vec<u8>, rng: &'a mut Rng) -> Tx<'a> {
        Tx { out, rng }
    }

    /// Queues a masked text frame; it is written when the callback returns.
    pub fn text(&mut self, payload: &[u8]) {
        frame::encode(self.out, frame::OP_TEXT, payload, self.rng.mask());
    }

    /// Queues a masked text frame of `len` bytes written by `fill`.
    pub fn text_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) {
        frame::encode_with(self.out, frame::OP_TEXT, len, self.rng.mask(), fill);
    }
}

/// What a mode does with the traffic.
pub trait Handler {
    /// A connection became ready (see `ReadyOn`).
    fn on_ready(&mut self, _id: usize, _tx: &mut Tx, _now_us: u64) {}
    /// A text message on a ready connection. `now_us` is when the read that
    /// brought it returned. An `Err` ends the connection as an error.
    fn on_text(&mut self, id: usize, text: &[u8], tx: &mut Tx, now_us: u64) -> Result<(), String>;
    /// A connection ended with an error.
    fn on_lost(&mut self, _id: usize) {}
    /// An event for a token the handler registered itself.
    fn on_foreign(&mut self, _token: Token, _event: &Event, _now_us: u64) {}
    /// The server sent Close first. True answers it and closes the
    /// connection as planned; false (the default) makes it an error.
    fn on_server_close(&mut self, _id: usize, _code: Option<u16>, _now_us: u64) -> bool {
        false
    }
    /// A connection finished its closing handshake and is dropped (our FIN).
    fn on_finished(&mut self, _id: usize, _now_us: u64) {}
}

struct Progress {
    consumed: usize,
    /// Bytes the incomplete frame at `consumed` needs in all.
    need: usize,
}

impl Conn {
    /// Decodes what `buf` holds: the 101 head first, then frames.
    fn process<H: Handler>(
        &mut self,
        id: usize,
        buf: &[u8],
        rng: &mut Rng,
        ready_on: ReadyOn,
        h: &mut H,
        now_us: u64,
    ) -> Result<Progress, String> {
        let mut pos = 0;
        if self.phase == Phase::Handshaking {
            match handshake::check_response_offered(buf, &self.accept, self.offered)? {
                None => {
                    return Ok(Progress {
                        consumed: 0,
                        need: buf.len() + 1,
                    })
                }
                Some((head, deflate)) => {
                    pos = head;
                    self.phase = Phase::Open;
                    self.dec.deflate = deflate;
                    if deflate {
                        wire::negotiated();
                    }
                    if ready_on == ReadyOn::Open {
                        self.ready = true;
                        h.on_ready(
                            id,
                            &mut Tx {
                                out: &mut self.out,
                                rng,
                            },
                            now_us,
                        );
                    }
                }
            }
        }
        let mut need = 0;
        while pos < buf.len() {
            let step = self
                .dec
                .step(&buf[pos..])
                .map_err(|e| format!("protocol violation: {e}"))?;
            let inflated;
            let step = match step {
                Step::Msg {
                    consumed,
                    msg: Msg::Deflated(payload),
                } => {
                    inflated = wire::inflate_seen(payload)?;
                    Step::Msg {
                        consumed,
                        msg: Msg::Text(&inflated),
                    }
                }
                other => other,
            };
            match step {
                Step::Incomplete { need: n } => {
                    need = n;
                    break;
                }
                Step::Fragment { consumed } => pos += consumed,
                Step::Msg { consumed, msg } => {
                    pos += consumed;
                    let closing = self.phase == Phase::Closing;
                    match msg {
                        Msg::Text(_) | Msg::Binary(_) if closing => {}
                        Msg::Text(_) if !self.ready => {
                            self.ready = true;
                            h.on_ready(
                                id,
                                &mut Tx {
                                    out: &mut self.out,
                                    rng,
                                },
                                now_us,
                            );
                        }
                        Msg::Text(text) => {
                            h.on_text(
                                id,
                                text,
                                &mut Tx {
                                    out: &mut self.out,
                                    rng,
                                },
                                now_us,
                            )?;
                        }
                        Msg::Binary(b) => {
                            return Err(format!("unexpected binary message of {} bytes", b.len()))
                        }
                        Msg::Deflated(_) => unreachable!("inflated above"),
                        Msg::Ping(p) if !closing => {
                            frame::encode(&mut self.out, frame::OP_PONG, p, rng.mask());
                        }
                        Msg::Ping(_) | Msg::Pong(_) => {}
                        Msg::Close(..) if closing => {}
                        Msg::Close(code, _) if h.on_server_close(id, code, now_us) => {
                            frame::encode_close(
                                &mut self.out,
                                code.unwrap_or(1000),
                                "",
                                rng.mask(),
                            );
                            self.phase = Phase::Closing;
                        }
                        Msg::Close(code, reason) => {
                            return Err(format!(
                                "unexpected Close from the server: {} {:?}",
                                code.map_or("(no code)".to_string(), |c| c.to_string()),
                                String::from_utf8_lossy(reason)
                            ))
                        }
                    }
                }
            }
        }
        Ok(Progress {
            consumed: pos,
            need,
        })
    }

    /// Writes queued bytes until done or the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            match self.sock.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if written == self.out.len() {
            self.out.clear();
        } else {
            self.out.drain(..written);
        }
        Ok(())
    }
}

/// How a connection's turn ended.
enum Outcome {
    Alive,
    /// Closed as planned (closing handshake done).
    Finished,
    Failed(String),
}

pub struct Net {
    poll: Poll,
    events: Option<Events>,
    scratch: Vec<u8>,
    conns: Vec<Option<Conn>>,
    pub rng: Rng,
    target: SocketAddr,
    host_header: String,
    path: String,
    sources: Sources,
    ready_on: ReadyOn,
    t0: Instant,
    /// Protocol violations, unexpected closes, failed connects.
    pub errors: u64,
    /// Opened, alive, not yet ready.
    pub in_flight: usize,
    /// Ready and alive.
    pub ready: usize,
    /// Sent our Close, not yet gone.
    pub closing: usize,
    /// When the last connection became ready (µs on this clock).
    pub last_ready_us: u64,
    /// New connections offer permessage-deflate.
    pub deflate: bool,
}

impl Net {
    /// The clients of one run: its server, path and source addresses.
    pub fn for_run(run: &crate::Run, ready_on: ReadyOn) -> io::Result<Net> {
        let a = &run.args;
        let mut net = Net::new(a.host, a.port, &a.path, a.sources.clone(), ready_on, run.t0)?;
        net.deflate = a.deflate;
        Ok(net)
    }

    pub fn new(
        host: Ipv4Addr,
        port: u16,
        path: &str,
        sources: Sources,
        ready_on: ReadyOn,
        t0: Instant,
    ) -> io::Result<Net> {
        Ok(Net {
            poll: Poll::new()?,
            events: Some(Events::with_capacity(4096)),
            scratch: vec![0; SCRATCH],
            conns: Vec::new(),
            rng: Rng::from_entropy(),
            target: SocketAddr::new(IpAddr::V4(host), port),
            host_header: format!("{host}:{port}"),
            path: path.to_string(),
            sources,
            ready_on,
            t0,
            errors: 0,
            in_flight: 0,
            ready: 0,
            closing: 0,
            last_ready_us: 0,
            deflate: false,
        })
    }

    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The source address for the `n`-th connection (None: let the kernel
    /// choose).
    pub fn source_for(&self, n: usize) -> Option<Ipv4Addr> {
        source_for(&self.sources, self.target, n)
    }

    /// Counts an error and prints the first few.
    pub fn error(&mut self, what: &str, msg: &str) {
        self.errors += 1;
        if self.errors <= ERRORS_LOGGED {
            eprintln!("wsload: {what}: {msg}");
        } else if self.errors == ERRORS_LOGGED + 1 {
            eprintln!("wsload: further errors are only counted");
        }
    }

    /// Starts one connection; returns its id (also when it failed at once,
    /// which counts an error).
    pub fn open(&mut self) -> usize {
        let src = self.source_for(self.conns.len());
        self.open_with(self.target, src, None)
    }

    /// Starts one connection to `target` with the upgrade request for
    /// `path` (query included), from `src`; returns its id as `open` does.
    pub fn open_to(&mut self, target: SocketAddr, src: Option<Ipv4Addr>, path: String) -> usize {
        let request = Request {
            host_header: target.to_string(),
            path,
        };
        self.open_with(target, src, Some(Box::new(request)))
    }

    fn open_with(
        &mut self,
        target: SocketAddr,
        src: Option<Ipv4Addr>,
        request: Option<Box<Request>>,
    ) -> usize {
        let id = self.conns.len();
        match connect(target, src) {
            Ok(mut sock) => {
                if let Err(e) = self.poll.registry().register(
                    &mut sock,
                    Token(id),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    self.conns.push(None);
                    self.error(&format!("conn {id}"), &format!("register: {e}"));
                    return id;
                }
                self.conns.push(Some(Conn {
                    sock,
                    request,
                    phase: Phase::Connecting,
                    ready: false,
                    slot: Slot::InFlight,
                    accept: [0; 28],
                    pending: Vec::new(),
                    out: Vec::new(),
                    dec: Decoder::default(),
                    offered: self.deflate,
                }));
                self.in_flight += 1;
            }
            Err(e) => {
                self.conns.push(None);
                self.error(&format!("conn {id}"), &format!("connect: {e}"));
            }
        }
        id
    }

    pub fn is_ready(&self, id: usize) -> bool {
        matches!(self.conns.get(id), Some(Some(c)) if c.ready && c.phase == Phase::Open)
    }

    /// Opens `n` connections, at most `concurrency` of them not yet ready at
    /// any time, and waits until each is ready or lost, or `deadline`.
    /// Returns the ids and whether all of them became ready.
    pub fn connect_many<H: Handler>(
        &mut self,
        n: usize,
        concurrency: usize,
        deadline: Instant,
        h: &mut H,
    ) -> (std::ops::Range<usize>, bool) {
        let first = self.conns.len();
        let errors_before = self.errors;
        let mut started = 0;
        let mut last_report = Instant::now();
        loop {
            while started < n && self.in_flight < concurrency {
                self.open();
                started += 1;
            }
            if started == n && self.in_flight == 0 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let stuck = self.in_flight + (n - started);
                eprintln!(
                    "wsload: setup timed out with {} of {n} connections ready",
                    self.ready
                );
                self.errors += stuck as u64;
                return (first..first + started, false);
            }
            if now.duration_since(last_report) >= Duration::from_secs(2) {
                last_report = now;
                eprintln!("wsload: {} connections ready", self.ready);
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            self.poll_once(Some(wait), h);
        }
        let ok = self.errors == errors_before && (first..first + n).all(|id| self.is_ready(id));
        (first..first + n, ok)
    }

    /// Waits for events (up to `timeout`) and handles them.
    pub fn poll_once<H: Handler>(&mut self, timeout: Option<Duration>, h: &mut H) {
        let mut events = self.events.take().expect("events are put back");
        if let Err(e) = self.poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.error("poll", &e.to_string());
            }
        }
        for ev in events.iter() {
            let id = ev.token().0;
            if id >= self.conns.len() {
                let now = self.now_us();
                h.on_foreign(ev.token(), ev, now);
                continue;
            }
            self.service(id, ev, h);
        }
        self.events = Some(events);
    }

    fn service<H: Handler>(&mut self, id: usize, ev: &Event, h: &mut H) {
        let Net {
            conns,
            scratch,
            rng,
            ready_on,
            t0,
            host_header,
            path,
            ..
        } = self;
        let Some(conn) = conns[id].as_mut() else {
            return;
        };
        let outcome = drive(
            conn,
            id,
            ev,
            scratch,
            rng,
            *ready_on,
            *t0,
            host_header,
            path,
            h,
        );
        self.recount(id);
        match outcome {
            Outcome::Alive => {}
            Outcome::Finished => {
                self.remove(id, None, h);
                let now = self.now_us();
                h.on_finished(id, now);
            }
            Outcome::Failed(msg) => self.remove(id, Some(msg), h),
        }
    }

    fn count_mut(&mut self, slot: Slot) -> &mut usize {
        match slot {
            Slot::InFlight => &mut self.in_flight,
            Slot::Ready => &mut self.ready,
            Slot::Closing => &mut self.closing,
        }
    }

    /// Moves a connection to the counter its state calls for.
    fn recount(&mut self, id: usize) {
        let Some(conn) = self.conns[id].as_mut() else {
            return;
        };
        let want = if conn.phase == Phase::Closing {
            Slot::Closing
        } else if conn.ready {
            Slot::Ready
        } else {
            Slot::InFlight
        };
        let was = conn.slot;
        if want == was {
            return;
        }
        conn.slot = want;
        *self.count_mut(was) -= 1;
        *self.count_mut(want) += 1;
        if want == Slot::Ready {
            self.last_ready_us = self.now_us();
        }
    }

    /// Drops a connection; `err` counts as an error unless we were closing.
    fn remove<H: Handler>(&mut self, id: usize, err: Option<String>, h: &mut H) {
        let Some(conn) = self.conns[id].take() else {
            return;
        };
        *self.count_mut(conn.slot) -= 1;
        if let Some(msg) = err {
            if conn.phase != Phase::Closing || msg.starts_with("protocol violation") {
                self.error(&format!("conn {id} ({:?})", conn.phase), &msg);
                h.on_lost(id);
            }
        }
    }

    /// Runs `f` with a sender for a ready, open connection and writes what
    /// it queued. None if the connection is not ready; an `Err` is a failed
    /// write, for the caller to pass to `fail`.
    pub fn with_tx(&mut self, id: usize, f: impl FnOnce(&mut Tx)) -> Option<io::Result<()>> {
        let Some(Some(conn)) = self.conns.get_mut(id) else {
            return None;
        };
        if conn.phase != Phase::Open || !conn.ready {
            return None;
        }
        f(&mut Tx {
            out: &mut conn.out,
            rng: &mut self.rng,
        });
        Some(conn.flush())
    }

    /// Queues a text frame on a ready connection and writes it. False if
    /// the connection is not ready or the write failed (an error).
    pub fn send_text<H: Handler>(&mut self, id: usize, payload: &[u8], h: &mut H) -> bool {
        match self.with_tx(id, |tx| tx.text(payload)) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                self.fail(id, format!("write: {e}"), h);
                false
            }
            None => false,
        }
    }

    /// Ends a connection as an error.
    pub fn fail<H: Handler>(&mut self, id: usize, msg: String, h: &mut H) {
        self.remove(id, Some(msg), h);
    }

    /// Handles events until `until` or `safety`; false if `safety` passed.
    pub fn run_until<H: Handler>(&mut self, until: Instant, safety: Instant, h: &mut H) -> bool {
        loop {
            let now = Instant::now();
            if now >= safety {
                return false;
            }
            if now >= until {
                return true;
            }
            self.poll_once(Some(until.min(safety) - now), h);
        }
    }

    /// Starts the closing handshake (Close 1000) of an open connection, or
    /// drops one that is not open yet; nothing it receives from now on
    /// reaches the handler.
    fn close<H: Handler>(&mut self, id: usize, h: &mut H) {
        let Some(Some(conn)) = self.conns.get_mut(id) else {
            return;
        };
        match conn.phase {
            Phase::Open => {
                frame::encode_close(&mut conn.out, 1000, "", self.rng.mask());
                conn.phase = Phase::Closing;
                let failed = conn.flush().is_err();
                self.recount(id);
                if failed {
                    self.remove(id, None, h);
                }
            }
            Phase::Closing => {}
            Phase::Connecting | Phase::Handshaking => self.remove(id, None, h),
        }
    }

    /// Sends Close 1000 on an open connection and closes its socket at
    /// once, without waiting for the answer; nothing counts as an error.
    pub fn abandon<H: Handler>(&mut self, id: usize, h: &mut H) {
        if let Some(Some(conn)) = self.conns.get_mut(id) {
            if conn.phase == Phase::Open {
                frame::encode_close(&mut conn.out, 1000, "", self.rng.mask());
                // Best effort: the socket is closed whatever it took.
                let _ = conn.flush();
            }
        }
        self.remove(id, None, h);
    }

    /// Sends Close 1000 on every open connection, drops the others, and
    /// waits up to `grace` for the closing handshakes to finish.
    pub fn close_all<H: Handler>(&mut self, grace: Duration, h: &mut H) {
        for id in 0..self.conns.len() {
            self.close(id, h);
        }
        let deadline = Instant::now() + grace;
        while self.closing > 0 {
            let now = Instant::now();
            if now >= deadline {
                eprintln!(
                    "wsload: {} connections had not finished closing after {:?}; dropped",
                    self.closing, grace
                );
                break;
            }
            self.poll_once(Some(deadline - now), h);
        }
        for id in 0..self.conns.len() {
            self.conns[id] = None;
        }
        self.closing = 0;
    }
}

/// The source address for the `n`-th connection.
pub fn source_for(sources: &Sources, target: SocketAddr, n: usize) -> Option<Ipv4Addr> {
    match sources {
        Sources::List(list) => Some(list[n % list.len()]),
        Sources::Auto => {
            if !target.ip().is_loopback() {
                return None;
            }
            let k = (n / PER_SOURCE) as u32;
            Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k))
        }
    }
}

/// A non-blocking TCP socket with TCP_NODELAY, bound to `src` (port chosen
/// at connect time, so ports are shared across destinations), connecting.
pub fn connect(target: SocketAddr, src: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::IPV4,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_nodelay(true)?;
    if let Some(src) = src {
        let one: libc::c_int = 1;
        // SAFETY: a plain int option on a socket we own.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        sock.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// Checks a non-blocking connect: Ok(true) connected, Ok(false) still going.
pub fn connect_done(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// One readiness event for one connection: finish connecting, read and
/// decode everything available, write what is queued.
#[allow(clippy::too_many_arguments)]
fn drive<H: Handler>(
    conn: &mut Conn,
    id: usize,
    ev: &Event,
    scratch: &mut Vec<u8>,
    rng: &mut Rng,
    ready_on: ReadyOn,
    t0: Instant,
    host_header: &str,
    path: &str,
    h: &mut H,
) -> Outcome {
    if conn.phase == Phase::Connecting {
        match connect_done(&conn.sock) {
            Ok(true) => {
                let (key, accept) = handshake::new_key(rng);
                conn.accept = accept;
                let (host_header, path) = match &conn.request {
                    Some(r) => (r.host_header.as_str(), r.path.as_str()),
                    None => (host_header, path),
                };
                handshake::write_request(&mut conn.out, host_header, path, &key, conn.offered);
                conn.phase = Phase::Handshaking;
            }
            Ok(false) => return Outcome::Alive,
            Err(e) => return Outcome::Failed(format!("connect: {e}")),
        }
    } else if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
        let mut filled = 0;
        if !conn.pending.is_empty() {
            let l = conn.pending.len();
            if scratch.len() < l + MIN_READ {
                scratch.resize(l + MIN_READ, 0);
            }
            scratch[..l].copy_from_slice(&conn.pending);
            conn.pending.clear();
            if conn.pending.capacity() > SCRATCH {
                conn.pending = Vec::new();
            }
            filled = l;
        }
        let mut eof = false;
        loop {
            if scratch.len() - filled < MIN_READ {
                scratch.resize(filled + MIN_READ, 0);
            }
            let space = scratch.len() - filled;
            match conn.sock.read(&mut scratch[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    wire::read(n);
                    filled += n;
                    let now_us = t0.elapsed().as_micros() as u64;
                    let p = match conn.process(id, &scratch[..filled], rng, ready_on, h, now_us) {
                        Ok(p) => p,
                        Err(msg) => return Outcome::Failed(msg),
                    };
                    scratch.copy_within(p.consumed..filled, 0);
                    filled -= p.consumed;
                    if p.need > scratch.len() {
                        scratch.resize(p.need + MIN_READ, 0);
                    }
                    // A short read drained the socket, and edge-triggered
                    // readiness reports new data: no extra read, unless
                    // the peer's FIN is already in (no event would follow).
                    if n < space && !ev.is_read_closed() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Outcome::Failed(format!("read: {e}")),
            }
        }
        if filled > 0 {
            conn.pending.extend_from_slice(&scratch[..filled]);
        }
        if eof {
            if conn.phase == Phase::Closing {
                return Outcome::Finished;
            }
            return Outcome::Failed(format!(
                "the server closed the TCP connection ({:?}, {} bytes undecoded)",
                conn.phase, filled
            ));
        }
    }
    if let Err(e) = conn.flush() {
        return Outcome::Failed(format!("write: {e}"));
    }
    Outcome::Alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_sources_move_on_every_25000() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(
            source_for(&Sources::Auto, t, 0),
            Some(Ipv4Addr::new(127, 0, 0, 1))
        );
        assert_eq!(
            source_for(&Sources::Auto, t, 24_999),
            Some(Ipv4Addr::new(127, 0, 0, 1))
        );
        assert_eq!(
            source_for(&Sources::Auto, t, 25_000),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_for(&Sources::Auto, t, 60_000),
            Some(Ipv4Addr::new(127, 0, 0, 3))
        );
        let remote: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert_eq!(source_for(&Sources::Auto, remote, 0), None);
        let list = Sources::List(vec![
            Ipv4Addr::new(127, 0, 0, 5),
            Ipv4Addr::new(127, 0, 0, 6),
        ]);
        assert_eq!(source_for(&list, t, 3), Some(Ipv4Addr::new(127, 0, 0, 6)));
    }
}
