//! RFC 6455 conformance of `/echo`, mirroring the Autobahn TestSuite case
//! groups 1.* to 10.* over real sockets.
//!
//! Each group is a table of cases. A case is a list of steps (writes and
//! expected server frames) run on its own connection; the runner runs every
//! case, collects the failures with their names and fails once with all of
//! them, so one run reports every broken case. A case that does not end in a
//! Close ends with a closing handshake (Close 1000 → Close 1000, then TCP
//! EOF), which also proves that nothing unexpected (an extra echo, a pong to
//! an unsolicited pong) was sent.
//!
//! Case numbers follow Autobahn where a case has an Autobahn counterpart;
//! numbers past the end of an Autobahn subgroup are additions in its spirit.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::*;

const FIN: u8 = 0x80;
const CONT: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// How long any single read may wait: a hang fails the case instead of
/// blocking the run.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Cases of one table run on this many connections at a time.
const PARALLEL: usize = 4;

const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";

// ---------------------------------------------------------------------------
// Cases and the runner
// ---------------------------------------------------------------------------

enum Step {
    /// One `write` of these bytes.
    Send(Vec<u8>),
    /// These bytes in writes of `size` bytes each (TCP_NODELAY is set, so
    /// each write leaves as its own segment).
    Chopped(Vec<u8>, usize),
    /// Half-closes the client's side of the TCP connection.
    ShutdownWrite,
    /// The next frame from the server is exactly this one.
    Expect(Frame),
    /// The next frame is a Close with this code (`None`: an empty Close),
    /// then the server ends the TCP connection with no further bytes.
    Close(Option<u16>),
}

struct Case {
    name: String,
    steps: Vec<Step>,
}

impl Case {
    fn new(name: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            steps: Vec::new(),
        }
    }

    fn send(mut self, bytes: Vec<u8>) -> Case {
        self.steps.push(Step::Send(bytes));
        self
    }

    /// Each piece in its own write.
    fn writes(mut self, pieces: Vec<Vec<u8>>) -> Case {
        self.steps.extend(pieces.into_iter().map(Step::Send));
        self
    }

    fn chopped(mut self, bytes: Vec<u8>, size: usize) -> Case {
        self.steps.push(Step::Chopped(bytes, size));
        self
    }

    /// One write per byte.
    fn bytewise(self, bytes: Vec<u8>) -> Case {
        self.chopped(bytes, 1)
    }

    fn shutdown_write(mut self) -> Case {
        self.steps.push(Step::ShutdownWrite);
        self
    }

    fn expect(mut self, frame: Frame) -> Case {
        self.steps.push(Step::Expect(frame));
        self
    }

    fn expect_all(mut self, frames: Vec<Frame>) -> Case {
        self.steps.extend(frames.into_iter().map(Step::Expect));
        self
    }

    fn close(mut self, code: Option<u16>) -> Case {
        self.steps.push(Step::Close(code));
        self
    }

    fn closes_with(self, code: u16) -> Case {
        self.close(Some(code))
    }
}

/// Runs every case of a table on its own connection to `server`'s `/echo`
/// and fails with the list of failing cases.
fn run_table(server: &Server, table: &str, cases: Vec<Case>) {
    let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        panic!("duplicate case name {:?}", w[0]);
    }
    run_cases(table, &cases, |c: &Case| &c.name, |c| run_case(server, c));
}

