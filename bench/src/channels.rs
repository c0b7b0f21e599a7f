//! `wsload channels`: N clients each join J of C channels; then messages
//! go to random channels, as chat from a random member of the channel
//! (`{"type":"chat","channel":..,"message":..}`) or as `POST /broadcast`
//! with `"channel"`, and every delivery to every member is checked and
//! timed. The server's memory per connection is read
//! once everyone has joined, before anything is published.

use std::time::{Duration, Instant};

use mio::event::Event;
use mio::Token;

use crate::args::Publish;
use crate::channel_plan::{channel_name, Ledger, Plan, Receipt};
use crate::fanout::{find_seq, message_text};
use crate::frame::Rng;
use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::publish_http::{self, HttpPublisher};
use crate::report::{latency, opt_round, rate_value, Line};
use crate::stats::Histogram;
use crate::sys::{self, CpuSample};
use crate::{Outcome, Run, CLOSE_GRACE, STRAGGLERS};

/// Longest poll wait while publishing; events wake the loop sooner.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Settling time between the last subscription and the memory reading.
pub const SETTLE: Duration = Duration::from_secs(1);

/// `{"type":"subscribe","channel":"bench.<k>"}`.
fn subscribe_payload(out: &mut Vec<u8>, channel: u32) {
    out.extend_from_slice(b"{\"type\":\"subscribe\",\"channel\":\"");
    channel_name(out, channel);
    out.extend_from_slice(b"\"}");
}

/// `{"type":"chat","channel":"bench.<k>","message":"wsl <seq> xxx…"}`.
pub fn chat_payload(out: &mut Vec<u8>, channel: u32, seq: u32, size: usize) {
    channel_message(out, b"{\"type\":\"chat\",", channel, seq, size);
}

/// `{"channel":"bench.<k>","message":"wsl <seq> xxx…"}`, the body of
/// `POST /broadcast`.
pub fn http_body(out: &mut Vec<u8>, channel: u32, seq: u32, size: usize) {
    channel_message(out, b"{", channel, seq, size);
}

/// `opening` then `"channel":"bench.<k>","message":"wsl <seq> xxx…"}`.
fn channel_message(out: &mut Vec<u8>, opening: &[u8], channel: u32, seq: u32, size: usize) {
    out.extend_from_slice(opening);
    out.extend_from_slice(b"\"channel\":\"");
    channel_name(out, channel);
    out.extend_from_slice(b"\",\"message\":\"");
    message_text(out, seq, None, size);
    out.extend_from_slice(b"\"}");
}

fn contains(text: &[u8], needle: &[u8]) -> bool {
    text.windows(needle.len()).any(|w| w == needle)
}

struct Channels<'p> {
    plan: &'p Plan,
    per_conn: u8,
    ledger: Ledger,
    /// Per connection: `subscribed` answers received.
    subscribed: Vec<u8>,
    /// Connections with every answer in.
    all_subscribed: usize,
    last_subscribed_us: u64,
    deliveries: u64,
    duplicates: u64,
    hist: Histogram,
    last_delivery_us: u64,
    scratch: Vec<u8>,
    http: Option<HttpPublisher>,
    /// The HTTP publisher's errors.
    errors: u64,
}

impl Channels<'_> {
    fn error(&mut self, msg: &str) {
        count_error(&mut self.errors, msg);
    }
}

fn count_error(errors: &mut u64, msg: &str) {
    *errors += 1;
    if *errors <= 20 {
        eprintln!("wsload: http publisher: {msg}");
    }
}

