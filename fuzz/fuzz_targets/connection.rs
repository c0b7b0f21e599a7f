//! Whole connections against the real mio worker: request head, upgrade,
//! frames and close, over a loopback socket.
//!
//! Once per process a `Worker` runs on its own thread with a small
//! configuration (echo on, no periodic notifications and no server pings,
//! `max_message_bytes` 4096, `max_queue_bytes` 64 KiB, a 1 s header timeout).
//! Each input is one connection:
//!
//! - byte 0 picks the path (bits 0-2: `/ws`, `/echo`, `/health`,
//!   `/broadcast` or raw), and flags: bit 3 records (the rest of the input is a
//!   list of frame records the target encodes as masked client frames, for
//!   `/ws` and `/echo`), bit 4 a `yield_now` between chunks, bit 5 a lazy
//!   reader (nothing is read until everything is written), bit 6 a 4 KiB
//!   receive buffer (and with bit 7 of byte 1 a 536-byte MSS), bit 7 the head
//!   split like the rest;
//! - bytes 1 and 2 seed the split points; byte 2 also picks the largest chunk
//!   (bits 0-5) and, with bits 6 and 7 both set, a 2 ms pause before our FIN
//!   so the server answers (or drops a slow consumer) while the connection is
//!   still open;
//! - the rest is sent after a valid head (an upgrade for `/ws` and `/echo`,
//!   `GET /health`, `POST /broadcast` with the rest as its body), or alone for
//!   raw, in chunks: TCP_NODELAY, one `write` per chunk. Then `shutdown(Write)`,
//!   and everything is read until EOF (2 s read timeout).
//!
//! The answer is checked against a model built from the bytes sent, with the
//! server's own sans-I/O parsers (`parse_head`, `body_length`, `Receiver`)
//! deciding where requests end and what messages the frames carry (they have
//! targets of their own). A violation panics, which libFuzzer reports:
//!
//! - no panic anywhere: libfuzzer-sys's panic hook aborts the process, the
//!   worker thread included, and the worker thread must still be running;
//! - the connection ends: EOF (or a reset) within 2 s of each read after our
//!   FIN, and within 5 s in all; a read timeout is a finding;
//! - HTTP: a sequence of complete responses, each `HTTP/1.1` with a known
//!   status and its reason phrase, `Content-Length` and a body of that length
//!   (none for HEAD), one per complete request in order, `100 Continue` only
//!   before the body of a request that expects it, the error status the head
//!   or body length calls for, `Connection: close` on every error that must
//!   close, on `Connection: close` or HTTP/1.0 requests, and nothing after it;
//!   when the server did not close, every complete request was answered;
//! - upgrade: `101` with the right `Sec-WebSocket-Accept`, only for a `GET` of
//!   `/ws` or `/echo`; what follows is a stream of server frames: FIN set, RSV
//!   0, unmasked, a known opcode, the shortest length encoding, control frames
//!   at most 125 bytes, text UTF-8, Close payloads of 0 or 2+ bytes with a
//!   UTF-8 reason, and nothing after a Close;
//! - frames match the messages the client sent: `/echo` reflects Text and
//!   Binary byte for byte, every Ping gets its Pong, a client Close gets its
//!   own code back (or an empty Close), a violation gets a Close with the
//!   receiver's code (1002, 1007, 1009); `/ws` starts with a `welcome` and
//!   answers each data message with one JSON text frame (an `error` for
//!   binary). A Close the server starts itself carries 1000, 1001, 1002, 1007,
//!   1008, 1009 or 1011;
//! - when the client sent a Close or broke the protocol, the server sends all
//!   of its answers; when it only half-closed, a prefix of them (the server
//!   ends such a connection at once); a slow-consumer drop (seen in the
//!   server's counter) leaves a prefix and a 1008 Close;
//! - output is bounded: one response per request (each at most 64 KiB), one
//!   frame per message (a reply at most 6 x its message + 1 KiB: JSON escapes),
//!   `/echo` sends at most its input + 32 bytes, and reading stops with a
//!   failure at 8 MiB;
//! - afterwards no client is left counted (`active` and the `/ws` count are 0).
//!
//! Environment: `WSNOTIFY_FUZZ_DEBUG=1` prints each input's plan, the bytes
//! sent and the bytes received; `WSNOTIFY_FUZZ_HOLD=SECONDS` keeps a
//! connection that never ended open that long before failing, to look at it
//! with `ss -tnpi`.

