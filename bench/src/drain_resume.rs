//! `wsload drain-resume`: N clients on server A, a publisher at a fixed
//! rate, SIGTERM to A; every client follows its `shutdown_notice` hint to
//! server B with `since`/`epoch`, and every broadcast must reach every
//! client exactly once, in order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::Token;

use crate::fanout::{find_seq, http_body};
use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::publish_http::{self, HttpPublisher};
use crate::report::{latency, opt_round, rate_value, Line};
use crate::resume_check::{find_offset, parse_frame, Frame, Tracker};
use crate::stats::Histogram;
use crate::{Outcome, Run, CLOSE_GRACE, STRAGGLERS};

/// Longest poll wait; events, publications and moves wake the loop sooner.
const MAX_WAIT: Duration = Duration::from_millis(20);
const NONE: u32 = u32::MAX;

struct Drain {
    tracker: Tracker,
    /// Per connection id: its client, or NONE.
    conn_client: Vec<u32>,
    /// Per connection id: its welcome has arrived.
    conn_welcomed: Vec<bool>,
    /// Per client: its current connection, and whether it has moved to B.
    current: Vec<usize>,
    moved: Vec<bool>,
    noticed: Vec<bool>,
    /// Clients due to move: (when, in µs of the loop's clock; client).
    moves: BinaryHeap<Reverse<(u64, u32)>>,
    published: u32,
    welcomed_a: usize,
    resumed: usize,
    notices: usize,
    notice_hist: Histogram,
    hint_max_ms: u64,
    term_us: Option<u64>,
    last_resume_us: u64,
    /// When the last message arrived (µs).
    last_delivery_us: u64,
    http: Option<HttpPublisher>,
    errors: u64,
}

impl Drain {
    fn error(&mut self, what: &str, msg: &str) {
        self.errors += 1;
        if self.errors <= 20 {
            eprintln!("wsload: {what}: {msg}");
        }
    }

    fn attach(&mut self, id: usize, client: usize) {
        if self.conn_client.len() <= id {
            self.conn_client.resize(id + 1, NONE);
            self.conn_welcomed.resize(id + 1, false);
        }
        self.conn_client[id] = client as u32;
        self.current[client] = id;
    }

    fn text(&mut self, id: usize, c: usize, text: &[u8], now_us: u64) -> Result<(), String> {
        if !self.conn_welcomed[id] {
            let Frame::Welcome(w) = parse_frame(text)? else {
                return Err(format!(
                    "the first frame is not a welcome: {:?}",
                    String::from_utf8_lossy(text)
                ));
            };
            self.conn_welcomed[id] = true;
            if self.moved[c] {
                self.tracker.resume_welcome(&w);
                self.resumed += 1;
                self.last_resume_us = now_us;
            } else {
                self.tracker.first_welcome(c, &w);
                self.welcomed_a += 1;
            }
            return Ok(());
        }
        if let Some(seq) = find_seq(text) {
            let seq = seq.ok_or("a marker without a sequence number")?;
            if seq == 0 || seq > self.published {
                return Err(format!("message {seq} was never published"));
            }
            self.tracker.delivery(c, seq, find_offset(text));
            self.last_delivery_us = now_us;
            return Ok(());
        }
        match parse_frame(text)? {
            Frame::Notice(_) if self.moved[c] => Err("server B sent a shutdown_notice".into()),
            Frame::Notice(ms) if !self.noticed[c] => {
                self.noticed[c] = true;
                self.notices += 1;
                self.hint_max_ms = self.hint_max_ms.max(ms);
                if let Some(term) = self.term_us {
                    self.notice_hist.record(now_us.saturating_sub(term));
                }
                self.moves.push(Reverse((now_us + ms * 1000, c as u32)));
                Ok(())
            }
            Frame::Notice(_) => Err("a second shutdown_notice".into()),
            Frame::Welcome(_) => Err("a second welcome".into()),
            Frame::Other => Ok(()),
        }
    }
}