impl Handler for Channels<'_> {
    fn on_ready(&mut self, id: usize, tx: &mut Tx, _now_us: u64) {
        for ch in self.plan.joined(id) {
            self.scratch.clear();
            subscribe_payload(&mut self.scratch, ch);
            tx.text(&self.scratch);
        }
    }

    fn on_text(&mut self, id: usize, text: &[u8], _: &mut Tx, now_us: u64) -> Result<(), String> {
        let show = || String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
        if let Some(seq) = find_seq(text) {
            let seq =
                seq.ok_or_else(|| format!("marker without a sequence number in {}", show()))?;
            match self.ledger.receive(self.plan, id, seq)? {
                Receipt::Duplicate => self.duplicates += 1,
                Receipt::New { sent_at_us, .. } => {
                    self.deliveries += 1;
                    self.hist.record(now_us.saturating_sub(sent_at_us));
                    self.last_delivery_us = now_us;
                }
            }
        } else if contains(text, b"\"type\":\"subscribed\"") {
            let n = &mut self.subscribed[id];
            *n += 1;
            if *n > self.per_conn {
                return Err(format!(
                    "more `subscribed` answers than subscriptions: {}",
                    show()
                ));
            }
            if *n == self.per_conn {
                self.all_subscribed += 1;
                self.last_subscribed_us = now_us;
            }
        } else if contains(text, b"\"type\":\"error\"") {
            return Err(format!("the server answered an error: {}", show()));
        }
        Ok(())
    }

    fn on_foreign(&mut self, token: Token, event: &Event, _now_us: u64) {
        if token != publish_http::TOKEN {
            return;
        }
        if let Some(Err(e)) = self.http.as_mut().map(|p| p.on_event(event)) {
            self.error(&e);
        }
    }
}

/// Connects the HTTP publisher and waits until it is connected (false:
/// it failed or the deadline passed).
fn connect_http(net: &mut Net, h: &mut Channels, n: usize, deadline: Instant) -> bool {
    let (fewest, most) = h.plan.member_range();
    let mut http = HttpPublisher::new(
        net.target(),
        net.source_for(n),
        net.host_header(),
        (fewest == most).then_some(most as u64),
    );
    if let Err(e) = http.ensure_connected(net.registry()) {
        h.error(&e);
    }
    h.http = Some(http);
    while h.errors == 0 && !h.http.as_ref().is_some_and(|p| p.connected()) {
        let now = Instant::now();
        if now >= deadline {
            h.error("connect timed out");
            break;
        }
        net.poll_once(Some((deadline - now).min(MAX_WAIT)), h);
    }
    h.errors == 0
}