#![no_main]

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::ops::Range;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;

#[path = "../harness/records.rs"]
mod records;
use records::{encode_records, max_chunk, Path, Rng, KEY};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use wsnotify::config::{Config, LogFormat, LogLevel};
use wsnotify::net::listen;
use wsnotify::net::wakeups::Wakeups;
use wsnotify::net::worker::Worker;
use wsnotify::node::{Now, Process};
use wsnotify::obs::metrics;
use wsnotify::proto::close::CloseCode;
use wsnotify::proto::deflate::Inflater;
use wsnotify::proto::handshake::accept_key;
use wsnotify::proto::http::{body_length, parse_head, BodyLength, Head, Request, Response, Status};
use wsnotify::proto::message::{Message, Receiver};

const MAX_MESSAGE: usize = 4096;
const MAX_QUEUE: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the whole answer may take once we have finished sending.
const END_TIMEOUT: Duration = Duration::from_secs(5);
const SMALL_MSS: u32 = 536;
/// How long `pause` waits before our FIN.
const PAUSE: Duration = Duration::from_millis(2);
/// More output than this is a runaway answer.
const MAX_OUTPUT: usize = 8 << 20;
/// Chunks past this many go out in one last write, so byte-sized splits of
/// a long input do not make one execution slow.
const MAX_CHUNKS: usize = 256;
/// Records can ask for long payloads; the encoded stream stops growing at
/// this many bytes with a lazy reader, a 4 KiB window and a small MSS (a
/// slow consumer needs a few hundred KiB of answers queued)...
const MAX_STREAM: usize = 256 * 1024;
/// ...and at this many otherwise.
const MAX_STREAM_READING: usize = 64 * 1024;
/// The most a single HTTP response may be (the built-in page is ~12 KB).
const MAX_RESPONSE: usize = 64 * 1024;
const MAX_REQUESTS_PER_CONNECTION: usize = 1000;
/// RFC 6455 1.3's example: the accept value for `KEY`.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Codes a Close the server starts itself may carry.
const SERVER_CLOSE_CODES: [u16; 7] = [1000, 1001, 1002, 1007, 1008, 1009, 1011];
/// Statuses the server may answer with.
const KNOWN_STATUSES: [u16; 16] = [
    100, 101, 200, 202, 400, 401, 403, 404, 405, 408, 411, 413, 426, 431, 503, 505,
];
struct Server {
    addr: SocketAddr,
    process: Arc<Process>,
    worker: JoinHandle<io::Result<()>>,
    /// The supervisor's loop, never run: its waker must have one to belong
    /// to.
    _supervisor: mio::Poll,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

/// Binds 127.0.0.1:0 and runs one worker, as `net::supervisor::run` does,
/// without the signal handling.
fn start_server() -> Server {
    assert_eq!(accept_key(KEY), ACCEPT);
    wsnotify::obs::log::init(LogFormat::Text, LogLevel::Error);
    let config = Config {
        host: Ipv4Addr::LOCALHOST.into(),
        port: 0,
        workers: 1,
        notify_interval: None,
        ping_interval: None,
        max_message_bytes: MAX_MESSAGE,
        max_queue_bytes: MAX_QUEUE,
        header_timeout: Duration::from_secs(1),
        enable_echo: true,
        log_level: LogLevel::Error,
        ..Config::default()
    };
    let listener = mio::net::TcpListener::from_std(
        listen::bind_all(SocketAddr::new(config.host, 0), 1)
            .expect("bind")
            .remove(0),
    );
    let addr = listener.local_addr().expect("local address");
    let poll = mio::Poll::new().expect("poll");
    let waker = Worker::waker(&poll).expect("waker");
    let supervisor = mio::Poll::new().expect("poll");
    let supervisor_waker =
        mio::Waker::new(supervisor.registry(), mio::Token(0)).expect("supervisor waker");
    let wakeups = Arc::new(Wakeups::new(vec![waker], supervisor_waker));
    let started = Now {
        at: Instant::now(),
        wall_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let process = Arc::new(Process::new(
        config,
        started.at,
        &mut wsnotify::rand::Rng::from_os(),
    ));
    let worker = Worker::new(
        0,
        Arc::clone(&process),
        wakeups,
        vec![listener],
        poll,
        started,
    )
    .expect("worker");
    let worker = std::thread::Builder::new()
        .name("worker-0".into())
        .spawn(move || worker.run())
        .expect("worker thread");
    Server {
        addr,
        process,
        worker,
        _supervisor: supervisor,
    }
}

fuzz_target!(|data: &[u8]| {
    let (plan, payload) = Plan::from(data);
    let server = server();
    let (head, body) = plan.stream(payload);
    let mut stream = head.clone();
    stream.extend_from_slice(&body);

    let slow_before = metrics::get(&server.process.stats.slow_consumers_dropped);
    let run = exchange(server.addr, &plan, &stream, head.len());
    let slow = metrics::get(&server.process.stats.slow_consumers_dropped) > slow_before;
    if std::env::var_os("WSNOTIFY_FUZZ_DEBUG").is_some() {
        eprintln!(
            "{plan:?}\nsent {} bytes: {:?}",
            stream.len(),
            Bytes(&stream)
        );
        eprintln!(
            "got {} bytes (reset {}, writes {:?}, slow {slow}): {:?}",
            run.out.len(),
            run.reset,
            run.writes,
            Bytes(&run.out)
        );
    }
    assert!(
        !server.worker.is_finished(),
        "the worker thread has stopped"
    );

    // The server saw what the kernel took, even when a write was refused
    // or blocked (lazy reader).
    let sent = &stream[..run.written];
    let model = HttpModel::new(sent);
    let ws = check_http(&plan, &model, &run.out);
    if let Some(ws) = ws {
        let ws_in = &sent[ws.stream_at.min(sent.len())..];
        check_ws(ws.endpoint, ws_in, &run.out[ws.out_at..], slow);
    }
    let active = server.process.stats.active();
    assert_eq!(active, 0, "a client is still counted after EOF");
    assert_eq!(
        server.process.notify_clients(),
        0,
        "a /ws client is still counted"
    );
});

// ---------------------------------------------------------------- the input

#[derive(Debug)]
struct Plan {
    path: Path,
    records: bool,
    yield_between: bool,
    lazy: bool,
    small_rcvbuf: bool,
    /// With `small_rcvbuf`, a 536-byte MSS as well.
    small_mss: bool,
    split_head: bool,
    /// Wait a moment before our FIN, so the server answers (and flushes, or
    /// drops a slow consumer) while the connection is still open.
    pause: bool,
    seed: u64,
    max_chunk: usize,
}

impl Plan {
    fn from(data: &[u8]) -> (Plan, &[u8]) {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let flags = byte(0);
        let path = Path::from_flags(flags);
        let plan = Plan {
            path,
            records: flags & 0x08 != 0 && matches!(path, Path::Ws | Path::Echo),
            yield_between: flags & 0x10 != 0,
            lazy: flags & 0x20 != 0,
            small_rcvbuf: flags & 0x40 != 0,
            small_mss: flags & 0x40 != 0 && byte(1) & 0x80 != 0,
            split_head: flags & 0x80 != 0,
            pause: byte(2) & 0xC0 == 0xC0,
            seed: (u64::from(byte(1)) << 8 | u64::from(byte(2))) + 1,
            max_chunk: max_chunk(byte(2)),
        };
        (plan, data.get(3..).unwrap_or(&[]))
    }

    /// The head the target writes, and what follows it.
    fn stream(&self, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let head = self.path.head(payload.len());
        let body = if self.records {
            // Only a reader that waits behind a small window can make the
            // server queue past the kernel's (megabytes on loopback) and
            // `max_queue_bytes`: long streams are for that case only.
            let cap = if self.lazy && self.small_mss {
                MAX_STREAM
            } else {
                MAX_STREAM_READING
            };
            encode_records(payload, cap, &mut Rng(self.seed ^ 0x9E37_79B9_7F4A_7C15))
        } else {
            payload.to_vec()
        };
        (head.into_bytes(), body)
    }
}

// ------------------------------------------------------------ the exchange

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    /// Everything was written.
    All,
    /// The server had closed (EPIPE / ECONNRESET) before everything was out.
    Refused,
    /// A write blocked for `WRITE_TIMEOUT` (lazy reader only).
    TimedOut,
}

struct Run {
    out: Vec<u8>,
    reset: bool,
    writes: Writes,
    /// How many bytes the kernel took: all the server can have seen.
    written: usize,
}

fn connect(addr: SocketAddr, plan: &Plan) -> TcpStream {
    let mut tries = 0;
    loop {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        if plan.small_rcvbuf {
            socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        }
        if plan.small_mss {
            // A small MSS keeps the server's send buffer, which the kernel
            // sizes from the MSS, at tens of KiB instead of megabytes, so
            // `max_queue_bytes` is reached with a few hundred KiB of answers.
            socket.set_mss(SMALL_MSS).expect("TCP_MAXSEG");
        }
        match socket.connect(&addr.into()) {
            Ok(()) => return socket.into(),
            // Out of ephemeral ports for a moment; anything else is a finding.
            Err(e) if e.kind() == io::ErrorKind::AddrNotAvailable && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect to the worker: {e}"),
        }
    }
}

/// Sends `stream` (`head_len` bytes of head first) and reads the answer.
fn exchange(addr: SocketAddr, plan: &Plan, stream: &[u8], head_len: usize) -> Run {
    let socket = connect(addr, plan);
    socket.set_nodelay(true).expect("TCP_NODELAY");
    socket
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    socket
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .expect("write timeout");
    let reader = socket.try_clone().expect("clone");
    // When our FIN went out, for the reader.
    let finished = OnceLock::new();
    let pieces = pieces(plan, stream.len(), head_len);
    let run = std::thread::scope(|s| {
        let read = || read_until_end(&reader, &finished);
        let reading = (!plan.lazy).then(|| s.spawn(read));
        let (writes, written) = write_pieces(&socket, plan, stream, &pieces);
        assert!(
            plan.lazy || writes != Writes::TimedOut,
            "a write blocked for {WRITE_TIMEOUT:?} while we were reading: the server stopped reading"
        );
        if plan.pause {
            std::thread::sleep(PAUSE);
        }
        // The lazy reader starts once everything is written (and the pause
        // is over, so a slow-consumer drop can happen meanwhile).
        let reading = reading.unwrap_or_else(|| s.spawn(read));
        let _ = socket.shutdown(Shutdown::Write);
        let _ = finished.set(Instant::now());
        let (out, reset) = reading.join().expect("reader");
        Run {
            out,
            reset,
            writes,
            written,
        }
    });
    // No TIME_WAIT: hundreds of thousands of connections go through here.
    let _ = SockRef::from(&socket).set_linger(Some(Duration::ZERO));
    run
}

/// The writes, as ranges of the stream: the head whole (or split like the
/// rest), then pseudo-random chunks of 1 to `max_chunk` bytes; after
/// `MAX_CHUNKS` the remainder goes in one write.
fn pieces(plan: &Plan, len: usize, head_len: usize) -> Vec<Range<usize>> {
    let mut rng = Rng(plan.seed);
    let mut pieces = Vec::new();
    let mut at = 0;
    if !plan.split_head && head_len > 0 {
        pieces.push(0..head_len);
        at = head_len;
    }
    while at < len {
        let n = if pieces.len() >= MAX_CHUNKS {
            len - at
        } else {
            1 + (rng.next() as usize) % plan.max_chunk.min(len - at)
        };
        pieces.push(at..at + n);
        at += n;
    }
    pieces
}

/// One `write` per piece (more only when the kernel takes part of one).
/// Returns how it ended and how many bytes the kernel took.
fn write_pieces(
    mut socket: &TcpStream,
    plan: &Plan,
    stream: &[u8],
    pieces: &[Range<usize>],
) -> (Writes, usize) {
    let mut written = 0;
    for range in pieces {
        let mut piece = &stream[range.clone()];
        while !piece.is_empty() {
            match socket.write(piece) {
                Ok(0) => panic!("write returned 0"),
                Ok(n) => {
                    written += n;
                    piece = &piece[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return (Writes::TimedOut, written);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return (Writes::Refused, written);
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
        if plan.yield_between {
            std::thread::yield_now();
        }
    }
    (Writes::All, written)
}

/// Reads until EOF or a reset; a read that times out after our FIN, or an
/// answer still going `END_TIMEOUT` after it, is a failure.
fn read_until_end(mut stream: &TcpStream, finished: &OnceLock<Instant>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (out, false),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                assert!(
                    out.len() <= MAX_OUTPUT,
                    "more than {MAX_OUTPUT} bytes of output"
                );
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (out, true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if let Some(at) = finished.get() {
                    if let Some(hold) = std::env::var_os("WSNOTIFY_FUZZ_HOLD") {
                        eprintln!("HOLD: no EOF, holding");
                        std::thread::sleep(Duration::from_secs(
                            hold.to_str().and_then(|s| s.parse().ok()).unwrap_or(10),
                        ));
                    }
                    panic!(
                        "no EOF: the server kept the connection open {:?} after our FIN ({} bytes read: {:?})",
                        at.elapsed(),
                        out.len(),
                        Bytes(&out[out.len().saturating_sub(256)..])
                    );
                }
                // Still writing (eager reader): keep waiting.
            }
            Err(e) => panic!("read failed: {e}"),
        }
        if let Some(at) = finished.get() {
            assert!(
                at.elapsed() < END_TIMEOUT,
                "the answer went on for {END_TIMEOUT:?} after our FIN"
            );
        }
    }
}

// ---------------------------------------------------------------- HTTP

/// One complete request of the stream, as the server's parsers see it.
struct Req {
    request: Request,
    /// Where the request (head and body) ends in the stream.
    end: usize,
    /// The status `body_length` refuses it with.
    refused: Option<Status>,
    body_len: usize,
}

/// The requests in the stream, in order, as the worker reads them: heads by
/// `parse_head`, bodies by `body_length`.
struct HttpModel {
    requests: Vec<Req>,
    /// The request after them whose body was cut short by our FIN.
    awaiting: Option<Req>,
    /// The stream's length.
    len: usize,
    /// The stream goes on with a head that can never be valid.
    invalid: Option<Status>,
    /// What follows the complete requests (an invalid or unfinished head)
    /// starts with `HEAD `: the server's error answer to it has no body.
    head_after: bool,
}

impl HttpModel {
    fn new(stream: &[u8]) -> HttpModel {
        let mut requests = Vec::new();
        let mut pos = 0;
        let mut invalid = None;
        let mut awaiting = None;
        while requests.len() < MAX_REQUESTS_PER_CONNECTION {
            match parse_head(&stream[pos..]) {
                Head::Partial => break,
                Head::Invalid(error) => {
                    invalid = Some(error.status());
                    break;
                }
                Head::Complete { request, len } => {
                    let after = pos + len;
                    match body_length(&request) {
                        BodyLength::Invalid(error) => {
                            requests.push(Req {
                                request,
                                end: after,
                                refused: Some(error.status()),
                                body_len: 0,
                            });
                            break;
                        }
                        BodyLength::Fixed(n) if stream.len() - after < n => {
                            awaiting = Some(Req {
                                request,
                                end: after + n,
                                refused: None,
                                body_len: n,
                            });
                            break;
                        }
                        BodyLength::Fixed(n) => {
                            requests.push(Req {
                                request,
                                end: after + n,
                                refused: None,
                                body_len: n,
                            });
                            pos = after + n;
                        }
                    }
                }
            }
        }
        HttpModel {
            requests,
            awaiting,
            len: stream.len(),
            invalid,
            head_after: stream[pos..].starts_with(b"HEAD "),
        }
    }
}

struct WsStart {
    endpoint: Endpoint,
    /// Where the frames start in the output and the client's frames in the
    /// stream.
    out_at: usize,
    stream_at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Notify,
    Echo,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks the HTTP responses; returns where the WebSocket phase starts, if
/// the connection was upgraded.
fn check_http(plan: &Plan, model: &HttpModel, out: &[u8]) -> Option<WsStart> {
    let mut at = 0;
    let mut index = 0;
    let mut continued = false;
    if out.is_empty() {
        // Nothing at all: only right when there was no complete request.
        assert!(
            model.requests.is_empty() && model.invalid.is_none(),
            "no answer to {} complete request(s){}",
            model.requests.len(),
            if model.invalid.is_some() {
                " and an invalid head"
            } else {
                ""
            }
        );
        return None;
    }
    loop {
        let rest = &out[at..];
        let head_len = find(rest, b"\r\n\r\n").map(|i| i + 4).unwrap_or_else(|| {
            panic!(
                "truncated or unterminated response head at byte {at}: {:?}",
                Bytes(rest)
            )
        });
        let head = std::str::from_utf8(&rest[..head_len])
            .unwrap_or_else(|_| panic!("response head is not UTF-8 at byte {at}"));
        let mut lines = head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        assert!(KNOWN_STATUSES.contains(&status), "unknown status {status}");
        // The interim answer is written by hand; `Status::reason` has no 100.
        let reason = match status {
            100 => "Continue",
            _ => Status(status).reason(),
        };
        assert_eq!(
            status_line,
            format!("HTTP/1.1 {status} {reason}"),
            "status line"
        );
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                "bad header name {name:?}"
            );
            assert!(
                !value.contains(['\r', '\n']),
                "header value with a line break"
            );
            headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let req = model.requests.get(index);

        if status == 100 {
            // Before the body of a request that expects it: a complete one,
            // or the one whose body never came in full.
            let waiting = req.or(model
                .awaiting
                .as_ref()
                .filter(|_| index == model.requests.len()));
            let req =
                waiting.unwrap_or_else(|| panic!("100 Continue for no request (index {index})"));
            let expects = req
                .request
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            assert!(
                expects && req.body_len > 0 && !continued,
                "unexpected 100 Continue"
            );
            continued = true;
            at += head_len;
            if at == out.len() {
                assert!(
                    req.end > model.len,
                    "100 Continue and then nothing for a complete request"
                );
                return None;
            }
            continue;
        }
        continued = false;

        if status == 101 {
            let req = req.unwrap_or_else(|| panic!("101 for no request (index {index})"));
            let endpoint = match req.request.path.as_str() {
                "/ws" => Endpoint::Notify,
                "/echo" => Endpoint::Echo,
                other => panic!("upgrade of {other:?}"),
            };
            assert_eq!(
                req.request.method, "GET",
                "upgrade of a {}",
                req.request.method
            );
            assert!(req.refused.is_none());
            let key = req.request.header("sec-websocket-key").unwrap_or_default();
            assert_eq!(
                header("sec-websocket-accept"),
                Some(accept_key(key).as_str())
            );
            assert_eq!(header("upgrade"), Some("websocket"));
            assert_eq!(header("connection"), Some("Upgrade"));
            assert!(header("content-length").is_none());
            if matches!(plan.path, Path::Ws | Path::Echo) {
                assert_eq!(index, 0);
                assert_eq!(header("sec-websocket-accept"), Some(ACCEPT));
            }
            return Some(WsStart {
                endpoint,
                out_at: at + head_len,
                stream_at: req.end,
            });
        }

        // A final response: to request `index`, to the invalid head after
        // the last complete request, or a timeout.
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("status {status} without a Content-Length"));
        assert!(length <= MAX_RESPONSE, "a {length}-byte response");
        assert!(header("content-type").is_some(), "no Content-Type");
        let closes = header("connection") == Some("close");
        // No body for HEAD: a complete request's method, or for an answer
        // to what follows the complete requests (400, 431 or 505 for an
        // invalid head, 408 for an unfinished one or a missing body), the
        // method of the request whose body is awaited, else how the rest
        // starts (the server knows no more than that).
        let head_only = match req {
            Some(r) => r.request.method == "HEAD",
            None => model
                .awaiting
                .as_ref()
                .map_or(model.head_after, |r| r.request.method == "HEAD"),
        };
        match req {
            _ if status == 408 => {}
            Some(req) => {
                if let Some(refused) = req.refused {
                    assert_eq!(status, refused.0, "status for a refused body length");
                }
                if !req.request.wants_keep_alive() {
                    assert!(
                        closes,
                        "no Connection: close for a request that asked for it"
                    );
                }
                if index + 1 == MAX_REQUESTS_PER_CONNECTION {
                    assert!(closes, "request 1000 without Connection: close");
                }
                if matches!(plan.path, Path::Health) && index == 0 {
                    assert_eq!(status, 200, "GET /health");
                }
            }
            None => {
                let invalid = model
                    .invalid
                    .filter(|_| index == model.requests.len())
                    .unwrap_or_else(|| {
                        panic!("status {status}: a response to no request (index {index})")
                    });
                assert_eq!(status, invalid.0, "status for an invalid head");
            }
        }
        if Response::must_close(Status(status)) || status == 503 {
            assert!(closes, "status {status} without Connection: close");
        }
        let body_len = if head_only { 0 } else { length };
        assert!(
            rest.len() >= head_len + body_len,
            "truncated body: {} of {body_len} bytes",
            rest.len() - head_len
        );
        at += head_len + body_len;
        index += 1;
        if closes {
            assert_eq!(at, out.len(), "bytes after a Connection: close response");
            return None;
        }
        if at == out.len() {
            // The server did not close: it must have answered everything.
            assert!(
                index == model.requests.len() && model.invalid.is_none(),
                "{} of {} complete request(s) answered{}",
                index,
                model.requests.len(),
                if model.invalid.is_some() {
                    ", and an invalid head unanswered"
                } else {
                    ""
                }
            );
            return None;
        }
    }
}

// ------------------------------------------------------------- WebSocket

struct Frame {
    opcode: u8,
    payload: Vec<u8>,
    /// The frame as it was on the wire.
    raw: Vec<u8>,
}

/// Splits the server's frames, checking the rules every server frame obeys.
/// Returns the frames and whether the output ended inside one.
fn parse_frames(mut buf: &[u8]) -> (Vec<Frame>, bool) {
    let mut frames: Vec<Frame> = Vec::new();
    while !buf.is_empty() {
        if let Some(last) = frames.last() {
            assert_ne!(last.opcode, 0x8, "{} bytes after a Close frame", buf.len());
        }
        let [b0, b1, ..] = *buf else {
            return (frames, true);
        };
        assert_eq!(b0 & 0x80, 0x80, "a server frame without FIN: {b0:#04x}");
        assert_eq!(b0 & 0x70, 0, "reserved bits in a server frame: {b0:#04x}");
        let opcode = b0 & 0x0F;
        assert!(
            matches!(opcode, 1 | 2 | 8 | 9 | 10),
            "server opcode {opcode:#x}"
        );
        assert_eq!(b1 & 0x80, 0, "a masked server frame");
        let (len, header) = match b1 & 0x7F {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return (frames, true);
                };
                let len = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
                assert!(len > 125, "non-minimal 16-bit length {len}");
                (len, 4)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return (frames, true);
                };
                let len = u64::from_be_bytes(ext.try_into().unwrap_or_default());
                assert!(len > 0xFFFF, "non-minimal 64-bit length {len}");
                assert!(len <= MAX_OUTPUT as u64, "a {len}-byte frame");
                (len as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        if opcode >= 8 {
            assert!(len <= 125, "a {len}-byte control frame");
        }
        let Some(payload) = buf.get(header..header + len) else {
            return (frames, true);
        };
        match opcode {
            1 => assert!(std::str::from_utf8(payload).is_ok(), "text frame not UTF-8"),
            8 => {
                assert_ne!(payload.len(), 1, "a 1-byte Close payload");
                if payload.len() >= 2 {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    assert!(
                        CloseCode(code).is_valid_on_wire(),
                        "close code {code} on the wire"
                    );
                    assert!(
                        std::str::from_utf8(&payload[2..]).is_ok(),
                        "close reason not UTF-8"
                    );
                }
            }
            _ => {}
        }
        frames.push(Frame {
            opcode,
            payload: payload.to_vec(),
            raw: buf[..header + len].to_vec(),
        });
        buf = &buf[header + len..];
    }
    (frames, false)
}

/// What the server owes the client for one of its messages.
#[derive(Debug)]
enum Want {
    /// These exact bytes.
    Exact(Vec<u8>),
    /// `/ws`'s welcome.
    Welcome,
    /// One JSON text frame answering a data message of `len` bytes (an
    /// `error` for binary).
    Reply { binary: bool, len: usize },
}

fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n <= 125 => out.push(n as u8),
        n if n <= 0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn close_frame(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut payload = code.0.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    server_frame(0x8, &payload)
}

/// The answers owed for the client's bytes, and whether they end with a
/// Close (the client closed or broke the protocol).
fn expected(endpoint: Endpoint, ws_in: &[u8]) -> (Vec<Want>, bool) {
    let mut want = Vec::new();
    if endpoint == Endpoint::Notify {
        want.push(Want::Welcome);
    }
    // The head offers no extension: RSV1 stays a protocol error.
    let mut rx = Receiver::new(MAX_MESSAGE, false);
    let mut inflater = Inflater::new();
    let mut input = ws_in;
    while !input.is_empty() {
        let (used, result) = rx.feed(input, &mut inflater);
        input = &input[used..];
        match result {
            Ok(None) => {}
            Ok(Some(Message::Text(data))) => want.push(match endpoint {
                Endpoint::Echo => Want::Exact(server_frame(0x1, data.as_bytes())),
                Endpoint::Notify => Want::Reply {
                    binary: false,
                    len: data.len(),
                },
            }),
            Ok(Some(Message::Binary(data))) => want.push(match endpoint {
                Endpoint::Echo => Want::Exact(server_frame(0x2, &data)),
                Endpoint::Notify => Want::Reply {
                    binary: true,
                    len: data.len(),
                },
            }),
            Ok(Some(Message::Ping(data))) => want.push(Want::Exact(server_frame(0xA, &data))),
            Ok(Some(Message::Pong(_))) => {}
            Ok(Some(Message::Close(code))) => {
                want.push(Want::Exact(match code {
                    Some(code) => close_frame(code, ""),
                    None => server_frame(0x8, &[]),
                }));
                return (want, true);
            }
            Err(error) => {
                let code = error.close_code();
                assert!(
                    matches!(code.0, 1002 | 1007 | 1009),
                    "receiver error {}",
                    code.0
                );
                want.push(Want::Exact(close_frame(code, code.reason())));
                return (want, true);
            }
        }
    }
    (want, false)
}

fn check_ws(endpoint: Endpoint, ws_in: &[u8], out: &[u8], slow: bool) {
    let (mut frames, truncated) = parse_frames(out);
    let (want, closed) = expected(endpoint, ws_in);
    if endpoint == Endpoint::Echo {
        assert!(
            out.len() <= ws_in.len() + 32,
            "/echo sent {} bytes for {} bytes of frames",
            out.len(),
            ws_in.len()
        );
    }
    let mut dropped = false;
    if slow {
        // A slow consumer's unstarted frames are discarded for a 1008 Close.
        let slow_close = close_frame(CloseCode::POLICY_VIOLATION, "slow consumer");
        if let Some(last) = frames.last() {
            let i = frames.len() - 1;
            let owed = matches!(want.get(i), Some(Want::Exact(bytes)) if *bytes == slow_close);
            if last.raw == slow_close && !owed {
                frames.pop();
                dropped = true;
            }
        }
    }
    assert!(
        frames.len() <= want.len(),
        "{} frames for {} owed answers",
        frames.len(),
        want.len()
    );
    for (i, (frame, want)) in frames.iter().zip(&want).enumerate() {
        match want {
            Want::Exact(bytes) => assert!(
                frame.raw == *bytes,
                "frame {i}: got {:?}, owed {:?}",
                Bytes(&frame.raw),
                Bytes(bytes)
            ),
            Want::Welcome => {
                let json = json_object(frame, i);
                assert_eq!(json["type"], "welcome", "frame {i}");
                assert!(json["client_id"].is_string(), "welcome without client_id");
            }
            Want::Reply { binary, len } => {
                let json = json_object(frame, i);
                let kind = json["type"].as_str().unwrap_or_default();
                let kinds: &[&str] = if *binary {
                    &["error"]
                } else {
                    &["chat", "direct", "error", "pong", "status"]
                };
                assert!(kinds.contains(&kind), "frame {i}: a {kind:?} reply");
                assert!(
                    frame.payload.len() <= 6 * len + 1024,
                    "frame {i}: a {}-byte reply to a {len}-byte message",
                    frame.payload.len()
                );
            }
        }
    }
    let all = frames.len() == want.len() && !truncated;
    if closed && !slow {
        // The client closed or broke the protocol: the server answers all
        // of it and then closes.
        assert!(
            all,
            "{} of {} owed answers{} (client {})",
            frames.len(),
            want.len(),
            if truncated { ", the last one cut" } else { "" },
            "sent a Close or a violation"
        );
    }
    if dropped {
        assert!(!all || !closed, "a 1008 Close after every answer");
    }
    check_close_codes(&frames, &want);
}

/// A Close the server starts itself carries one of its codes.
fn check_close_codes(frames: &[Frame], want: &[Want]) {
    for (i, frame) in frames.iter().enumerate() {
        if frame.opcode != 0x8 || frame.payload.len() < 2 {
            continue;
        }
        if matches!(want.get(i), Some(Want::Exact(bytes)) if *bytes == frame.raw) {
            continue; // echoes the client's own code
        }
        let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
        assert!(
            SERVER_CLOSE_CODES.contains(&code),
            "the server closed with {code}"
        );
    }
}

fn json_object(frame: &Frame, i: usize) -> serde_json::Value {
    assert_eq!(
        frame.opcode, 0x1,
        "frame {i}: opcode {:#x}, owed a text frame",
        frame.opcode
    );
    let json: serde_json::Value = serde_json::from_slice(&frame.payload)
        .unwrap_or_else(|e| panic!("frame {i}: not JSON ({e}): {:?}", Bytes(&frame.payload)));
    assert!(json.is_object(), "frame {i}: not a JSON object");
    assert!(json["time"].is_string(), "frame {i}: no time");
    json
}

/// Bytes shown as text with escapes, for failure messages.
struct Bytes<'a>(&'a [u8]);

impl std::fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 512;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "b\"{}\"", shown.escape_ascii())?;
        if self.0.len() > SHOWN {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}
