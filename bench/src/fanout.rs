//! `wsload fanout`: N subscribers, one publisher (a WebSocket client
//! sending chat, or HTTP `POST /broadcast`), every delivery checked and
//! timed.

use std::io::Write as _;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::Token;

use crate::args::{Publish, Text};
use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::publish_http::{self, HttpPublisher};
use crate::report::{latency, opt_round, rate_value, Line};
use crate::stats::Histogram;
use crate::sys::CpuSample;
use crate::{wire, Outcome, Run, CLOSE_GRACE, STRAGGLERS};

const MARKER: &[u8] = b"wsl ";
/// Longest poll wait while publishing; events wake the loop sooner.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// Finds the marker in a server text frame: None without a marker,
/// Some(None) for a marker not followed by `<digits> `.
pub fn find_seq(text: &[u8]) -> Option<Option<u32>> {
    find_marker(text).map(|m| m.map(|(seq, _)| seq))
}

/// The marker's sequence number and the text after `wsl <seq> `: None
/// without a marker, Some(None) for a marker not followed by `<digits> `.
pub fn find_marker(text: &[u8]) -> Option<Option<(u32, &[u8])>> {
    let pos = text.windows(MARKER.len()).position(|w| w == MARKER)?;
    let rest = &text[pos + MARKER.len()..];
    Some(leading_number(rest, 10).and_then(|(v, after)| Some((u32::try_from(v).ok()?, after))))
}

/// `<digits> ` at the start of `text` (at most `max_digits` digits): the
/// number and what follows the space.
pub fn leading_number(text: &[u8], max_digits: usize) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > max_digits || text.get(digits) != Some(&b' ') {
        return None;
    }
    let v = text[..digits]
        .iter()
        .fold(0u64, |v, &b| v * 10 + u64::from(b - b'0'));
    Some((v, &text[digits + 1..]))
}

/// The message text: `wsl <seq> `, then `<stamp> ` if given (the publish
/// time for `wsload subscribe`), padded with `x` to `size` bytes.
pub fn message_text(out: &mut Vec<u8>, seq: u32, stamp: Option<u64>, size: usize) {
    let start = out.len();
    let _ = write!(out, "wsl {seq} ");
    if let Some(stamp) = stamp {
        let _ = write!(out, "{stamp} ");
    }
    debug_assert!(out.len() - start <= size);
    out.resize(start + size, b'x');
}

/// Field names and values of a typical notification: what `--text words`
/// draws from, so a message compresses as such JSON does, not as padding.
const WORDS: &[&str] = &[
    "order",
    "status",
    "shipped",
    "delivered",
    "pending",
    "user",
    "account",
    "amount",
    "currency",
    "EUR",
    "USD",
    "items",
    "sku",
    "qty",
    "price",
    "name",
    "email",
    "city",
    "Berlin",
    "Lisbon",
    "Osaka",
    "Toronto",
    "created_at",
    "updated_at",
    "priority",
    "high",
    "low",
    "channel",
    "mobile",
    "web",
    "title",
    "body",
    "your",
    "package",
    "is",
    "on",
    "its",
    "way",
    "invoice",
    "paid",
    "refund",
    "requested",
    "comment",
    "reply",
    "mention",
    "team",
];