/// HTTP: sends again what the server dropped unprocessed (newly timed),
/// then tells whether a new request may go out.
fn http_ready(net: &mut Net, h: &mut Channels, payload: &mut Vec<u8>, size: usize) -> bool {
    let Channels {
        http,
        ledger,
        errors,
        ..
    } = h;
    let Some(http) = http.as_mut() else {
        return true;
    };
    let result = http.ensure_connected(net.registry()).and_then(|()| {
        let mut resent = Vec::new();
        let sent = http.send_again(
            payload,
            |buf, seq| http_body(buf, ledger.channel_of(seq), seq, size),
            |seq| resent.push(seq),
        );
        let now_us = net.now_us();
        for seq in resent {
            ledger.restamp(seq, now_us);
        }
        sent
    });
    if let Err(e) = result {
        count_error(errors, &e);
    }
    http.resend.is_empty() && http.can_send()
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let n = a.conns;
    let plan = Plan::new(n, a.channels, a.per_conn).map_err(std::io::Error::other)?;
    let mut net = Net::for_run(run, ReadyOn::FirstText)?;
    let mut h = Channels {
        plan: &plan,
        per_conn: a.per_conn as u8,
        ledger: Ledger::new(&plan),
        subscribed: vec![0; n],
        all_subscribed: 0,
        last_subscribed_us: 0,
        deliveries: 0,
        duplicates: 0,
        hist: Histogram::default(),
        last_delivery_us: 0,
        scratch: Vec::with_capacity(64),
        http: None,
        errors: 0,
    };
    let pid = a.server_pid;
    let rss_before = pid.and_then(sys::rss_kib);
    let anon_before = pid.and_then(sys::anon_kib);

    let start_us = net.now_us();
    let (_, mut ok) = net.connect_many(n, a.concurrency, run.setup_deadline, &mut h);
    while ok && h.all_subscribed < n && net.errors == 0 {
        let now = Instant::now();
        if now >= run.setup_deadline {
            eprintln!(
                "wsload: setup timed out with {} of {n} clients subscribed",
                h.all_subscribed
            );
            ok = false;
            break;
        }
        net.poll_once(Some((run.setup_deadline - now).min(MAX_WAIT)), &mut h);
    }
    ok = ok && net.errors == 0 && h.all_subscribed == n;
    let mut timed_out = false;
    let mut subscribe_secs = None;
    let (mut rss_after, mut anon_after) = (None, None);
    let mut secs = None;
    let mut server_cpu = None;
    let mut server_cpu_secs = None;
    let mut gen_cpu = None;
    if ok {
        subscribe_secs = Some(h.last_subscribed_us.saturating_sub(start_us) as f64 / 1e6);
        eprintln!(
            "wsload: {n} clients joined {} channels each; settling {SETTLE:?}",
            a.per_conn
        );
        if net.run_until(Instant::now() + SETTLE, run.safety, &mut h) {
            rss_after = pid.and_then(sys::rss_kib);
            anon_after = pid.and_then(sys::anon_kib);
        } else {
            timed_out = true;
        }
        if a.publish == Publish::Http {
            let deadline = run.setup_deadline.max(Instant::now() + SETTLE);
            ok = connect_http(&mut net, &mut h, n, deadline);
        }
    }
    if ok && !timed_out {
        let limit = a.messages.unwrap_or(u32::MAX - 1);
        let mut rng = Rng::from_entropy();
        let mut payload = Vec::with_capacity(a.size + 64);
        let server_sample = pid.map(|p| CpuSample::take(Some(p)));
        let gen_sample = CpuSample::take(None);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(a.duration);
        let mut stopped_at: Option<Instant> = None;
        let mut first_sent_us = None;
        eprintln!(
            "wsload: publishing to random channels ({}, {})",
            if a.publish == Publish::Ws {
                "chat from a member"
            } else {
                "POST /broadcast"
            },
            if a.rate > 0.0 {
                format!("{} msgs/s", a.rate)
            } else {
                format!("closed loop, {} messages in flight", a.in_flight)
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
            let sent = h.ledger.published();
            if stopped_at.is_none() && (sent >= limit || now >= end) {
                stopped_at = Some(now);
            }
            let mut blocked = !http_ready(&mut net, &mut h, &mut payload, a.size);
            let mut wait = MAX_WAIT;
            if let Some(stop) = stopped_at {
                if h.ledger.open == 0 {
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
                } else {
                    let room = a.in_flight.saturating_sub(h.ledger.open) as u32;
                    sent.saturating_add(room).min(limit)
                };
                while h.ledger.published() < due && !blocked {
                    let ch = (rng.next_u64() % u64::from(plan.channels())) as u32;
                    let members = plan.members(ch);
                    let sender = members[(rng.next_u64() % members.len() as u64) as usize] as usize;
                    let now_us = net.now_us();
                    first_sent_us.get_or_insert(now_us);
                    let seq = h.ledger.publish(ch, members.len(), now_us);
                    payload.clear();
                    if let Some(http) = h.http.as_mut() {
                        http_body(&mut payload, ch, seq, a.size);
                        if let Err(e) = http.send(seq, &payload) {
                            count_error(&mut h.errors, &e);
                        }
                        blocked = !http.can_send();
                    } else {
                        chat_payload(&mut payload, ch, seq, a.size);
                        if !net.send_text(sender, &payload, &mut h) {
                            net.error("publisher", &format!("client {sender} is gone"));
                            break;
                        }
                    }
                }
                if a.rate > 0.0 && !blocked && h.ledger.published() < limit {
                    let next =
                        start + Duration::from_secs_f64(f64::from(h.ledger.published()) / a.rate);
                    wait = wait.min(next.saturating_duration_since(now));
                }
                wait = wait.min(end.saturating_duration_since(now));
            }
            net.poll_once(Some(wait), &mut h);
        }
        server_cpu = server_sample.as_ref().and_then(|s| s.percent_since());
        server_cpu_secs = server_sample.and_then(|s| s.secs_since());
        gen_cpu = gen_sample.percent_since();
        if let Some(first) = first_sent_us {
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

    let messages = h.ledger.published();
    let expected = h.ledger.expected(&plan);
    let missing = expected.saturating_sub(h.deliveries);
    let errors = net.errors + h.errors;
    let valid =
        ok && !timed_out && messages > 0 && errors == 0 && missing == 0 && h.duplicates == 0;
    let per_conn_bytes = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(af)) => Some((af as f64 - b as f64) * 1024.0 / n as f64),
        _ => None,
    };
    let per_sec = |count: f64| secs.filter(|s| *s > 0.0).map(|s| count / s);
    let (fewest, most) = plan.member_range();
    let mut line = Line::new("channels", a.label.as_deref());
    line.field("conns", n)
        .field("channels", a.channels)
        .field("per_conn", a.per_conn)
        .field("members_min", fewest)
        .field("members_max", most)
        .field("subscribe_secs", opt_round(subscribe_secs, 4))
        .field("rss_before_kib", rss_before)
        .field("rss_after_kib", rss_after)
        .field(
            "rss_per_conn_bytes",
            opt_round(per_conn_bytes(rss_before, rss_after), 1),
        )
        .field(
            "anon_per_conn_bytes",
            opt_round(per_conn_bytes(anon_before, anon_after), 1),
        )
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
        .field("in_flight", a.in_flight)
        .field("messages", messages)
        .field("deliveries", h.deliveries)
        .field("expected", expected)
        .field("missing", missing)
        .field("duplicates", h.duplicates)
        .field("msgs_per_sec", opt_round(per_sec(f64::from(messages)), 1))
        .field(
            "deliveries_per_sec",
            opt_round(per_sec(h.deliveries as f64), 1),
        )
        .raw("lat_us", &latency(&h.hist))
        .field("secs", opt_round(secs, 4))
        .field("server_cpu_percent", opt_round(server_cpu, 1))
        .field(
            "deliveries_per_server_cpu_sec",
            opt_round(
                server_cpu_secs
                    .filter(|s| *s > 0.0)
                    .map(|s| h.deliveries as f64 / s),
                1,
            ),
        )
        .field("gen_cpu_percent", opt_round(gen_cpu, 1));
    Ok(Outcome::new(line, errors, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_the_chat_and_subscribe_messages() {
        let mut out = Vec::new();
        subscribe_payload(&mut out, 7);
        assert_eq!(out, br#"{"type":"subscribe","channel":"bench.7"}"#);
        out.clear();
        chat_payload(&mut out, 12, 3, 15);
        assert_eq!(
            out,
            br#"{"type":"chat","channel":"bench.12","message":"wsl 3 xxxxxxxxx"}"#
        );
        assert_eq!(find_seq(&out), Some(Some(3)));
        out.clear();
        http_body(&mut out, 4, 9, 15);
        assert_eq!(out, br#"{"channel":"bench.4","message":"wsl 9 xxxxxxxxx"}"#);
    }

    #[test]
    fn counts_subscribed_answers_and_deliveries() {
        let plan = Plan::new(4, 2, 1).unwrap();
        let mut h = Channels {
            plan: &plan,
            per_conn: 1,
            ledger: Ledger::new(&plan),
            subscribed: vec![0; 4],
            all_subscribed: 0,
            last_subscribed_us: 0,
            deliveries: 0,
            duplicates: 0,
            hist: Histogram::default(),
            last_delivery_us: 0,
            scratch: Vec::new(),
            http: None,
            errors: 0,
        };
        let mut out = Vec::new();
        let mut rng = Rng::new(1);
        let mut tx = Tx::for_test(&mut out, &mut rng);
        let ok = br#"{"channel":"bench.1","epoch":"e","offset":0,"type":"subscribed"}"#;
        h.on_text(1, ok, &mut tx, 5).unwrap();
        assert_eq!((h.all_subscribed, h.last_subscribed_us), (1, 5));
        assert!(
            h.on_text(1, ok, &mut tx, 6).is_err(),
            "one subscription only"
        );
        let err = br#"{"type":"error","error":"bad channel name","channel":"x"}"#;
        assert!(h.on_text(0, err, &mut tx, 7).is_err());
        h.ledger.publish(1, 2, 10);
        let chat = br#"{"type":"chat","from":"3","message":"wsl 1 xxxxxxxxx","channel":"bench.1"}"#;
        h.on_text(3, chat, &mut tx, 40).unwrap();
        h.on_text(3, chat, &mut tx, 41).unwrap();
        assert_eq!((h.deliveries, h.duplicates), (1, 1));
        assert!(
            h.on_text(0, chat, &mut tx, 42).is_err(),
            "conn 0 is in channel 0"
        );
    }
}
