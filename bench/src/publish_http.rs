//! The HTTP publisher of `fanout --publish http`: `POST /broadcast` over
//! one keep-alive HTTP/1.1 connection, pipelined (up to `MAX_PIPELINE`
//! unanswered requests), each answer read and checked in order. When the
//! server ends the connection (its `Connection: close` after a number of
//! requests, or a keep-alive timeout between requests) a new one is
//! opened; requests pipelined behind a `Connection: close` answer were not
//! processed (RFC 9112, 9.6) and are sent again on the new connection.
//! A connection the server closes or resets with requests unanswered is an
//! error, unless the publisher tolerates it (`upgrade`, whose old server
//! exits under an open connection): then those requests are noted as
//! unanswered, not sent again (whether the server processed them is for
//! the deliveries to tell), and a new connection is opened.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::net;

pub const TOKEN: Token = Token(usize::MAX - 1);
const MAX_RESPONSE: usize = 64 * 1024;
/// Most requests written and not answered yet.
pub const MAX_PIPELINE: usize = 512;

pub struct HttpPublisher {
    target: SocketAddr,
    src: Option<Ipv4Addr>,
    host_header: String,
    sock: Option<TcpStream>,
    connected: bool,
    /// Sequence numbers of the requests written and not answered yet.
    unanswered: VecDeque<u32>,
    /// Requests to send again (in this order) before any new one.
    pub resend: VecDeque<u32>,
    answered_on_conn: u64,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The number of subscribers each broadcast should reach, if known.
    expect_recipients: Option<u64>,
    warned_recipients: bool,
    pub responses: u64,
    pub connections: u64,
    /// Closed or reset connections are survived (see the module comment).
    tolerate_unanswered: bool,
    /// The requests such a connection left unanswered, in order.
    pub unanswered_lost: Vec<u32>,
}

impl HttpPublisher {
    pub fn new(
        target: SocketAddr,
        src: Option<Ipv4Addr>,
        host_header: &str,
        expect_recipients: Option<u64>,
    ) -> Self {
        HttpPublisher {
            target,
            src,
            host_header: host_header.to_string(),
            sock: None,
            connected: false,
            unanswered: VecDeque::new(),
            resend: VecDeque::new(),
            answered_on_conn: 0,
            inbuf: Vec::with_capacity(4096),
            out: Vec::with_capacity(4096),
            expect_recipients,
            warned_recipients: false,
            responses: 0,
            connections: 0,
            tolerate_unanswered: false,
            unanswered_lost: Vec::new(),
        }
    }

    /// Survives a server that closes or resets the connection with
    /// requests unanswered: they go to `unanswered_lost`.
    pub fn tolerate_unanswered(&mut self) {
        self.tolerate_unanswered = true;
    }

    /// Requests written and not answered yet on this connection.
    pub fn in_flight(&self) -> usize {
        self.unanswered.len()
    }

    /// The connection broke (`why`): an error, or, if tolerated, its
    /// unanswered requests noted and the connection dropped, to be
    /// reopened by the next `ensure_connected`.
    fn broken(&mut self, why: String) -> Result<(), String> {
        if !self.tolerate_unanswered {
            return Err(why);
        }
        self.take_what_arrived()?;
        if !self.unanswered.is_empty() {
            eprintln!(
                "wsload: http publisher: {why}; {} request(s) unanswered: {:?}",
                self.unanswered.len(),
                self.unanswered
            );
        }
        self.unanswered_lost.extend(self.unanswered.drain(..));
        self.inbuf.clear();
        self.out.clear();
        self.sock = None;
        self.connected = false;
        Ok(())
    }

    /// Reads the answers that arrived before the connection broke: a write
    /// fails once the server is gone, but what it answered before is still
    /// there to read.
    fn take_what_arrived(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = sock.read(&mut buf) {
            self.inbuf.extend_from_slice(&buf[..n]);
        }
        self.take_answers().map(|_| ())
    }