impl Handler for Drain {
    fn on_text(&mut self, id: usize, text: &[u8], _: &mut Tx, now_us: u64) -> Result<(), String> {
        match self.conn_client.get(id) {
            Some(&c) if c != NONE => self.text(id, c as usize, text, now_us),
            _ => Ok(()),
        }
    }

    fn on_foreign(&mut self, token: Token, event: &Event, _now_us: u64) {
        if token != publish_http::TOKEN {
            return;
        }
        if let Some(Err(e)) = self.http.as_mut().map(|h| h.on_event(event)) {
            self.error("http publisher", &e);
        }
    }
}

/// Sends SIGTERM to server A.
fn terminate(pid: u32) -> Result<(), String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("bad pid {pid}"))?;
    // SAFETY: kill(2) with a plain pid and signal number.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(format!("kill {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let n = a.conns;
    let pid_a = a.server_pid.expect("checked by args");
    let addr_b = SocketAddr::new(IpAddr::V4(a.host), a.port_b);
    let publish_to = SocketAddr::new(IpAddr::V4(a.host), a.publish_port.unwrap_or(a.port_b));
    let mut net = Net::for_run(run, ReadyOn::Open)?;
    let mut h = Drain {
        tracker: Tracker::new(n),
        conn_client: Vec::new(),
        conn_welcomed: Vec::new(),
        current: vec![usize::MAX; n],
        moved: vec![false; n],
        noticed: vec![false; n],
        moves: BinaryHeap::new(),
        published: 0,
        welcomed_a: 0,
        resumed: 0,
        notices: 0,
        notice_hist: Histogram::default(),
        hint_max_ms: 0,
        term_us: None,
        last_resume_us: 0,
        last_delivery_us: 0,
        http: None,
        errors: 0,
    };
    for c in 0..n {
        h.attach(c, c);
    }
    let (_, mut ok) = net.connect_many(n, a.concurrency, run.setup_deadline, &mut h);
    while ok && h.welcomed_a < n && net.errors + h.errors == 0 {
        let now = Instant::now();
        if now >= run.setup_deadline {
            h.error("setup", "not every client got its welcome in time");
            break;
        }
        net.poll_once(Some((run.setup_deadline - now).min(MAX_WAIT)), &mut h);
    }
    ok = ok && h.welcomed_a == n && net.errors + h.errors == 0;
    if ok {
        eprintln!("wsload: {n} clients welcomed on A; connecting the publisher to {publish_to}");
        let mut http = HttpPublisher::new(
            publish_to,
            net.source_for(2 * n),
            &publish_to.to_string(),
            Some(n as u64),
        );
        if let Err(e) = http.ensure_connected(net.registry()) {
            h.error("http publisher", &e);
        }
        h.http = Some(http);
        while h.errors == 0 && !h.http.as_ref().is_some_and(HttpPublisher::connected) {
            let now = Instant::now();
            if now >= run.setup_deadline {
                h.error("http publisher", "connect timed out");
                break;
            }
            net.poll_once(Some((run.setup_deadline - now).min(MAX_WAIT)), &mut h);
        }
        ok = h.errors == 0;
    }

    let mut timed_out = false;
    let mut resume_secs = None;
    if ok {
        let mut payload = Vec::with_capacity(a.size + 64);
        let start = Instant::now();
        let term_at = start + Duration::from_secs_f64(a.before);
        let drain_limit = term_at + Duration::from_secs_f64(a.duration);
        let mut stop_at: Option<Instant> = None;
        eprintln!(
            "wsload: publishing {} msgs/s to {publish_to}; SIGTERM to pid {pid_a} in {:.1} s",
            a.rate, a.before
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
            if h.term_us.is_none() && now >= term_at {
                if let Err(e) = terminate(pid_a) {
                    h.error("SIGTERM", &e);
                    continue;
                }
                h.term_us = Some(net.now_us());
                eprintln!("wsload: SIGTERM sent to pid {pid_a}");
            }
            let now_us = net.now_us();
            while let Some(&Reverse((due, c))) = h.moves.peek() {
                if due > now_us {
                    break;
                }
                h.moves.pop();
                let c = c as usize;
                // A, busy draining, may answer Closes slowly: waiting for
                // them would hold a second descriptor per client.
                let old = h.current[c];
                net.abandon(old, &mut h);
                h.moved[c] = true;
                let path = h.tracker.resume_path(c, &a.path);
                let id = net.open_to(addr_b, net.source_for(c), path);
                h.attach(id, c);
            }
            if let Some(term) = h.term_us {
                if stop_at.is_none() && h.resumed == n {
                    resume_secs = Some(h.last_resume_us.saturating_sub(term) as f64 / 1e6);
                    eprintln!("wsload: all {n} clients resumed on B");
                    stop_at = Some(now + Duration::from_secs_f64(a.after));
                }
                if stop_at.is_none() && now >= drain_limit {
                    eprintln!(
                        "wsload: {} of {n} clients resumed within --duration",
                        h.resumed
                    );
                    timed_out = true;
                    break;
                }
            }
            let mut wait = MAX_WAIT;
            if let Some(&Reverse((due, _))) = h.moves.peek() {
                wait = wait.min(Duration::from_micros(due.saturating_sub(now_us)));
            }
            if h.term_us.is_none() {
                wait = wait.min(term_at.saturating_duration_since(now));
            }
            // Requests the server dropped unprocessed go out again first,
            // also after publishing stopped.
            let http = h.http.as_mut().expect("connected above");
            if let Err(e) = http.ensure_connected(net.registry()) {
                h.error("http publisher", &e);
                continue;
            }
            let mut failed = http
                .send_again(
                    &mut payload,
                    |buf, seq| http_body(buf, seq, None, a.size),
                    |_| {},
                )
                .err();
            match stop_at {
                Some(stop) if now >= stop => {
                    let all = u64::from(h.published) * n as u64;
                    if h.tracker.deliveries >= all {
                        break;
                    }
                    // Replays can leave B behind: wait while messages
                    // keep coming, until STRAGGLERS pass without one.
                    let quiet = Duration::from_micros(now_us.saturating_sub(h.last_delivery_us));
                    if quiet >= STRAGGLERS && now >= stop + STRAGGLERS && http.resend.is_empty() {
                        break;
                    }
                }
                _ => {
                    let due = ((now - start).as_secs_f64() * a.rate).floor() as u64 + 1;
                    while u64::from(h.published) < due
                        && failed.is_none()
                        && http.resend.is_empty()
                        && http.can_send()
                    {
                        let seq = h.published + 1;
                        payload.clear();
                        http_body(&mut payload, seq, None, a.size);
                        failed = http.send(seq, &payload).err();
                        h.published = seq;
                    }
                    let next = start + Duration::from_secs_f64(f64::from(h.published) / a.rate);
                    wait = wait.min(next.saturating_duration_since(now));
                }
            }
            if let Some(e) = failed {
                h.error("http publisher", &e);
            }
            net.poll_once(Some(wait), &mut h);
        }
    }
    net.close_all(CLOSE_GRACE, &mut h);
    if timed_out {
        eprintln!("wsload: time limit reached");
    }

    let t = &h.tracker;
    let expected = u64::from(h.published) * n as u64;
    let errors = net.errors + h.errors;
    let valid = ok
        && !timed_out
        && h.published > 0
        && errors == 0
        && h.resumed == n
        && t.exact(expected)
        && t.not_recovered() == 0;
    let mut line = Line::new("drain-resume", a.label.as_deref());
    line.field("clients", n)
        .field("rate", rate_value(a.rate))
        .field("broadcasts", h.published);
    t.report(&mut line, expected);
    line.field("notices", h.notices)
        .raw("notice_lat_us", &latency(&h.notice_hist))
        .field("hint_max_ms", h.hint_max_ms)
        .field("resumed", h.resumed)
        .field("recovered", t.recovered)
        .field("not_recovered", t.not_recovered())
        .field("too_old", t.too_old)
        .field("unknown_epoch", t.unknown_epoch)
        .field("replayed", t.replayed)
        .field("resume_secs", opt_round(resume_secs, 3));
    Ok(Outcome::new(line, errors, valid))
}