/// Runs `run` on every case, `PARALLEL` at a time, and fails once with
/// every failing case (a panic counts as one) listed in the table's order.
fn run_cases<C: Sync>(
    table: &str,
    cases: &[C],
    name: fn(&C) -> &str,
    run: impl Fn(&C) -> Result<(), String> + Sync,
) {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(cases.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else {
                    break;
                };
                let outcome = catch_unwind(AssertUnwindSafe(|| run(case)))
                    .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_text(&*panic))));
                if let Err(why) = outcome {
                    failures
                        .lock()
                        .unwrap()
                        .push((i, format!("{}: {why}", name(case))));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    eprintln!(
        "{table}: {} cases, {} passed, {} failed, {:.2?}",
        cases.len(),
        cases.len() - failures.len(),
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .map(|(_, f)| f.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

fn run_case(server: &Server, case: &Case) -> Result<(), String> {
    let mut stream = raw_ws(server, "/echo");
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // A write can fail once the server has given up on the connection; the
    // reads that follow then say what the server did, so the first write
    // error is only kept for the report.
    let mut write_error: Option<String> = None;
    let with_write_error = |why: String, write_error: &Option<String>| match write_error {
        Some(w) => format!("{why} (an earlier write failed: {w})"),
        None => why,
    };
    let ends_in_close = matches!(case.steps.last(), Some(Step::Close(_)));
    let closing = [Step::Send(close_frame(1000, b"")), Step::Close(Some(1000))];
    let tail: &[Step] = if ends_in_close { &[] } else { &closing };
    let mut expected_frames = 0;
    for (n, step) in case.steps.iter().chain(tail).enumerate() {
        let at = if n < case.steps.len() {
            format!("step {}", n + 1)
        } else {
            "closing handshake after the case".to_owned()
        };
        match step {
            Step::Send(bytes) => {
                if write_error.is_none() {
                    if let Err(e) = stream.write_all(bytes) {
                        write_error = Some(format!("{at}: {e}"));
                    }
                }
            }
            Step::Chopped(bytes, size) => {
                for piece in bytes.chunks((*size).max(1)) {
                    if write_error.is_some() {
                        break;
                    }
                    if let Err(e) = stream.write_all(piece) {
                        write_error = Some(format!("{at}: {e}"));
                    }
                }
            }
            Step::ShutdownWrite => {
                if let Err(e) = stream.shutdown(Shutdown::Write) {
                    write_error.get_or_insert(format!("{at}: shutdown: {e}"));
                }
            }
            Step::Expect(want) => {
                expected_frames += 1;
                let got = read_server_frame(&mut stream).map_err(|e| {
                    with_write_error(
                        format!(
                            "{at}: expected {} (frame #{expected_frames}), {e}",
                            show(want)
                        ),
                        &write_error,
                    )
                })?;
                if got != *want {
                    return Err(format!(
                        "{at}: expected {} (frame #{expected_frames}), got {}",
                        show(want),
                        show(&got)
                    ));
                }
            }
            Step::Close(want) => {
                let got = read_server_frame(&mut stream).map_err(|e| {
                    with_write_error(
                        format!("{at}: expected {}, {e}", show_close(*want)),
                        &write_error,
                    )
                })?;
                if got.opcode != CLOSE {
                    return Err(format!(
                        "{at}: expected {}, got {}",
                        show_close(*want),
                        show(&got)
                    ));
                }
                let code = match got.payload.as_slice() {
                    [] => None,
                    [_] => return Err(format!("{at}: the server's Close has a 1-byte payload")),
                    [hi, lo, reason @ ..] => {
                        if std::str::from_utf8(reason).is_err() {
                            return Err(format!("{at}: the server's close reason is not UTF-8"));
                        }
                        Some(u16::from_be_bytes([*hi, *lo]))
                    }
                };
                if code != *want {
                    return Err(format!(
                        "{at}: expected {}, got {}",
                        show_close(*want),
                        show(&got)
                    ));
                }
                expect_eof(&mut stream).map_err(|e| format!("{at}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Reads one server frame, checking what every server frame must satisfy.
fn read_server_frame(stream: &mut TcpStream) -> Result<Frame, String> {
    let mut head = [0u8; 2];
    read_exactly(stream, &mut head)?;
    if head[0] & 0x70 != 0 {
        return Err(format!(
            "got a server frame with RSV bits set: {:#04x}",
            head[0]
        ));
    }
    if head[1] & 0x80 != 0 {
        return Err("got a masked server frame".to_owned());
    }
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            read_exactly(stream, &mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            read_exactly(stream, &mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > 64 << 20 {
        return Err(format!("got a frame header announcing {len} bytes"));
    }
    let opcode = head[0] & 0x0F;
    let fin = head[0] & 0x80 != 0;
    if opcode >= CLOSE && (!fin || len > 125) {
        return Err(format!(
            "got a fragmented or oversized control frame (opcode {opcode}, fin {fin}, {len} bytes)"
        ));
    }
    let mut payload = vec![0u8; len as usize];
    read_exactly(stream, &mut payload)?;
    Ok(Frame {
        fin,
        opcode,
        payload,
    })
}

fn read_exactly(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => "but the server closed the connection".to_owned(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            format!("but nothing arrived within {READ_TIMEOUT:?}")
        }
        _ => format!("but the read failed: {e}"),
    })
}

/// After its Close the server must end the TCP connection and send nothing
/// more.
fn expect_eof(stream: &mut TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => Err(format!(
            "the server sent {n} more bytes after its Close: {}",
            preview(&buf[..n])
        )),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Err(format!(
            "the server did not close TCP within {READ_TIMEOUT:?} after its Close"
        )),
        Err(e) => Err(format!("read after the Close failed: {e}")),
    }
}

fn opcode_name(opcode: u8) -> String {
    match opcode {
        CONT => "Continuation".to_owned(),
        TEXT => "Text".to_owned(),
        BINARY => "Binary".to_owned(),
        CLOSE => "Close".to_owned(),
        PING => "Ping".to_owned(),
        PONG => "Pong".to_owned(),
        n => format!("opcode {n}"),
    }
}

fn show(frame: &Frame) -> String {
    let close = if frame.opcode == CLOSE && frame.payload.len() >= 2 {
        format!(
            " code {}",
            u16::from_be_bytes([frame.payload[0], frame.payload[1]])
        )
    } else {
        String::new()
    };
    format!(
        "{}{}{close} ({} bytes{}) {}",
        opcode_name(frame.opcode),
        if frame.fin { "" } else { " without FIN" },
        frame.payload.len(),
        checksum(&frame.payload),
        preview(&frame.payload)
    )
}

fn show_close(code: Option<u16>) -> String {
    match code {
        Some(code) => format!("Close {code}"),
        None => "an empty Close".to_owned(),
    }
}

/// A short fingerprint so two long payloads that differ can be told apart.
fn checksum(payload: &[u8]) -> String {
    if payload.len() <= 32 {
        return String::new();
    }
    let sum = payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!(", fnv {sum:016x}")
}

fn preview(bytes: &[u8]) -> String {
    let cut = bytes.len().min(24);
    let mut text: String = bytes[..cut]
        .iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if cut < bytes.len() {
        text.push('…');
    }
    format!("\"{text}\"")
}

// ---------------------------------------------------------------------------
// Frame builders
// ---------------------------------------------------------------------------

fn text(payload: &[u8]) -> Vec<u8> {
    client_frame(FIN | TEXT, payload)
}

fn binary(payload: &[u8]) -> Vec<u8> {
    client_frame(FIN | BINARY, payload)
}

fn ping(payload: &[u8]) -> Vec<u8> {
    client_frame(FIN | PING, payload)
}

fn pong(payload: &[u8]) -> Vec<u8> {
    client_frame(FIN | PONG, payload)
}

fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    client_frame(FIN | CLOSE, &[&code.to_be_bytes()[..], reason].concat())
}

/// A message in fragments: the first carries `opcode`, the others are
/// continuations, the last has FIN.
fn fragmented(opcode: u8, parts: &[&[u8]]) -> Vec<u8> {
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .flat_map(|(i, part)| {
            let op = if i == 0 { opcode } else { CONT };
            let fin = if i == last { FIN } else { 0 };
            client_frame(fin | op, part)
        })
        .collect()
}

/// A message in fragments of at most `size` bytes.
fn fragments_of(opcode: u8, payload: &[u8], size: usize) -> Vec<u8> {
    if payload.is_empty() {
        return client_frame(FIN | opcode, payload);
    }
    let parts: Vec<&[u8]> = payload.chunks(size).collect();
    fragmented(opcode, &parts)
}

/// A frame with the MASK bit clear, which a server must refuse.
fn unmasked(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mut out = vec![b0, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// The length of a client frame's header (with its mask key).
fn header_len(frame: &[u8]) -> usize {
    match frame[1] & 0x7F {
        126 => 8,
        127 => 14,
        _ => 6,
    }
}

/// What the server must send back: one unfragmented frame.
fn reply(opcode: u8, payload: &[u8]) -> Frame {
    Frame {
        fin: true,
        opcode,
        payload: payload.to_vec(),
    }
}

fn echo_text(payload: &[u8]) -> Frame {
    reply(TEXT, payload)
}

fn echo_binary(payload: &[u8]) -> Frame {
    reply(BINARY, payload)
}

fn pong_of(payload: &[u8]) -> Frame {
    reply(PONG, payload)
}

/// ASCII text of `len` bytes.
fn text_payload(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-";
    (0..len).map(|i| ALPHABET[i % ALPHABET.len()]).collect()
}

/// Valid UTF-8 of exactly `len` bytes mixing 1- to 4-byte sequences, so
/// that any cut falls inside a sequence somewhere.
fn mixed_utf8(len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len);
    for c in "aκό€𝄞zσμε✓😀".chars().cycle() {
        if out.len() + c.len_utf8() > len {
            break;
        }
        out.push(c);
    }
    while out.len() < len {
        out.push('.');
    }
    out.into_bytes()
}

/// Bytes of `len` bytes covering every value, not aligned to the mask.
fn binary_payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(7) + i / 251) as u8)
        .collect()
}

fn echo_server(extra: &[&str]) -> Server {
    let mut args = vec![
        "--enable-echo",
        "--ping-interval",
        "0",
        "--notify-interval",
        "0",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

// ---------------------------------------------------------------------------
// 1.* Framing: text and binary messages of every length form
// ---------------------------------------------------------------------------

const LENGTHS: [usize; 7] = [0, 125, 126, 127, 128, 65535, 65536];

fn group_1() -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, len) in LENGTHS.into_iter().enumerate() {
        let t = text_payload(len);
        cases.push(
            Case::new(format!("1.1.{} text, {len} bytes", i + 1))
                .send(text(&t))
                .expect(echo_text(&t)),
        );
        let b = binary_payload(len);
        cases.push(
            Case::new(format!("1.2.{} binary, {len} bytes", i + 1))
                .send(binary(&b))
                .expect(echo_binary(&b)),
        );
    }
    let t = text_payload(65536);
    cases.push(
        Case::new("1.1.8 text, 65536 bytes, written in chunks of 997")
            .chopped(text(&t), 997)
            .expect(echo_text(&t)),
    );
    let b = binary_payload(65536);
    cases.push(
        Case::new("1.2.8 binary, 65536 bytes, written in chunks of 997")
            .chopped(binary(&b), 997)
            .expect(echo_binary(&b)),
    );

    // 1.3: byte by byte, one write per byte.
    let hello = "Hello, wörld ✓".as_bytes();
    cases.push(
        Case::new("1.3.1 text written byte by byte")
            .bytewise(text(hello))
            .expect(echo_text(hello)),
    );
    let b = binary_payload(126);
    cases.push(
        Case::new("1.3.2 binary, 126 bytes (16-bit length), written byte by byte")
            .bytewise(binary(&b))
            .expect(echo_binary(&b)),
    );
    cases.push(
        Case::new("1.3.3 empty text written byte by byte")
            .bytewise(text(b""))
            .expect(echo_text(b"")),
    );
    let t = mixed_utf8(300);
    cases.push(
        Case::new("1.3.4 multi-byte text, 300 bytes, written byte by byte")
            .bytewise(text(&t))
            .expect(echo_text(&t)),
    );
    let b = binary_payload(65536);
    let frame = binary(&b);
    cases.push(
        Case::new("1.3.5 binary, 65536 bytes: 64-bit header byte by byte, then the payload")
            .bytewise(frame[..14].to_vec())
            .send(frame[14..].to_vec())
            .expect(echo_binary(&b)),
    );
    let two = [text(b"first"), binary(b"second")].concat();
    cases.push(
        Case::new("1.3.6 two messages written byte by byte")
            .bytewise(two)
            .expect(echo_text(b"first"))
            .expect(echo_binary(b"second")),
    );

    // 1.4: several messages in one write.
    let lens = [0usize, 1, 125, 126, 127, 65535, 3];
    let mut burst = Vec::new();
    let mut echoes = Vec::new();
    for (i, len) in lens.into_iter().enumerate() {
        if i % 2 == 0 {
            let t = text_payload(len);
            burst.extend(text(&t));
            echoes.push(echo_text(&t));
        } else {
            let b = binary_payload(len);
            burst.extend(binary(&b));
            echoes.push(echo_binary(&b));
        }
    }
    cases.push(
        Case::new("1.4.1 seven text and binary messages of every length form in one write")
            .send(burst.clone())
            .expect_all(echoes.clone()),
    );
    cases.push(
        Case::new("1.4.2 the same seven messages in writes of 7 bytes")
            .chopped(burst, 7)
            .expect_all(echoes),
    );
    cases
}

// ---------------------------------------------------------------------------
// 2.* Pings and pongs
// ---------------------------------------------------------------------------

fn group_2() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(
        Case::new("2.1 ping without payload")
            .send(ping(b""))
            .expect(pong_of(b"")),
    );
    cases.push(
        Case::new("2.2 ping with a text payload")
            .send(ping(b"Hello, world!"))
            .expect(pong_of(b"Hello, world!")),
    );
    let bin = [0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff];
    cases.push(
        Case::new("2.3 ping with a binary payload")
            .send(ping(&bin))
            .expect(pong_of(&bin)),
    );
    let p125 = vec![0xfe; 125];
    cases.push(
        Case::new("2.4 ping with 125 bytes")
            .send(ping(&p125))
            .expect(pong_of(&p125)),
    );
    cases.push(
        Case::new("2.5 ping with 126 bytes -> 1002")
            .send(ping(&[0xfe; 126]))
            .closes_with(1002),
    );
    cases.push(
        Case::new("2.6 ping with 125 bytes written byte by byte")
            .bytewise(ping(&p125))
            .expect(pong_of(&p125)),
    );
    cases.push(Case::new("2.7 unsolicited pong without payload is ignored").send(pong(b"")));
    cases.push(
        Case::new("2.8 unsolicited pong with payload is ignored")
            .send(pong(b"unsolicited pong payload")),
    );
    cases.push(
        Case::new("2.9 unsolicited pong, then ping: only the ping is answered")
            .send([pong(b"unsolicited pong payload"), ping(b"ping payload")].concat())
            .expect(pong_of(b"ping payload")),
    );
    let pings: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("payload-{i}").into_bytes())
        .collect();
    let all: Vec<u8> = pings.iter().flat_map(|p| ping(p)).collect();
    let pongs: Vec<Frame> = pings.iter().map(|p| pong_of(p)).collect();
    cases.push(
        Case::new("2.10 ten pings in one write, answered in order")
            .send(all.clone())
            .expect_all(pongs.clone()),
    );
    cases.push(
        Case::new("2.11 ten pings written byte by byte, answered in order")
            .bytewise(all)
            .expect_all(pongs),
    );
    cases.push(
        Case::new("2.12 ping with 126 bytes: the header alone -> 1002")
            .send(ping(&[0u8; 126])[..8].to_vec())
            .closes_with(1002),
    );
    cases.push(
        Case::new("2.13 ping with a 64-bit length -> 1002")
            .send(ping(&[7u8; 70_000])[..14].to_vec())
            .closes_with(1002),
    );
    cases.push(
        Case::new("2.14 ping without FIN -> 1002")
            .send(client_frame(PING, b"frag"))
            .closes_with(1002),
    );
    cases.push(
        Case::new("2.15 ping in two fragments -> 1002")
            .send([client_frame(PING, b"fra"), client_frame(FIN | CONT, b"g")].concat())
            .closes_with(1002),
    );
    cases.push(
        Case::new("2.16 ping between two echoed messages")
            .send([text(b"one"), ping(b"p"), binary(b"two")].concat())
            .expect(echo_text(b"one"))
            .expect(pong_of(b"p"))
            .expect(echo_binary(b"two")),
    );
    cases.push(
        Case::new("2.17 ping with a payload that is not UTF-8 nor valid in a close reason")
            .send(ping(b"\xff\xfe\xed\xa0\x80"))
            .expect(pong_of(b"\xff\xfe\xed\xa0\x80")),
    );
    cases
}

// ---------------------------------------------------------------------------
// 3.* Reserved bits
// ---------------------------------------------------------------------------

/// Autobahn numbers the RSV field 1..7 (RSV1 is its most significant bit).
fn rsv(value: u8) -> u8 {
    value << 4
}

fn group_3() -> Vec<Case> {
    let mut cases = vec![
        Case::new("3.1 text with RSV=1 -> 1002")
            .send(client_frame(FIN | rsv(1) | TEXT, b"Hello, world!"))
            .closes_with(1002),
        Case::new("3.2 text, then text with RSV=2, then ping, in one write -> echo, 1002")
            .send(
                [
                    text(b"Hello, world!"),
                    client_frame(FIN | rsv(2) | TEXT, b"Hello, world!"),
                    ping(b""),
                ]
                .concat(),
            )
            .expect(echo_text(b"Hello, world!"))
            .close(Some(1002)),
        Case::new("3.3 text, echo awaited, then text with RSV=3 -> 1002")
            .send(text(b"Hello, world!"))
            .expect(echo_text(b"Hello, world!"))
            .send(
                [
                    client_frame(FIN | rsv(3) | TEXT, b"Hello, world!"),
                    ping(b""),
                ]
                .concat(),
            )
            .closes_with(1002),
        Case::new("3.4 text, text with RSV=4, ping, byte by byte -> echo, 1002")
            .bytewise(
                [
                    text(b"Hello, world!"),
                    client_frame(FIN | rsv(4) | TEXT, b"Hello, world!"),
                    ping(b""),
                ]
                .concat(),
            )
            .expect(echo_text(b"Hello, world!"))
            .close(Some(1002)),
        Case::new("3.5 binary with RSV=5 -> 1002")
            .send(client_frame(FIN | rsv(5) | BINARY, &[0xff; 8]))
            .closes_with(1002),
        Case::new("3.6 ping with RSV=6 -> 1002")
            .send(client_frame(FIN | rsv(6) | PING, b"Hello, world!"))
            .closes_with(1002),
        Case::new("3.7 close with RSV=7 -> 1002")
            .send(client_frame(FIN | rsv(7) | CLOSE, &1000u16.to_be_bytes()))
            .closes_with(1002),
        Case::new("3.8 pong with RSV=1 -> 1002")
            .send(client_frame(FIN | rsv(1) | PONG, b""))
            .closes_with(1002),
        Case::new("3.9 continuation with RSV=4 inside a fragmented text -> 1002")
            .send(
                [
                    client_frame(TEXT, b"Hello, "),
                    client_frame(FIN | rsv(4) | CONT, b"world!"),
                ]
                .concat(),
            )
            .closes_with(1002),
        Case::new("3.10 binary with RSV=2, header only, payload never sent -> 1002")
            .send(client_frame(FIN | rsv(2) | BINARY, &[0u8; 1000])[..8].to_vec())
            .closes_with(1002),
    ];
    // Every RSV value on a binary frame after a valid one in the same write.
    for value in 1..=7u8 {
        cases.push(
            Case::new(format!(
                "3.11.{value} binary, then binary with RSV={value}, in one write -> echo, 1002"
            ))
            .send(
                [
                    binary(b"ok"),
                    client_frame(FIN | rsv(value) | BINARY, b"bad"),
                    text(b"never echoed"),
                ]
                .concat(),
            )
            .expect(echo_binary(b"ok"))
            .close(Some(1002)),
        );
    }
    cases
}

// ---------------------------------------------------------------------------
// 4.* Reserved opcodes
// ---------------------------------------------------------------------------

fn group_4() -> Vec<Case> {
    let mut cases = Vec::new();
    for (sub, opcodes) in [(1, [3u8, 4, 5, 6, 7]), (2, [11, 12, 13, 14, 15])] {
        let [a, b, c, d, e] = opcodes;
        cases.push(
            Case::new(format!("4.{sub}.1 opcode {a}, empty -> 1002"))
                .send(client_frame(FIN | a, b""))
                .closes_with(1002),
        );
        cases.push(
            Case::new(format!("4.{sub}.2 opcode {b} with payload -> 1002"))
                .send(client_frame(FIN | b, b"reserved opcode payload"))
                .closes_with(1002),
        );
        cases.push(
            Case::new(format!(
                "4.{sub}.3 text, opcode {c}, ping in one write -> echo, 1002"
            ))
            .send(
                [
                    text(b"Hello, world!"),
                    client_frame(FIN | c, b""),
                    ping(b""),
                ]
                .concat(),
            )
            .expect(echo_text(b"Hello, world!"))
            .close(Some(1002)),
        );
        cases.push(
            Case::new(format!(
                "4.{sub}.4 text, opcode {d} with payload, ping in one write -> echo, 1002"
            ))
            .send(
                [
                    text(b"Hello, world!"),
                    client_frame(FIN | d, b"reserved opcode payload"),
                    ping(b""),
                ]
                .concat(),
            )
            .expect(echo_text(b"Hello, world!"))
            .close(Some(1002)),
        );
        cases.push(
            Case::new(format!(
                "4.{sub}.5 text, opcode {e} with payload, ping, byte by byte -> echo, 1002"
            ))
            .bytewise(
                [
                    text(b"Hello, world!"),
                    client_frame(FIN | e, b"reserved opcode payload"),
                    ping(b""),
                ]
                .concat(),
            )
            .expect(echo_text(b"Hello, world!"))
            .close(Some(1002)),
        );
    }
    for (i, op) in [3u8, 7, 11, 15].into_iter().enumerate() {
        cases.push(
            Case::new(format!("4.3.{} opcode {op} without FIN -> 1002", i + 1))
                .send(client_frame(op, b"x"))
                .closes_with(1002),
        );
    }
    cases.push(
        Case::new("4.3.5 opcode 3 inside a fragmented text -> 1002")
            .send([client_frame(TEXT, b"Hello"), client_frame(FIN | 3, b"!")].concat())
            .closes_with(1002),
    );
    cases
}

// ---------------------------------------------------------------------------
// 5.* Fragmentation
// ---------------------------------------------------------------------------

fn group_5() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(
        Case::new("5.1 ping in two fragments -> 1002")
            .send(
                [
                    client_frame(PING, b"fragment1"),
                    client_frame(FIN | CONT, b"fragment2"),
                ]
                .concat(),
            )
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.2 pong in two fragments -> 1002")
            .send(
                [
                    client_frame(PONG, b"fragment1"),
                    client_frame(FIN | CONT, b"fragment2"),
                ]
                .concat(),
            )
            .closes_with(1002),
    );
    let two = fragmented(TEXT, &[b"fragment1", b"fragment2"]);
    cases.push(
        Case::new("5.3 text in two fragments, one write")
            .send(two.clone())
            .expect(echo_text(b"fragment1fragment2")),
    );
    cases.push(
        Case::new("5.4 text in two fragments, one write per fragment")
            .writes(vec![
                client_frame(TEXT, b"fragment1"),
                client_frame(FIN | CONT, b"fragment2"),
            ])
            .expect(echo_text(b"fragment1fragment2")),
    );
    cases.push(
        Case::new("5.5 text in two fragments, byte by byte")
            .bytewise(two)
            .expect(echo_text(b"fragment1fragment2")),
    );
    let with_ping = [
        client_frame(TEXT, b"fragment1"),
        ping(b"pongme!"),
        client_frame(FIN | CONT, b"fragment2"),
    ]
    .concat();
    cases.push(
        Case::new("5.6 text in two fragments with a ping between, one write")
            .send(with_ping.clone())
            .expect(pong_of(b"pongme!"))
            .expect(echo_text(b"fragment1fragment2")),
    );
    cases.push(
        Case::new("5.7 text in two fragments with a ping between, the pong awaited")
            .send([client_frame(TEXT, b"fragment1"), ping(b"pongme!")].concat())
            .expect(pong_of(b"pongme!"))
            .send(client_frame(FIN | CONT, b"fragment2"))
            .expect(echo_text(b"fragment1fragment2")),
    );
    cases.push(
        Case::new("5.8 text in two fragments with a ping between, byte by byte")
            .bytewise(with_ping)
            .expect(pong_of(b"pongme!"))
            .expect(echo_text(b"fragment1fragment2")),
    );
    // 5.9 - 5.14: continuation with nothing to continue.
    for (base, fin) in [(9, FIN), (12, 0)] {
        let fin_text = if fin == FIN { "with" } else { "without" };
        let bytes = [
            client_frame(fin | CONT, b"non-continuation payload"),
            text(b"Hello, world!"),
        ]
        .concat();
        cases.push(
            Case::new(format!(
                "5.{base} continuation {fin_text} FIN and nothing to continue, then text -> 1002"
            ))
            .send(bytes.clone())
            .closes_with(1002),
        );
        cases.push(
            Case::new(format!(
                "5.{} continuation {fin_text} FIN and nothing to continue, one write per frame -> 1002",
                base + 1
            ))
            .writes(vec![
                client_frame(fin | CONT, b"non-continuation payload"),
                text(b"Hello, world!"),
            ])
            .closes_with(1002),
        );
        cases.push(
            Case::new(format!(
                "5.{} continuation {fin_text} FIN and nothing to continue, byte by byte -> 1002",
                base + 2
            ))
            .bytewise(bytes)
            .closes_with(1002),
        );
    }
    cases.push(
        Case::new("5.15 text in two fragments, then a stray continuation, then text -> echo, 1002")
            .send(
                [
                    fragmented(TEXT, &[b"fragment1", b"fragment2"]),
                    client_frame(CONT, b"fragment3"),
                    text(b"fragment4"),
                ]
                .concat(),
            )
            .expect(echo_text(b"fragment1fragment2"))
            .close(Some(1002)),
    );
    for (n, fin) in [(16, 0), (17, FIN)] {
        let round = [
            client_frame(fin | CONT, b"fragment1"),
            fragmented(TEXT, &[b"fragment2", b"fragment3"]),
        ]
        .concat();
        cases.push(
            Case::new(format!(
                "5.{n} twice: continuation (FIN={}) with nothing to continue, then a fragmented text -> 1002",
                u8::from(fin == FIN)
            ))
            .send(round.repeat(2))
            .closes_with(1002),
        );
    }
    cases.push(
        Case::new("5.18 text in two fragments, both with the text opcode -> 1002")
            .send(
                [
                    client_frame(TEXT, b"fragment1"),
                    client_frame(FIN | TEXT, b"fragment2"),
                ]
                .concat(),
            )
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.19 text in five fragments, pings between answered before the message ends")
            .send(
                [
                    client_frame(TEXT, b"fragment1"),
                    client_frame(CONT, b"fragment2"),
                    ping(b"pongme 1!"),
                ]
                .concat(),
            )
            .expect(pong_of(b"pongme 1!"))
            .send(
                [
                    client_frame(CONT, b"fragment3"),
                    client_frame(CONT, b"fragment4"),
                ]
                .concat(),
            )
            .send(ping(b"pongme 2!"))
            .expect(pong_of(b"pongme 2!"))
            .send(client_frame(FIN | CONT, b"fragment5"))
            .expect(echo_text(b"fragment1fragment2fragment3fragment4fragment5")),
    );
    cases.push(
        Case::new("5.20 text in five fragments with two pings between, one write")
            .send(
                [
                    client_frame(TEXT, b"fragment1"),
                    client_frame(CONT, b"fragment2"),
                    ping(b"pongme 1!"),
                    client_frame(CONT, b"fragment3"),
                    client_frame(CONT, b"fragment4"),
                    ping(b"pongme 2!"),
                    client_frame(FIN | CONT, b"fragment5"),
                ]
                .concat(),
            )
            .expect(pong_of(b"pongme 1!"))
            .expect(pong_of(b"pongme 2!"))
            .expect(echo_text(b"fragment1fragment2fragment3fragment4fragment5")),
    );
    // 5.21: binary and text in 2..N fragments.
    let b = binary_payload(1000);
    for (i, n) in [2usize, 3, 10, 100, 1000].into_iter().enumerate() {
        let size = b.len().div_ceil(n);
        cases.push(
            Case::new(format!(
                "5.21.{} binary, 1000 bytes in {n} fragments",
                i + 1
            ))
            .send(fragments_of(BINARY, &b, size))
            .expect(echo_binary(&b)),
        );
    }
    let t = mixed_utf8(1000);
    for (i, n) in [2usize, 3, 10, 100, 1000].into_iter().enumerate() {
        let size = t.len().div_ceil(n);
        cases.push(
            Case::new(format!(
                "5.22.{} multi-byte text, 1000 bytes in {n} fragments",
                i + 1
            ))
            .send(fragments_of(TEXT, &t, size))
            .expect(echo_text(&t)),
        );
    }
    cases.push(
        Case::new("5.23.1 new text while a fragmented binary is in progress -> 1002")
            .send([client_frame(BINARY, b"a"), text(b"b")].concat())
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.23.2 new binary while a fragmented text is in progress -> 1002")
            .send([client_frame(TEXT, b"a"), binary(b"b")].concat())
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.23.3 new fragmented binary while a fragmented binary is in progress -> 1002")
            .send([client_frame(BINARY, b"a"), client_frame(BINARY, b"b")].concat())
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.23.4 new text after the pong, while a fragmented text is in progress -> 1002")
            .send([client_frame(TEXT, b"a"), ping(b"p")].concat())
            .expect(pong_of(b"p"))
            .send(text(b"b"))
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.24 close without FIN -> 1002")
            .send(client_frame(CLOSE, &1000u16.to_be_bytes()))
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.25 close in two fragments -> 1002")
            .send(
                [
                    client_frame(CLOSE, &[0x03]),
                    client_frame(FIN | CONT, &[0xe8]),
                ]
                .concat(),
            )
            .closes_with(1002),
    );
    cases.push(
        Case::new("5.26 pong between fragments is ignored")
            .send(
                [
                    client_frame(BINARY, b"frag"),
                    pong(b"unsolicited"),
                    client_frame(FIN | CONT, b"ment"),
                ]
                .concat(),
            )
            .expect(echo_binary(b"fragment")),
    );
    cases.push(
        Case::new("5.27 fragmented text, then a fragmented binary and a text in one write")
            .send(
                [
                    fragmented(TEXT, &[b"one-", b"two-", b"three"]),
                    fragmented(BINARY, &[b"\x00\x01", b"\x02"]),
                    text(b"last"),
                ]
                .concat(),
            )
            .expect(echo_text(b"one-two-three"))
            .expect(echo_binary(b"\x00\x01\x02"))
            .expect(echo_text(b"last")),
    );
    cases.push(
        Case::new("5.28 continuation never completes: the next ping is still answered")
            .send(client_frame(BINARY, b"first part"))
            .send(ping(b"still alive"))
            .expect(pong_of(b"still alive"))
            .send(client_frame(FIN | CONT, b", second part"))
            .expect(echo_binary(b"first part, second part")),
    );
    cases
}

// ---------------------------------------------------------------------------
// 6.* UTF-8
// ---------------------------------------------------------------------------

/// Autobahn's UTF-8 vectors (after Markus Kuhn's decoder stress test):
/// (case number, bytes, valid).
fn utf8_vectors() -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut add = |group: &str, items: Vec<(Vec<u8>, bool)>| {
        for (i, (bytes, valid)) in items.into_iter().enumerate() {
            assert_eq!(
                std::str::from_utf8(&bytes).is_ok(),
                valid,
                "test table error in {group}.{}",
                i + 1
            );
            out.push((format!("{group}.{}", i + 1), bytes, valid));
        }
    };
    let valid = |items: &[&[u8]]| items.iter().map(|b| (b.to_vec(), true)).collect::<Vec<_>>();
    let invalid = |items: &[&[u8]]| {
        items
            .iter()
            .map(|b| (b.to_vec(), false))
            .collect::<Vec<_>>()
    };

    add(
        "6.5",
        valid(&[
            KOSME,
            b"A",
            "é".as_bytes(),
            "€".as_bytes(),
            "𝄞".as_bytes(),
            "aé€𝄞".as_bytes(),
        ]),
    );
    // Every prefix of "κόσμε": valid only on a code point boundary.
    add(
        "6.6",
        (1..=KOSME.len())
            .map(|n| (KOSME[..n].to_vec(), [2, 5, 7, 9, 11].contains(&n)))
            .collect(),
    );
    add(
        "6.7",
        valid(&[b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"]),
    );
    add(
        "6.8",
        invalid(&[b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]),
    );
    // U+007F, U+07FF, U+FFFF, U+10FFFF.
    add(
        "6.9",
        valid(&[b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]),
    );
    add(
        "6.10",
        invalid(&[
            b"\xf7\xbf\xbf\xbf",
            b"\xfb\xbf\xbf\xbf\xbf",
            b"\xfd\xbf\xbf\xbf\xbf\xbf",
        ]),
    );
    add(
        "6.11",
        vec![
            (b"\xed\x9f\xbf".to_vec(), true),
            (b"\xee\x80\x80".to_vec(), true),
            (b"\xef\xbf\xbd".to_vec(), true),
            (b"\xf4\x8f\xbf\xbf".to_vec(), true),
            (b"\xf4\x90\x80\x80".to_vec(), false),
        ],
    );
    let all_continuations: Vec<u8> = (0x80..=0xbf).collect();
    add(
        "6.12",
        invalid(&[
            b"\x80",
            b"\xbf",
            b"\x80\xbf",
            b"\x80\xbf\x80",
            b"\x80\xbf\x80\xbf",
            b"\x80\xbf\x80\xbf\x80",
            b"\x80\xbf\x80\xbf\x80\xbf",
            &all_continuations,
        ]),
    );
    let lonely = |range: std::ops::RangeInclusive<u8>| -> Vec<u8> {
        range.flat_map(|b| [b, b' ']).collect()
    };
    add(
        "6.13",
        invalid(&[
            &lonely(0xc0..=0xdf),
            &lonely(0xe0..=0xef),
            &lonely(0xf0..=0xf7),
            &lonely(0xf8..=0xfb),
            &lonely(0xfc..=0xfd),
        ]),
    );
    let truncated: [&[u8]; 10] = [
        b"\xc0",
        b"\xe0\x80",
        b"\xf0\x80\x80",
        b"\xf8\x80\x80\x80",
        b"\xfc\x80\x80\x80\x80",
        b"\xdf",
        b"\xef\xbf",
        b"\xf7\xbf\xbf",
        b"\xfb\xbf\xbf\xbf",
        b"\xfd\xbf\xbf\xbf\xbf",
    ];
    add("6.14", invalid(&truncated));
    add("6.15", invalid(&[&truncated.concat()]));
    add("6.16", invalid(&[b"\xfe", b"\xff", b"\xfe\xfe\xff\xff"]));
    add(
        "6.17",
        invalid(&[
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf8\x80\x80\x80\xaf",
            b"\xfc\x80\x80\x80\x80\xaf",
        ]),
    );
    add(
        "6.18",
        invalid(&[
            b"\xc1\xbf",
            b"\xe0\x9f\xbf",
            b"\xf0\x8f\xbf\xbf",
            b"\xf8\x87\xbf\xbf\xbf",
            b"\xfc\x83\xbf\xbf\xbf\xbf",
        ]),
    );
    add(
        "6.19",
        invalid(&[
            b"\xc0\x80",
            b"\xe0\x80\x80",
            b"\xf0\x80\x80\x80",
            b"\xf8\x80\x80\x80\x80",
            b"\xfc\x80\x80\x80\x80\x80",
        ]),
    );
    // Single UTF-16 surrogates U+D800..U+DFFF, encoded.
    add(
        "6.20",
        invalid(&[
            b"\xed\xa0\x80",
            b"\xed\xad\xbf",
            b"\xed\xae\x80",
            b"\xed\xaf\xbf",
            b"\xed\xb0\x80",
            b"\xed\xbe\x80",
            b"\xed\xbf\xbf",
        ]),
    );
    add(
        "6.21",
        invalid(&[
            b"\xed\xa0\x80\xed\xb0\x80",
            b"\xed\xa0\x80\xed\xbf\xbf",
            b"\xed\xad\xbf\xed\xb0\x80",
            b"\xed\xad\xbf\xed\xbf\xbf",
            b"\xed\xae\x80\xed\xb0\x80",
            b"\xed\xae\x80\xed\xbf\xbf",
            b"\xed\xaf\xbf\xed\xb0\x80",
            b"\xed\xaf\xbf\xed\xbf\xbf",
        ]),
    );
    // Noncharacters U+xFFFE and U+xFFFF of every plane are valid UTF-8.
    add(
        "6.22",
        (0..=16u32)
            .flat_map(|plane| [plane << 16 | 0xfffe, plane << 16 | 0xffff])
            .map(|cp| {
                let c = char::from_u32(cp).expect("a scalar value");
                (c.to_string().into_bytes(), true)
            })
            .collect(),
    );
    // Specials and the byte order mark U+FEFF.
    add(
        "6.23",
        valid(&[
            b"\xef\xbf\xb9",
            b"\xef\xbf\xba",
            b"\xef\xbf\xbb",
            b"\xef\xbf\xbc",
            b"\xef\xbf\xbd",
            b"\xef\xbb\xbf",
            b"\xef\xbb\xbfBOM first",
        ]),
    );
    out
}

fn group_6() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.push(
        Case::new("6.1.1 empty text")
            .send(text(b""))
            .expect(echo_text(b"")),
    );
    cases.push(
        Case::new("6.1.2 text in three empty fragments")
            .send(fragmented(TEXT, &[b"", b"", b""]))
            .expect(echo_text(b"")),
    );
    cases.push(
        Case::new("6.1.3 text in three fragments, the first and last empty")
            .send(fragmented(TEXT, &[b"", b"middle frame payload", b""]))
            .expect(echo_text(b"middle frame payload")),
    );
    let hello = "Hello-µ@ßöäüàá-UTF-8!!";
    cases.push(
        Case::new("6.2.1 valid UTF-8 in one frame")
            .send(text(hello.as_bytes()))
            .expect(echo_text(hello.as_bytes())),
    );
    let by_char: Vec<Vec<u8>> = hello.chars().map(|c| c.to_string().into_bytes()).collect();
    let parts: Vec<&[u8]> = by_char.iter().map(Vec::as_slice).collect();
    cases.push(
        Case::new("6.2.2 valid UTF-8 fragmented on code points")
            .send(fragmented(TEXT, &parts))
            .expect(echo_text(hello.as_bytes())),
    );
    cases.push(
        Case::new("6.2.3 valid UTF-8 in fragments of one byte")
            .send(fragments_of(TEXT, hello.as_bytes(), 1))
            .expect(echo_text(hello.as_bytes())),
    );
    cases.push(
        Case::new("6.2.4 \"κόσμε\" in fragments of one byte")
            .send(fragments_of(TEXT, KOSME, 1))
            .expect(echo_text(KOSME)),
    );
    let edited = [KOSME, b"\xed\xa0\x80", b"edited"].concat();
    cases.push(
        Case::new("6.3.1 \"κόσμε\" + surrogate U+D800 + \"edited\" in one frame -> 1007")
            .send(text(&edited))
            .closes_with(1007),
    );
    cases.push(
        Case::new(
            "6.3.2 \"κόσμε\" + surrogate U+D800 + \"edited\" in fragments of one byte -> 1007",
        )
        .send(fragments_of(TEXT, &edited, 1))
        .closes_with(1007),
    );

    // 6.4: fail fast. The rest of the message is never sent, so only a
    // server that validates as bytes arrive can answer.
    let bad = b"\xf4\x90\x80\x80";
    cases.push(
        Case::new(
            "6.4.1 fail fast: valid fragment (ping answered), then an invalid fragment -> 1007",
        )
        .send([client_frame(TEXT, KOSME), ping(b"still valid")].concat())
        .expect(pong_of(b"still valid"))
        .send(client_frame(CONT, bad))
        .closes_with(1007),
    );
    cases.push(
        Case::new(
            "6.4.2 fail fast: \"κόσμε\\xf4\" (ping answered), then a fragment \"\\x90\" -> 1007",
        )
        .send([client_frame(TEXT, &[KOSME, b"\xf4"].concat()), ping(b"p")].concat())
        .expect(pong_of(b"p"))
        .send(client_frame(CONT, b"\x90\x80\x80"))
        .closes_with(1007),
    );
    let whole = text(&[KOSME, bad, b"edited"].concat());
    let h = header_len(&whole);
    cases.push(
        Case::new("6.4.3 fail fast in one frame: valid prefix, then the invalid bytes -> 1007")
            .send(whole[..h + KOSME.len()].to_vec())
            .send(whole[h + KOSME.len()..h + KOSME.len() + 4].to_vec())
            .closes_with(1007),
    );
    cases.push(
        Case::new("6.4.4 fail fast in one frame: the invalid sequence split across writes -> 1007")
            .send(whole[..h + KOSME.len() + 1].to_vec())
            .send(whole[h + KOSME.len() + 1..h + KOSME.len() + 2].to_vec())
            .closes_with(1007),
    );
    cases.push(
        Case::new("6.4.5 fail fast: invalid byte in the FIRST fragment, nothing more sent -> 1007")
            .send(client_frame(TEXT, b"ok\xffmore"))
            .closes_with(1007),
    );
    let mut big = vec![b'a'; 60_000];
    big[..KOSME.len()].copy_from_slice(KOSME);
    big[KOSME.len()] = 0xc0;
    let frame = text(&big);
    let h = header_len(&frame);
    cases.push(
        Case::new("6.4.6 fail fast: invalid byte early in a 60000-byte frame, the rest never sent -> 1007")
            .send(frame[..h + 100].to_vec())
            .closes_with(1007),
    );
    cases.push(
        Case::new("6.4.7 fail fast: surrogate in the first of many continuation frames -> 1007")
            .send(
                [
                    client_frame(TEXT, b"start "),
                    client_frame(CONT, b"\xed\xa0\x80 and more"),
                ]
                .concat(),
            )
            .closes_with(1007),
    );

    for (number, bytes, valid) in utf8_vectors() {
        let label = preview(&bytes);
        let single = Case::new(format!("{number} {label} in one frame")).send(text(&bytes));
        let split = Case::new(format!("{number}b {label} in fragments of one byte"))
            .send(fragments_of(TEXT, &bytes, 1));
        if valid {
            cases.push(single.expect(echo_text(&bytes)));
            cases.push(split.expect(echo_text(&bytes)));
        } else {
            cases.push(single.closes_with(1007));
            cases.push(split.closes_with(1007));
        }
    }

    // 6.24: valid text cut into two fragments at every byte position.
    let sample = "aé€𝄞z κόσμε".as_bytes();
    for cut in 1..sample.len() {
        cases.push(
            Case::new(format!(
                "6.24.{cut} \"aé€𝄞z κόσμε\" in two fragments cut at byte {cut}"
            ))
            .send(fragmented(TEXT, &[&sample[..cut], &sample[cut..]]))
            .expect(echo_text(sample)),
        );
    }
    // 6.25: the same text in one frame, written in two pieces cut at every
    // byte of the payload.
    let frame = text(sample);
    let h = header_len(&frame);
    for cut in 1..sample.len() {
        cases.push(
            Case::new(format!(
                "6.25.{cut} \"aé€𝄞z κόσμε\" in one frame written in two pieces at byte {cut}"
            ))
            .writes(vec![frame[..h + cut].to_vec(), frame[h + cut..].to_vec()])
            .expect(echo_text(sample)),
        );
    }
    cases.push(
        Case::new("6.26.1 truncated sequence at the end of the last fragment -> 1007")
            .send(fragmented(TEXT, &[b"abc", b"\xe2\x82"]))
            .closes_with(1007),
    );
    cases.push(
        Case::new(
            "6.26.2 a sequence started in one message does not continue into the next -> 1007",
        )
        .send([text(b"abc\xe2"), text(b"\x82\xac")].concat())
        .closes_with(1007),
    );
    cases.push(
        Case::new("6.27 invalid UTF-8 in a binary message is echoed")
            .send(fragmented(BINARY, &[b"\xff\xfe", b"\xed\xa0\x80", b"\xc0"]))
            .expect(echo_binary(b"\xff\xfe\xed\xa0\x80\xc0")),
    );
    cases
}

// ---------------------------------------------------------------------------
// 7.* Close handling
// ---------------------------------------------------------------------------

fn group_7() -> Vec<Case> {
    let mut cases = vec![
        Case::new("7.1.1 echo, then close")
            .send(text(b"Hello World!"))
            .expect(echo_text(b"Hello World!"))
            .send(close_frame(1000, b""))
            .closes_with(1000),
        Case::new("7.1.2 two closes: one answer")
            .send([close_frame(1000, b""), close_frame(1000, b"")].concat())
            .closes_with(1000),
        Case::new("7.1.3 ping after close is not answered")
            .send([close_frame(1000, b""), ping(b"after close")].concat())
            .closes_with(1000),
        Case::new("7.1.4 text after close is not echoed")
            .send([close_frame(1000, b""), text(b"after close")].concat())
            .closes_with(1000),
        Case::new("7.1.5 fragment, close, last fragment: no echo")
            .send(
                [
                    client_frame(TEXT, b"fragment1"),
                    close_frame(1000, b""),
                    client_frame(FIN | CONT, b"fragment2"),
                ]
                .concat(),
            )
            .closes_with(1000),
    ];
    let t = text_payload(60_000);
    cases.push(
        Case::new("7.1.6 60000-byte text, close, ping: echo, close, no pong")
            .send([text(&t), close_frame(1000, b""), ping(b"after close")].concat())
            .expect(echo_text(&t))
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.1.7 text after close, in a later write, is not echoed")
            .send(close_frame(1000, b""))
            .send(text(b"after close"))
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.1.8 invalid frame after close is ignored")
            .send(
                [
                    close_frame(1000, b""),
                    client_frame(FIN | rsv(7) | 3, b"junk"),
                ]
                .concat(),
            )
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.1.9 close, then the client half-closes TCP: the Close is still answered")
            .send(close_frame(1000, b""))
            .shutdown_write()
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.1.10 text and close in one write, then a half-close: echo, then close")
            .send([text(b"last words"), close_frame(1001, b"")].concat())
            .shutdown_write()
            .expect(echo_text(b"last words"))
            .closes_with(1001),
    );
    cases.push(
        Case::new("7.3.1 close without payload -> empty close")
            .send(client_frame(FIN | CLOSE, b""))
            .close(None),
    );
    cases.push(
        Case::new("7.3.2 close with a 1-byte payload -> 1002")
            .send(client_frame(FIN | CLOSE, b"a"))
            .closes_with(1002),
    );
    cases.push(
        Case::new("7.3.3 close 1000 without reason")
            .send(close_frame(1000, b""))
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.3.4 close 1000 with a reason")
            .send(close_frame(1000, b"Hello World!"))
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.3.5 close 1000 with a 123-byte reason (125-byte payload)")
            .send(close_frame(1000, &[b'*'; 123]))
            .closes_with(1000),
    );
    cases.push(
        Case::new("7.3.6 close 1000 with a 124-byte reason (126-byte payload) -> 1002")
            .send(close_frame(1000, &[b'*'; 124]))
            .closes_with(1002),
    );
    cases.push(
        Case::new("7.3.7 close written byte by byte")
            .bytewise(close_frame(1001, "au revoir ✓".as_bytes()))
            .closes_with(1001),
    );
    cases.push(
        Case::new("7.5.1 close with an invalid UTF-8 reason -> 1007")
            .send(close_frame(1000, &[KOSME, b"\xed\xa0\x80edited"].concat()))
            .closes_with(1007),
    );
    cases.push(
        Case::new("7.5.2 close with a reason ending in a truncated sequence -> 1007")
            .send(close_frame(1000, b"bye \xce"))
            .closes_with(1007),
    );
    cases.push(
        Case::new("7.5.3 close with a multi-byte UTF-8 reason")
            .send(close_frame(1000, KOSME))
            .closes_with(1000),
    );
    let valid = [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ];
    for (i, code) in valid.into_iter().enumerate() {
        cases.push(
            Case::new(format!("7.7.{} close {code} is echoed", i + 1))
                .send(close_frame(code, b"reason"))
                .closes_with(code),
        );
    }
    let invalid = [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999];
    for (i, code) in invalid.into_iter().enumerate() {
        cases.push(
            Case::new(format!("7.9.{} close {code} -> 1002", i + 1))
                .send(close_frame(code, b""))
                .closes_with(1002),
        );
    }
    for (i, code) in [5000u16, 65535].into_iter().enumerate() {
        cases.push(
            Case::new(format!("7.13.{} close {code} -> 1002", i + 1))
                .send(close_frame(code, b""))
                .closes_with(1002),
        );
    }
    cases
}

// ---------------------------------------------------------------------------
// 9.* Limits and performance (sizes scaled to keep the run short)
// ---------------------------------------------------------------------------

fn group_9() -> Vec<Case> {
    let mut cases = Vec::new();
    let sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20];
    for (i, size) in sizes.into_iter().enumerate() {
        let t = mixed_utf8(size);
        cases.push(
            Case::new(format!("9.1.{} text, {} KiB", i + 1, size >> 10))
                .send(text(&t))
                .expect(echo_text(&t)),
        );
        let b = binary_payload(size);
        cases.push(
            Case::new(format!("9.2.{} binary, {} KiB", i + 1, size >> 10))
                .send(binary(&b))
                .expect(echo_binary(&b)),
        );
    }
    let t = mixed_utf8(1 << 20);
    let b = binary_payload(1 << 20);
    let fragment_sizes = [
        64usize,
        256,
        1 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
    ];
    for (i, size) in fragment_sizes.into_iter().enumerate() {
        cases.push(
            Case::new(format!(
                "9.3.{} text, 1 MiB in fragments of {size} bytes",
                i + 1
            ))
            .send(fragments_of(TEXT, &t, size))
            .expect(echo_text(&t)),
        );
        cases.push(
            Case::new(format!(
                "9.4.{} binary, 1 MiB in fragments of {size} bytes",
                i + 1
            ))
            .send(fragments_of(BINARY, &b, size))
            .expect(echo_binary(&b)),
        );
    }
    let t = mixed_utf8(256 << 10);
    let b = binary_payload(256 << 10);
    for (i, chop) in [64usize, 128, 256, 512, 1024, 2048].into_iter().enumerate() {
        cases.push(
            Case::new(format!(
                "9.5.{} text, 256 KiB, written in chunks of {chop}",
                i + 1
            ))
            .chopped(text(&t), chop)
            .expect(echo_text(&t)),
        );
        cases.push(
            Case::new(format!(
                "9.6.{} binary, 256 KiB, written in chunks of {chop}",
                i + 1
            ))
            .chopped(binary(&b), chop)
            .expect(echo_binary(&b)),
        );
    }
    for (i, size) in [0usize, 16, 64, 256, 1024, 4096].into_iter().enumerate() {
        let (mut burst_t, mut burst_b) = (Vec::new(), Vec::new());
        let (mut echo_t, mut echo_b) = (Vec::new(), Vec::new());
        for n in 0..1000 {
            let mut t = text_payload(size);
            let mut b = binary_payload(size);
            // Make every message distinct so a reordering shows.
            let tag = format!("{n:04}");
            if size >= 4 {
                t[..4].copy_from_slice(tag.as_bytes());
                b[..4].copy_from_slice(tag.as_bytes());
            }
            burst_t.extend(text(&t));
            burst_b.extend(binary(&b));
            echo_t.push(echo_text(&t));
            echo_b.push(echo_binary(&b));
        }
        cases.push(
            Case::new(format!(
                "9.7.{} 1000 texts of {size} bytes in one write, echoed in order",
                i + 1
            ))
            .send(burst_t)
            .expect_all(echo_t),
        );
        cases.push(
            Case::new(format!(
                "9.8.{} 1000 binaries of {size} bytes in one write, echoed in order",
                i + 1
            ))
            .send(burst_b)
            .expect_all(echo_b),
        );
    }
    // 1000 messages mixed with pings, pipelined.
    let mut burst = Vec::new();
    let mut replies = Vec::new();
    for n in 0..1000u32 {
        let payload = n.to_be_bytes();
        match n % 3 {
            0 => {
                burst.extend(ping(&payload));
                replies.push(pong_of(&payload));
            }
            1 => {
                let t = format!("message {n}").into_bytes();
                burst.extend(fragmented(TEXT, &[&t[..3], &t[3..]]));
                replies.push(echo_text(&t));
            }
            _ => {
                burst.extend(binary(&payload));
                replies.push(echo_binary(&payload));
            }
        }
    }
    cases.push(
        Case::new(
            "9.7.7 1000 pings, fragmented texts and binaries in one write, answered in order",
        )
        .send(burst)
        .expect_all(replies),
    );
    cases
}

// ---------------------------------------------------------------------------
// 10.* Miscellaneous: auto-fragmentation and unmasked frames
// ---------------------------------------------------------------------------

fn group_10() -> Vec<Case> {
    let mut cases = Vec::new();
    let t = mixed_utf8(65536);
    cases.push(
        Case::new("10.1.1 text, 65536 bytes, in fragments of 1300")
            .send(fragments_of(TEXT, &t, 1300))
            .expect(echo_text(&t)),
    );
    cases.push(
        Case::new("10.1.2 text, 65536 bytes, in fragments of 1300, one write per fragment")
            .writes(
                t.chunks(1300)
                    .enumerate()
                    .map(|(i, c)| {
                        let op = if i == 0 { TEXT } else { CONT };
                        let fin = if (i + 1) * 1300 >= t.len() { FIN } else { 0 };
                        client_frame(fin | op, c)
                    })
                    .collect(),
            )
            .expect(echo_text(&t)),
    );
    let unmasked_cases: [(&str, Vec<u8>); 6] = [
        ("text", unmasked(FIN | TEXT, b"Hello")),
        ("binary", unmasked(FIN | BINARY, b"\x00\x01")),
        ("empty text", unmasked(FIN | TEXT, b"")),
        ("ping", unmasked(FIN | PING, b"ping")),
        ("pong", unmasked(FIN | PONG, b"")),
        ("close", unmasked(FIN | CLOSE, &1000u16.to_be_bytes())),
    ];
    for (i, (what, frame)) in unmasked_cases.into_iter().enumerate() {
        cases.push(
            Case::new(format!("10.2.{} unmasked {what} -> 1002", i + 1))
                .send(frame)
                .closes_with(1002),
        );
    }
    cases.push(
        Case::new("10.2.7 masked text, then unmasked text, in one write -> echo, 1002")
            .send([text(b"masked"), unmasked(FIN | TEXT, b"unmasked")].concat())
            .expect(echo_text(b"masked"))
            .close(Some(1002)),
    );
    cases.push(
        Case::new("10.2.8 unmasked continuation of a masked fragment -> 1002")
            .send(
                [
                    client_frame(TEXT, b"masked "),
                    unmasked(FIN | CONT, b"unmasked"),
                ]
                .concat(),
            )
            .closes_with(1002),
    );
    let mut long = vec![FIN | BINARY, 126];
    long.extend_from_slice(&200u16.to_be_bytes());
    cases.push(
        Case::new("10.2.9 unmasked binary with a 16-bit length, header only -> 1002")
            .send(long)
            .closes_with(1002),
    );
    cases.push(
        Case::new("10.2.10 unmasked text written byte by byte -> 1002")
            .bytewise(unmasked(FIN | TEXT, b"Hello"))
            .closes_with(1002),
    );
    let mut huge = vec![FIN | BINARY, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    cases.push(
        Case::new("10.3.1 64-bit length with the most significant bit set -> 1002")
            .send(huge)
            .closes_with(1002),
    );
    cases
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn autobahn_1_framing() {
    let server = echo_server(&[]);
    run_table(&server, "group 1", group_1());
}

/// 1.5: frames written in the same write as the upgrade request are not
/// lost (a client may pipeline them; the server must keep the bytes that
/// follow the request head).
#[test]
fn autobahn_1_frames_pipelined_with_the_handshake() {
    let server = echo_server(&[]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut bytes = b"GET /echo HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
    bytes.extend(text(b"early"));
    bytes.extend(ping(b"early ping"));
    bytes.extend(close_frame(1000, b""));
    stream.write_all(&bytes).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("handshake response");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let echo = read_server_frame(&mut stream).unwrap_or_else(|e| panic!("1.5 echo: {e}"));
    assert_eq!(echo, echo_text(b"early"), "1.5 echo");
    let pong = read_server_frame(&mut stream).unwrap_or_else(|e| panic!("1.5 pong: {e}"));
    assert_eq!(pong, pong_of(b"early ping"), "1.5 pong");
    assert_eq!(expect_close(&mut stream), Some(1000), "1.5 close");
}

#[test]
fn autobahn_2_pings_and_pongs() {
    let server = echo_server(&[]);
    run_table(&server, "group 2", group_2());
}

#[test]
fn autobahn_3_reserved_bits() {
    let server = echo_server(&[]);
    run_table(&server, "group 3", group_3());
}

#[test]
fn autobahn_4_reserved_opcodes() {
    let server = echo_server(&[]);
    run_table(&server, "group 4", group_4());
}

#[test]
fn autobahn_5_fragmentation() {
    let server = echo_server(&[]);
    run_table(&server, "group 5", group_5());
}

#[test]
fn autobahn_6_utf8() {
    let server = echo_server(&[]);
    run_table(&server, "group 6", group_6());
}

#[test]
fn autobahn_7_close_handling() {
    let server = echo_server(&[]);
    run_table(&server, "group 7", group_7());
}

#[test]
fn autobahn_9_limits_and_performance() {
    let server = echo_server(&[
        "--max-message-bytes",
        "4194304",
        "--max-queue-bytes",
        "16777216",
    ]);
    run_table(&server, "group 9", group_9());
}

#[test]
fn autobahn_9_max_message_bytes() {
    let server = echo_server(&["--max-message-bytes", "1000"]);
    let t = text_payload(1000);
    let b = binary_payload(1000);
    let t1001 = text_payload(1001);
    let b1001 = binary_payload(1001);
    let cases = vec![
        Case::new("9.9.1 text of exactly --max-message-bytes is echoed")
            .send(text(&t))
            .expect(echo_text(&t)),
        Case::new("9.9.2 binary of exactly --max-message-bytes is echoed")
            .send(binary(&b))
            .expect(echo_binary(&b)),
        Case::new("9.9.3 text one byte over -> 1009")
            .send(text(&t1001))
            .closes_with(1009),
        Case::new("9.9.4 binary one byte over -> 1009")
            .send(binary(&b1001))
            .closes_with(1009),
        Case::new("9.9.5 one byte over: the header alone -> 1009")
            .send(binary(&b1001)[..8].to_vec())
            .closes_with(1009),
        Case::new("9.9.6 exactly the limit in fragments of 500 is echoed")
            .send(fragments_of(TEXT, &t, 500))
            .expect(echo_text(&t)),
        Case::new("9.9.7 one byte over across fragments 500 + 501 -> 1009")
            .send(fragmented(BINARY, &[&b1001[..500], &b1001[500..]]))
            .closes_with(1009),
        Case::new("9.9.8 one byte over: 1000 bytes, then a 1-byte continuation -> 1009")
            .send(fragmented(TEXT, &[&t1001[..1000], &t1001[1000..]]))
            .closes_with(1009),
        Case::new("9.9.9 one byte over in fragments of one byte -> 1009")
            .send(fragments_of(BINARY, &b1001, 1))
            .closes_with(1009),
        Case::new("9.9.10 a frame announcing 2^40 bytes -> 1009 at once")
            .send({
                let mut h = vec![FIN | BINARY, 0x80 | 127];
                h.extend_from_slice(&(1u64 << 40).to_be_bytes());
                h.extend_from_slice(&[9, 9, 9, 9]);
                h
            })
            .closes_with(1009),
        Case::new("9.9.11 the limit counts each message, not the connection")
            .send([text(&t), binary(&b), text(&t)].concat())
            .expect(echo_text(&t))
            .expect(echo_binary(&b))
            .expect(echo_text(&t)),
        Case::new("9.9.12 pings between fragments do not count toward the limit")
            .send(
                [
                    client_frame(BINARY, &b[..500]),
                    ping(&[1; 125]),
                    client_frame(FIN | CONT, &b[500..]),
                ]
                .concat(),
            )
            .expect(pong_of(&[1; 125]))
            .expect(echo_binary(&b)),
        Case::new("9.9.13 echo, then a message over the limit in the same write -> echo, 1009")
            .send([text(b"small"), binary(&b1001)].concat())
            .expect(echo_text(b"small"))
            .close(Some(1009)),
    ];
    run_table(&server, "group 9 (--max-message-bytes 1000)", cases);
}

#[test]
fn autobahn_9_1_6_sixteen_mib_message() {
    let server = echo_server(&[
        "--max-message-bytes",
        "16777216",
        "--max-queue-bytes",
        "67108864",
    ]);
    let t = mixed_utf8(16 << 20);
    let cases = vec![Case::new("9.1.6 text, 16 MiB")
        .send(text(&t))
        .expect(echo_text(&t))];
    run_table(&server, "group 9 (16 MiB)", cases);
}

#[test]
fn autobahn_5_65536_fragments_of_one_byte() {
    let server = echo_server(&["--max-message-bytes", "1048576"]);
    let t = mixed_utf8(65536);
    let b = binary_payload(65536);
    let cases = vec![
        Case::new("5.29.1 text of 65536 bytes in 65536 fragments of one byte")
            .send(fragments_of(TEXT, &t, 1))
            .expect(echo_text(&t)),
        Case::new("5.29.2 binary of 65536 bytes in 65536 fragments of one byte")
            .send(fragments_of(BINARY, &b, 1))
            .expect(echo_binary(&b)),
    ];
    run_table(&server, "group 5 (65536 fragments)", cases);
}

#[test]
fn autobahn_10_misc() {
    let server = echo_server(&[]);
    run_table(&server, "group 10", group_10());
}

// ---------------------------------------------------------------------------
// 12.* and 13.* permessage-deflate (see conformance/deflate.rs)
// ---------------------------------------------------------------------------

#[path = "conformance/deflate.rs"]
mod deflate;

fn deflate_server() -> Server {
    echo_server(&["--max-message-bytes", deflate::MAX_MESSAGE])
}

#[test]
fn autobahn_12_compressed_echo_of_every_size_and_data_set() {
    let server = deflate_server();
    let data = deflate::data_sets();
    let cases = deflate::group_12(&data);
    deflate::run_table(&server, "group 12", &cases, &data);
}

#[test]
fn autobahn_13_every_parameter_offer() {
    let server = deflate_server();
    let data = deflate::data_sets();
    let json = data.iter().position(|d| d.name == "json").unwrap();
    let cases = deflate::group_13(json);
    deflate::run_table(&server, "group 13", &cases, &data);
}

#[test]
fn compressed_frame_rules_close_with_their_codes() {
    let server = echo_server(&[]);
    let mut failures = Vec::new();
    for (name, bytes, code) in deflate::rule_cases() {
        let outcome = deflate::open(&server, "permessage-deflate").and_then(|(mut stream, _)| {
            stream.write_all(&bytes).map_err(|e| e.to_string())?;
            deflate::expect_close(&mut stream, code)
        });
        if let Err(why) = outcome {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compression_off_never_negotiates_and_rsv1_is_then_1002() {
    let server = echo_server(&["--compression", "off"]);
    let (mut stream, answer) = deflate::open(&server, "permessage-deflate").unwrap();
    assert_eq!(answer, None);
    let frame = deflate::frames(TEXT, b"Hello", true, 0);
    stream.write_all(&frame).unwrap();
    deflate::expect_close(&mut stream, 1002).unwrap();
    // Uncompressed traffic is untouched.
    let (mut stream, _) = deflate::open(&server, "permessage-deflate").unwrap();
    stream.write_all(&text(b"plain")).unwrap();
    assert_eq!(read_server_frame(&mut stream).unwrap(), echo_text(b"plain"));
    deflate::close_normally(&mut stream).unwrap();
}

/// 200 inflate bombs, each a few KiB that would inflate to GiBs: each is
/// closed with 1009 after at most --max-message-bytes of output, so memory
/// and time stay bounded.
#[test]
fn inflate_bombs_cost_at_most_the_message_bound() {
    let server = echo_server(&[]);
    let before = server.memory_kib("VmHWM");
    let cpu_before = server.cpu_time();
    let took = deflate::bombard(&server, 200);
    let grew = server.memory_kib("VmHWM").saturating_sub(before);
    let cpu = server.cpu_time() - cpu_before;
    println!("200 bombs: {took:.2?} wall, {cpu:.2?} server CPU, peak RSS grew {grew} KiB");
    assert!(grew < 16 * 1024, "peak RSS grew {grew} KiB");
    assert!(cpu < Duration::from_secs(2), "server CPU {cpu:?}");
}
