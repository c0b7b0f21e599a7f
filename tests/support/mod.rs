//! Shared by the integration tests: start the real binary on a free port and
//! talk to it over TCP. Every server started here is killed when its handle
//! drops, even when the test fails.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub mod redis;
pub mod token;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stderr line so far (the log), filled by a reader thread.
    pub log: Arc<Mutex<Vec<String>>>,
    /// Holds that reader while set (`hold_log`).
    log_held: Arc<(Mutex<bool>, Condvar)>,
}

impl Server {
    /// Starts `wsnotify --host 127.0.0.1 --port 0 ARGS` and waits for its
    /// `listening on` line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wsnotify"));
        command
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        Server::spawn(command)
    }

    /// Starts the server under `ulimit -n LIMIT` (soft and hard), the way a
    /// shell user would, so it cannot raise the limit again.
    pub fn start_with_open_file_limit(limit: u32, args: &[&str]) -> Server {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!(
                "ulimit -n {limit} && exec \"$0\" --host 127.0.0.1 --port 0 \"$@\""
            ))
            .arg(env!("CARGO_BIN_EXE_wsnotify"))
            .args(args);
        Server::spawn(command)
    }

    /// Starts a prepared command (stdio is set here) and waits for its
    /// `listening on` line.
    pub fn spawn(mut command: Command) -> Server {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn wsnotify");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        let log_held = Arc::new((Mutex::new(false), Condvar::new()));
        let held = Arc::clone(&log_held);
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let (lock, changed) = &*held;
                let mut is_held = lock.lock().unwrap();
                while *is_held {
                    is_held = changed.wait(is_held).unwrap();
                }
                drop(is_held);
                let addr = line.find("listening on http://").map(|at| {
                    let rest = &line[at + "listening on http://".len()..];
                    // The address ends where the text or JSON line goes on.
                    rest.chars()
                        .take_while(|c| c.is_ascii_hexdigit() || ".:[]".contains(*c))
                        .collect::<String>()
                });
                // Logged before the address is handed over, so a test that
                // has the address also sees the line.
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let mut server = Server {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            log,
            log_held,
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => server.addr = addr.parse().expect("address in the listening line"),
            Err(_) => panic!("no listening line; log: {:?}", server.log_lines()),
        }
        server
    }

    /// Stops reading the server's stderr while `held`, as a log collector
    /// that stalled: once the pipe is full, the server's writes to it wait.
    pub fn hold_log(&self, held: bool) {
        let (lock, changed) = &*self.log_held;
        *lock.lock().unwrap() = held;
        changed.notify_all();
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// How many log lines so far contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || (self.log_count(needle) > 0).then_some(())).is_some()
    }

    /// The server's CPU time (user + system) so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which may hold spaces, start at 3.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_second)
    }

    /// A `VmRSS`-style field of /proc/PID/status, in KiB.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    pub fn signal(&self, signal: i32) {
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.child.try_wait().ok().flatten())
    }
}

pub use libc::{SIGINT, SIGTERM};

/// How often a wait looks at its condition again: short next to what the
/// tests wait for, long enough that waiting costs the machine little.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Looks at `ready` until it gives a value, or `timeout` passes (`None`).
/// Every polling wait of the tests goes through here: none sleeps for a
/// guessed time, each ends as soon as what it waits for has happened.
pub fn poll_until<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(value) = ready() {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        // Pacing, not a wait: only how often the condition is looked at.
        std::thread::sleep(POLL_EVERY);
    }
}

/// `poll_until` for what must happen: panics naming `what` on timeout (a
/// server's log tail follows, printed as its handle drops).
pub fn eventually<T>(what: &str, timeout: Duration, ready: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, ready).unwrap_or_else(|| panic!("no {what} within {timeout:?}"))
}

/// `eventually` for a condition.
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    eventually(what, timeout, || ready().then_some(()))
}

/// Log lines of each server shown when a test fails.
const LOG_TAIL: usize = 30;