    /// Opens a connection if there is none.
    pub fn ensure_connected(&mut self, registry: &Registry) -> Result<(), String> {
        if self.sock.is_some() {
            return Ok(());
        }
        let mut sock = net::connect(self.target, self.src).map_err(|e| format!("connect: {e}"))?;
        registry
            .register(&mut sock, TOKEN, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        self.sock = Some(sock);
        self.connected = false;
        self.inbuf.clear();
        self.out.clear();
        self.answered_on_conn = 0;
        self.connections += 1;
        Ok(())
    }

    pub fn connected(&self) -> bool {
        self.sock.is_some() && self.connected
    }

    pub fn can_send(&self) -> bool {
        self.connected() && self.unanswered.len() < MAX_PIPELINE
    }

    /// Sends again, in order and while the pipeline has room, the requests
    /// the server dropped unprocessed. `body` writes message `seq`'s body
    /// into the buffer; `resent` is told each `seq` before it goes out.
    pub fn send_again(
        &mut self,
        buf: &mut Vec<u8>,
        body: impl Fn(&mut Vec<u8>, u32),
        mut resent: impl FnMut(u32),
    ) -> Result<(), String> {
        while let Some(&seq) = self.resend.front() {
            if !self.can_send() {
                break;
            }
            self.resend.pop_front();
            buf.clear();
            body(buf, seq);
            resent(seq);
            self.send(seq, buf)?;
        }
        Ok(())
    }

    /// Writes one `POST /broadcast` for message `seq` with `body` (call
    /// only if `can_send`).
    pub fn send(&mut self, seq: u32, body: &[u8]) -> Result<(), String> {
        use std::fmt::Write as _;
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "POST /broadcast HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host_header,
            body.len()
        );
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(body);
        self.unanswered.push_back(seq);
        match self.flush() {
            Err(e) => self.broken(e),
            ok => ok,
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        let mut written = 0;
        while written < self.out.len() {
            match sock.write(&self.out[written..]) {
                Ok(0) => return Err("write: zero bytes written".into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        self.out.drain(..written);
        Ok(())
    }

    /// Handles readiness: finishes the connect, writes, reads answers.
    pub fn on_event(&mut self, _ev: &Event) -> Result<(), String> {
        match self.serve() {
            Ok(()) => Ok(()),
            Err(Fault::Broken(why)) => self.broken(why),
            Err(Fault::Wrong(why)) => Err(why),
        }
    }

    fn serve(&mut self) -> Result<(), Fault> {
        let Some(sock) = self.sock.as_mut() else {
            return Ok(());
        };
        if !self.connected {
            match net::connect_done(sock) {
                Ok(true) => self.connected = true,
                Ok(false) => return Ok(()),
                Err(e) => return Err(Fault::Wrong(format!("connect: {e}"))),
            }
        }
        self.flush().map_err(Fault::Broken)?;
        let mut buf = [0u8; 16 * 1024];
        let mut eof = false;
        let mut close_after = false;
        while !close_after {
            let Some(sock) = self.sock.as_mut() else {
                return Ok(());
            };
            match sock.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    close_after = self.take_answers().map_err(Fault::Wrong)?;
                    if self.inbuf.len() > MAX_RESPONSE {
                        return Err(Fault::Wrong("an answer over 64 KiB".into()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fault::Broken(format!("read: {e}"))),
            }
        }
        if close_after && !self.unanswered.is_empty() {
            // Not processed by the server: send them again, before the
            // ones still waiting to be sent again.
            let mut again = std::mem::take(&mut self.unanswered);
            again.extend(self.resend.drain(..));
            self.resend = again;
            self.inbuf.clear();
        }
        if eof || close_after {
            if !self.unanswered.is_empty() {
                return Err(Fault::Broken(format!(
                    "the server closed the connection with {} requests unanswered",
                    self.unanswered.len()
                )));
            }
            if !self.inbuf.is_empty() {
                return Err(Fault::Broken(
                    "the server closed the connection inside an answer".into(),
                ));
            }
            if self.answered_on_conn == 0 && !self.resend.is_empty() {
                return Err(Fault::Wrong(
                    "the server closed a new connection without answering".into(),
                ));
            }
            // Reopened by the next `ensure_connected`.
            self.sock = None;
            self.connected = false;
        }
        Ok(())
    }
}

/// What went wrong with the connection.
enum Fault {
    /// It closed or failed under requests or answers (tolerated in
    /// `upgrade`).
    Broken(String),
    /// The server answered wrongly, or the connect failed.
    Wrong(String),
}

impl HttpPublisher {
    /// Checks and drops every complete answer in `inbuf`; true if one of
    /// them closes the connection (what follows it is ignored).
    fn take_answers(&mut self) -> Result<bool, String> {
        let mut pos = 0;
        let mut close = false;
        while pos < self.inbuf.len() {
            let Some(r) = parse_response(&self.inbuf[pos..])? else {
                break;
            };
            if self.unanswered.pop_front().is_none() {
                return Err("an answer to no request".into());
            }
            self.answered_on_conn += 1;
            self.responses += 1;
            if let (Some(n), Some(want)) = (r.recipients, self.expect_recipients) {
                if n != want && !self.warned_recipients {
                    self.warned_recipients = true;
                    eprintln!(
                        "wsload: note: a broadcast reached {n} clients, expected {want} (other clients connected?)"
                    );
                }
            }
            pos += r.len;
            if r.close {
                close = true;
                break;
            }
        }
        self.inbuf.drain(..pos);
        Ok(close)
    }
}

#[derive(Debug, PartialEq)]
struct Answer {
    len: usize,
    close: bool,
    recipients: Option<u64>,
}

/// One complete 2xx answer at the start of `buf`, or None if incomplete.
fn parse_response(buf: &[u8]) -> Result<Option<Answer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed HTTP answer: {e}")),
    };
    let code = resp.code.unwrap_or(0);
    let mut length = None;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("bad Content-Length")?;
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked answers are not expected".into());
        }
    }
    let length = length.ok_or("answer without Content-Length")?;
    if buf.len() < head + length {
        return Ok(None);
    }
    let body = &buf[head..head + length];
    if !(200..300).contains(&code) {
        return Err(format!(
            "POST /broadcast answered {code}: {}",
            String::from_utf8_lossy(body)
        ));
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer body is not JSON: {e}"))?;
    if json.get("status").and_then(|s| s.as_str()) != Some("sent") {
        return Err(format!("unexpected answer {json}"));
    }
    Ok(Some(Answer {
        len: head + length,
        close,
        recipients: json.get("recipients").and_then(|r| r.as_u64()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Polls until `done`, handing every event to the publisher.
    fn drive(
        poll: &mut mio::Poll,
        p: &mut HttpPublisher,
        mut done: impl FnMut(&HttpPublisher) -> bool,
    ) {
        let mut events = mio::Events::with_capacity(8);
        let end = Instant::now() + Duration::from_secs(5);
        while !done(p) {
            assert!(Instant::now() < end, "timed out");
            poll.poll(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            for ev in events.iter() {
                p.on_event(ev).unwrap();
            }
        }
    }

    #[test]
    fn survives_a_server_that_goes_away_under_a_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut p = HttpPublisher::new(addr, None, "test", None);
        p.tolerate_unanswered();
        p.ensure_connected(poll.registry()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        drive(&mut poll, &mut p, HttpPublisher::connected);

        // Answered, and the answer waits unread when the next request
        // fails: it still counts as answered.
        p.send(1, b"{}").unwrap();
        let mut request = [0u8; 1024];
        assert!(server.read(&mut request).unwrap() > 0);
        let body = r#"{"status":"sent"}"#;
        write!(
            server,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        p.send(2, b"{}").unwrap();
        // Gone with request 2 unread: a reset, on loopback at once, so
        // writing request 3 fails (or, if not, reading does).
        drop(server);
        p.send(3, b"{}").unwrap();
        drive(&mut poll, &mut p, |p| !p.connected());
        assert_eq!(p.responses, 1);
        assert_eq!(p.unanswered_lost, [2, 3]);
        assert_eq!(p.in_flight(), 0);

        // A new connection for what follows.
        p.ensure_connected(poll.registry()).unwrap();
        let (_again, _) = listener.accept().unwrap();
        drive(&mut poll, &mut p, HttpPublisher::connected);
        assert_eq!(p.connections, 2);
    }

    #[test]
    fn parses_answers() {
        let body = r#"{"id":3,"recipients":10,"status":"sent"}"#;
        let ok = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let ok = ok.as_str();
        assert_eq!(
            parse_response(ok.as_bytes()),
            Ok(Some(Answer {
                len: ok.len(),
                close: false,
                recipients: Some(10)
            }))
        );
        assert_eq!(parse_response(&ok.as_bytes()[..ok.len() - 1]), Ok(None));
        let closing = ok.replace("Content-Type", "Connection: close\r\nContent-Type");
        assert!(parse_response(closing.as_bytes()).unwrap().unwrap().close);
        let bad = "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}";
        assert!(parse_response(bad.as_bytes()).is_err());
    }
}