/// Like `message_text`, but filled with words and numbers (`key=value`
/// pairs drawn from `WORDS`, seeded by `seq`) instead of `x`.
pub fn message_words(out: &mut Vec<u8>, seq: u32, size: usize) {
    let start = out.len();
    let _ = write!(out, "wsl {seq} ");
    let mut state = u64::from(seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while out.len() - start < size {
        let r = next();
        let key = WORDS[(r % WORDS.len() as u64) as usize];
        let value = WORDS[((r >> 16) % WORDS.len() as u64) as usize];
        let _ = match (r >> 32) % 3 {
            0 => write!(out, "{key}={value}, "),
            1 => write!(out, "{key}={}, ", (r >> 40) % 100_000),
            _ => write!(out, "{key}={}.{:02}, ", (r >> 40) % 1000, (r >> 50) % 100),
        };
    }
    out.truncate(start + size);
}

/// `{"message":"<text>"}` with `--text`'s filling: the body of `POST
/// /broadcast`, or with `ws`, the WebSocket publisher's chat.
fn body(out: &mut Vec<u8>, seq: u32, size: usize, text: Text, ws: bool) {
    match (text, ws) {
        (Text::Padding, true) => ws_payload(out, seq, size),
        (Text::Padding, false) => http_body(out, seq, None, size),
        (Text::Words, ws) => {
            let open: &[u8] = if ws {
                b"{\"type\":\"chat\",\"message\":\""
            } else {
                b"{\"message\":\""
            };
            out.extend_from_slice(open);
            message_words(out, seq, size);
            out.extend_from_slice(b"\"}");
        }
    }
}

/// `{"type":"chat","message":"<text>"}`, the WebSocket publisher's frame.
pub fn ws_payload(out: &mut Vec<u8>, seq: u32, size: usize) {
    out.extend_from_slice(b"{\"type\":\"chat\",\"message\":\"");
    message_text(out, seq, None, size);
    out.extend_from_slice(b"\"}");
}

/// `{"message":"<text>"}`, the body of `POST /broadcast`.
pub fn http_body(out: &mut Vec<u8>, seq: u32, stamp: Option<u64>, size: usize) {
    out.extend_from_slice(b"{\"message\":\"");
    message_text(out, seq, stamp, size);
    out.extend_from_slice(b"\"}");
}

struct Fanout {
    /// Subscribers are connections 0..n; anything else is ignored.
    n: usize,
    /// Per subscriber: the last sequence number received.
    last: Vec<u32>,
    /// Per sequence number (from 1): when it was published, µs.
    sent_at: Vec<u64>,
    /// Per sequence number: subscribers that have not received it yet.
    remaining: Vec<u32>,
    deliveries: u64,
    duplicates: u64,
    hist: Histogram,
    last_delivery_us: u64,
    http: Option<HttpPublisher>,
    errors: u64,
}

impl Fanout {
    fn error(&mut self, what: &str, msg: &str) {
        count_error(&mut self.errors, what, msg);
    }
}

/// Counts an error of the publisher and prints the first few.
fn count_error(errors: &mut u64, what: &str, msg: &str) {
    *errors += 1;
    if *errors <= 20 {
        eprintln!("wsload: {what}: {msg}");
    }
}

impl Handler for Fanout {
    fn on_text(&mut self, id: usize, text: &[u8], _: &mut Tx, now_us: u64) -> Result<(), String> {
        if id >= self.n {
            return Ok(());
        }
        let Some(seq) = find_seq(text) else {
            return Ok(());
        };
        let seq = seq.ok_or_else(|| {
            format!(
                "marker without a sequence number in {:?}",
                String::from_utf8_lossy(text)
            )
        })?;
        let i = seq as usize;
        if seq == 0 || i >= self.sent_at.len() {
            return Err(format!("sequence number {seq} was never published"));
        }
        let last = &mut self.last[id];
        if seq <= *last {
            self.duplicates += 1;
            return Ok(());
        }
        *last = seq;
        self.deliveries += 1;
        self.remaining[i] -= 1;
        self.hist.record(now_us.saturating_sub(self.sent_at[i]));
        self.last_delivery_us = now_us;
        Ok(())
    }

    fn on_foreign(&mut self, token: Token, event: &Event, _now_us: u64) {
        if token != publish_http::TOKEN {
            return;
        }
        if let Some(http) = self.http.as_mut() {
            if let Err(e) = http.on_event(event) {
                self.error("http publisher", &e);
            }
        }
    }
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let n = a.conns;
    let mut net = Net::for_run(run, ReadyOn::FirstText)?;
    let mut h = Fanout {
        n,
        last: vec![0; n],
        sent_at: vec![0],
        remaining: vec![0],
        deliveries: 0,
        duplicates: 0,
        hist: Histogram::default(),
        last_delivery_us: 0,
        http: None,
        errors: 0,
    };
    let mut timed_out = false;
    let (_, mut ok) = net.connect_many(n, a.concurrency, run.setup_deadline, &mut h);
    let mut publisher = usize::MAX;
    if ok {
        eprintln!("wsload: {n} subscribers ready; connecting the publisher");
        match a.publish {
            Publish::Ws => {
                let (ids, pub_ok) = net.connect_many(1, 1, run.setup_deadline, &mut h);
                publisher = ids.start;
                ok = pub_ok;
            }
            Publish::Http => {
                let mut http = HttpPublisher::new(
                    net.target(),
                    net.source_for(n),
                    net.host_header(),
                    Some(n as u64),
                );
                if let Err(e) = http.ensure_connected(net.registry()) {
                    h.error("http publisher", &e);
                }
                h.http = Some(http);
                while h.errors == 0 && !h.http.as_ref().is_some_and(|p| p.connected()) {
                    let now = Instant::now();
                    if now >= run.setup_deadline {
                        h.error("http publisher", "connect timed out");
                        break;
                    }
                    net.poll_once(Some((run.setup_deadline - now).min(MAX_WAIT)), &mut h);
                }
                ok = h.errors == 0;
            }
        }
    }

    let mut sent: u32 = 0;
    let mut read_during = 0;
    let mut secs = None;
    let mut server_cpu = None;
    let mut gen_cpu = None;
    if ok {
        let limit = a.messages.unwrap_or(u32::MAX - 1);
        let expected_per_msg = n as u32;
        let mut payload = Vec::with_capacity(a.size + 64);
        let server_sample = a.server_pid.map(|p| CpuSample::take(Some(p)));
        let read_before = wire::bytes_read();
        let gen_sample = CpuSample::take(None);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(a.duration);
        let mut stopped_at: Option<Instant> = None;
        eprintln!(
            "wsload: publishing ({}, {})",
            if a.publish == Publish::Ws {
                "ws"
            } else {
                "http"
            },
            if a.rate > 0.0 {
                format!("{} msgs/s", a.rate)
            } else {
                "closed loop".to_string()
            }
        );
        loop {
            let now = Instant::now();
            if now >= run.safety {
                timed_out = true;
                break;
            }
            if net.errors + h.errors > 0 {
                eprintln!("wsload: stopping early after an error");
                break;
            }
            if stopped_at.is_none() && (sent >= limit || now >= end) {
                stopped_at = Some(now);
            }
            // HTTP requests the server dropped unprocessed go out again
            // first, newly timed; new messages wait behind them.
            let mut blocked = false;
            if let Some(http) = h.http.as_mut() {
                if let Err(e) = http.ensure_connected(net.registry()) {
                    h.error("http publisher", &e);
                    continue;
                }
                let now_us = net.now_us();
                let sent_at = &mut h.sent_at;
                if let Err(e) = http.send_again(
                    &mut payload,
                    |buf, seq| body(buf, seq, a.size, a.text, false),
                    |seq| sent_at[seq as usize] = now_us,
                ) {
                    count_error(&mut h.errors, "http publisher", &e);
                }
                blocked = !http.resend.is_empty() || !http.can_send();
            }
            let mut wait = MAX_WAIT;
            if let Some(stop) = stopped_at {
                if h.deliveries == u64::from(sent) * n as u64 {
                    break;
                }
                let give_up = stop + STRAGGLERS;
                if now >= give_up {
                    break;
                }
                wait = wait.min(give_up - now);
            } else {
                let due: u32 = if a.rate > 0.0 {
                    let by_time = (now - start).as_secs_f64() * a.rate;
                    (by_time.floor() as u64 + 1).min(u64::from(limit)) as u32
                } else if sent == 0 || h.remaining[sent as usize] == 0 {
                    sent + 1
                } else {
                    sent
                };
                while sent < due && !blocked {
                    let seq = sent + 1;
                    payload.clear();
                    match a.publish {
                        Publish::Ws => {
                            body(&mut payload, seq, a.size, a.text, true);
                            h.sent_at.push(net.now_us());
                            h.remaining.push(expected_per_msg);
                            if !net.send_text(publisher, &payload, &mut h) {
                                net.error("publisher", "the publisher connection is gone");
                            }
                        }
                        Publish::Http => {
                            let http = h.http.as_mut().expect("http publisher");
                            body(&mut payload, seq, a.size, a.text, false);
                            h.sent_at.push(net.now_us());
                            h.remaining.push(expected_per_msg);
                            if let Err(e) = http.send(seq, &payload) {
                                count_error(&mut h.errors, "http publisher", &e);
                            }
                            blocked = !http.can_send();
                        }
                    }
                    sent = seq;
                }
                if a.rate > 0.0 && !blocked && sent < limit {
                    let next = start + Duration::from_secs_f64(f64::from(sent) / a.rate);
                    wait = wait.min(next.saturating_duration_since(now));
                }
                wait = wait.min(end.saturating_duration_since(now));
            }
            net.poll_once(Some(wait), &mut h);
        }
        read_during = wire::bytes_read() - read_before;
        server_cpu = server_sample.and_then(|s| s.percent_since());
        gen_cpu = gen_sample.percent_since();
        if sent > 0 {
            let first = h.sent_at[1];
            let last = if h.deliveries > 0 {
                h.last_delivery_us
            } else {
                net.now_us()
            };
            secs = Some(last.saturating_sub(first) as f64 / 1e6);
        }
        if let Some(http) = &h.http {
            eprintln!(
                "wsload: http publisher: {} answers over {} connections",
                http.responses, http.connections
            );
        }
    }
    net.close_all(CLOSE_GRACE, &mut h);
    if timed_out {
        eprintln!("wsload: safety timeout reached");
    }

    let expected = u64::from(sent) * n as u64;
    let missing = expected.saturating_sub(h.deliveries);
    let errors = net.errors + h.errors;
    let valid = ok && !timed_out && sent > 0 && errors == 0 && missing == 0 && h.duplicates == 0;
    let mut line = Line::new("fanout", a.label.as_deref());
    line.field("subs", n)
        .field("size", a.size)
        .field(
            "publish",
            if a.publish == Publish::Ws {
                "ws"
            } else {
                "http"
            },
        )
        .field("rate", rate_value(a.rate))
        .field("text", if a.text == Text::Words { "words" } else { "x" })
        .field("deflate_offered", a.deflate)
        .field("deflate_negotiated", wire::negotiated_count())
        .field("messages", sent)
        .field("deliveries", h.deliveries)
        .field("expected", expected)
        .field("missing", missing)
        .field("duplicates", h.duplicates)
        .field(
            "deliveries_per_sec",
            opt_round(
                secs.filter(|s| *s > 0.0).map(|s| h.deliveries as f64 / s),
                1,
            ),
        )
        .field(
            "wire_bytes_per_delivery",
            opt_round(
                (h.deliveries > 0).then(|| read_during as f64 / h.deliveries as f64),
                1,
            ),
        )
        .raw("lat_us", &latency(&h.hist))
        .field("secs", opt_round(secs, 4))
        .field("server_cpu_percent", opt_round(server_cpu, 1))
        .field("gen_cpu_percent", opt_round(gen_cpu, 1));
    Ok(Outcome::new(line, errors, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_text_is_exactly_size_bytes() {
        for (seq, size) in [(1, 15), (4_000_000_000, 15), (12, 100), (7, 60 * 1024)] {
            let mut out = Vec::new();
            message_text(&mut out, seq, None, size);
            assert_eq!(out.len(), size);
            assert!(out.starts_with(format!("wsl {seq} ").as_bytes()));
            assert!(out[format!("wsl {seq} ").len()..]
                .iter()
                .all(|&b| b == b'x'));
        }
    }

    #[test]
    fn words_fill_exactly_size_bytes_of_plain_text() {
        for (seq, size) in [(1, 15), (77, 300), (12_345, 3000)] {
            let mut out = Vec::new();
            message_words(&mut out, seq, size);
            assert_eq!(out.len(), size);
            assert_eq!(find_seq(&out), Some(Some(seq)));
            assert!(out
                .iter()
                .all(|b| b.is_ascii() && *b != b'"' && *b != b'\\'));
        }
    }

    #[test]
    fn finds_the_sequence_number_in_an_envelope() {
        let frame = br#"{"type":"chat","time":"2026-01-01T00:00:00.000Z","from":"ab-0-1","message":"wsl 42 xxxx"}"#;
        assert_eq!(find_seq(frame), Some(Some(42)));
        assert_eq!(find_seq(br#"{"type":"welcome","client_id":"x"}"#), None);
        assert_eq!(find_seq(b"wsl x"), Some(None));
        assert_eq!(find_seq(b"wsl 12"), Some(None));
        assert_eq!(find_seq(b"wsl 99999999999 "), Some(None));
        assert_eq!(find_seq(b"wsl 4294967295 "), Some(Some(u32::MAX)));
    }
}