impl Drop for Server {
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what its servers said last, and whether one
        // had already ended on its own: a CI log is all there is to go on.
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "--- server {} ({}), last {} log lines:",
                self.addr,
                exited.map_or("still running".to_owned(), |s| format!("had exited: {s}")),
                LOG_TAIL.min(log.len())
            );
            for line in &log[log.len().saturating_sub(LOG_TAIL)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// A plain HTTP/1.1 request; returns the status, the head and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_response(&mut stream)
}

/// Sends raw bytes and reads one response until the server closes.
pub fn raw_http(addr: SocketAddr, bytes: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    read_response(&mut stream)
}

/// Reads one HTTP response (head, then Content-Length bytes of body).
pub fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => panic!(
                "connection ended inside the response head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let length = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("body");
    (status, head, body)
}

/// A header's value from a response head (case-insensitive name).
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The /metrics exposition, checked to be served as Prometheus text.
pub fn metrics_text(server: &Server) -> String {
    let (code, head, body) = http(server.addr, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    assert!(
        header_value(&head, "content-type")
            .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")),
        "{head}"
    );
    String::from_utf8(body).expect("metrics are UTF-8")
}

/// The value of one sample (`name` or `name{labels}`) in an exposition.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
            Some(value.trim().parse().expect("numeric sample"))
        })
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
}

/// A connected tungstenite client on a blocking socket with a read timeout.
pub type Client = tungstenite::WebSocket<TcpStream>;

pub fn connect(server: &Server, path: &str) -> Client {
    let stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (client, _) = tungstenite::client(server.url(path), stream).expect("handshake");
    client
}

/// Reads the next text message as JSON, skipping control frames.
pub fn next_json(client: &mut Client) -> serde_json::Value {
    loop {
        match client.read().expect("read message") {
            tungstenite::Message::Text(text) => {
                return serde_json::from_str(text.as_str()).expect("JSON")
            }
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected message: {other:?}"),
        }
    }
}

/// Reads JSON messages until one has the given `type`.
pub fn next_of_type(client: &mut Client, kind: &str) -> serde_json::Value {
    loop {
        let message = next_json(client);
        if message["type"] == kind {
            return message;
        }
    }
}

/// A masked client frame, built by hand for tests that must send what a
/// well-behaved library refuses to.
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![b0];
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A raw WebSocket connection after a hand-written handshake.
pub fn raw_ws(server: &Server, path: &str) -> TcpStream {
    raw_ws_with(server, path, "").0
}

/// `raw_ws` with more request headers (`extra`, each ending in CRLF);
/// returns the socket and the `101`'s head.
pub fn raw_ws_with(server: &Server, path: &str, extra: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("handshake response");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (stream, head)
}

/// A server frame as read from a raw socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Reads one server frame; `None` at end of stream.
pub fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).ok()?;
    assert_eq!(head[1] & 0x80, 0, "server frames are never masked");
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).ok()?;
    Some(Frame {
        fin: head[0] & 0x80 != 0,
        opcode: head[0] & 0x0F,
        payload,
    })
}

/// Reads frames until a Close arrives; returns its code (None for an empty
/// Close) and asserts the server then ends the TCP connection.
pub fn expect_close(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let frame = read_frame(stream).expect("a Close frame before the end of the stream");
        if frame.opcode == 8 {
            let code = (frame.payload.len() >= 2)
                .then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
            let mut rest = [0u8; 64];
            let end = Instant::now() + Duration::from_secs(6);
            loop {
                match stream.read(&mut rest) {
                    Ok(0) => return code,
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => {
                        return code
                    }
                    Err(e) => panic!("server did not close TCP after its Close: {e}"),
                }
                assert!(
                    Instant::now() < end,
                    "server did not close TCP after its Close"
                );
            }
        }
    }
}

/// How long a client waits to show that nothing more arrives for it.
pub const QUIET: Duration = Duration::from_millis(150);

/// Whether nothing arrives on `client` within `wait` (then back to the
/// usual 10 s read timeout).
pub fn quiet(client: &mut Client, wait: Duration) -> bool {
    client.get_mut().set_read_timeout(Some(wait)).unwrap();
    let quiet = client.read().is_err();
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    quiet
}
