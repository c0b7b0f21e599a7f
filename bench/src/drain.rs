//! `wsload drain`: N clients that never leave, a publisher broadcasting
//! chat at `--rate`, then SIGTERM to `--server-pid`. Measures when each
//! client gets its `shutdown_notice`, whether any broadcast the server took
//! missed a client before its Close, and how long the process takes to
//! exit after the last client's connection is closed.
//!
//! Run the server with a short `--drain-timeout` (5s): the clients wait for
//! the server's Close 1001 at the deadline.

use std::time::{Duration, Instant};

use crate::fanout::{find_seq, ws_payload};
use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::report::{latency, opt_round, Line};
use crate::stats::Histogram;
use crate::sys;
use crate::{Outcome, Run, CLOSE_GRACE};

/// Broadcasts flow this long before the signal.
const LEAD: Duration = Duration::from_secs(1);
/// How often the server's exit is looked for.
const EXIT_POLL: Duration = Duration::from_micros(200);
/// How long the server may take to exit after the last client is gone.
const EXIT_WAIT: Duration = Duration::from_secs(10);
const MAX_WAIT: Duration = Duration::from_millis(20);

struct Drain {
    /// Subscribers are connections 0..n; the publisher is n.
    n: usize,
    signal_us: Option<u64>,
    notice: Histogram,
    notices: u64,
    /// The smallest and largest `drain_timeout_s` announced.
    announced: Option<(u64, u64)>,
    last: Vec<u32>,
    /// Per sequence number (from 1): subscribers that have not received it.
    remaining: Vec<u32>,
    /// Per sequence number (from 1): when it was published, and when the
    /// last subscriber got it (the broadcast's fanout time, the yardstick
    /// for the notices in the same run).
    published_us: Vec<u64>,
    last_arrival_us: Vec<u64>,
    /// The highest sequence number any subscriber received.
    highest: u32,
    gaps: u64,
    closes_1001: u64,
    other_closes: u64,
    finished: usize,
    last_fin_us: u64,
    errors: u64,
}

impl Drain {
    fn on_notice(&mut self, text: &[u8], now_us: u64) -> Result<(), String> {
        let v: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| format!("shutdown_notice is not JSON: {e}"))?;
        let timeout = v["drain_timeout_s"]
            .as_u64()
            .ok_or("shutdown_notice without drain_timeout_s")?;
        self.announced = Some(match self.announced {
            None => (timeout, timeout),
            Some((lo, hi)) => (lo.min(timeout), hi.max(timeout)),
        });
        self.notices += 1;
        let since = self
            .signal_us
            .ok_or("a shutdown_notice before the signal")?;
        self.notice.record(now_us.saturating_sub(since));
        Ok(())
    }
}

impl Handler for Drain {
    fn on_text(&mut self, id: usize, text: &[u8], _: &mut Tx, now_us: u64) -> Result<(), String> {
        if id >= self.n {
            return Ok(());
        }
        if text.windows(17).any(|w| w == b"\"shutdown_notice\"") {
            return self.on_notice(text, now_us);
        }
        let Some(Some(seq)) = find_seq(text) else {
            return Ok(());
        };
        let i = seq as usize;
        if seq == 0 || i >= self.remaining.len() {
            return Err(format!("sequence number {seq} was never published"));
        }
        let last = &mut self.last[id];
        if seq <= *last {
            return Err(format!("sequence number {seq} again or out of order"));
        }
        if seq > *last + 1 {
            self.gaps += 1;
        }
        *last = seq;
        self.remaining[i] -= 1;
        if self.remaining[i] == 0 {
            self.last_arrival_us[i] = now_us;
        }
        self.highest = self.highest.max(seq);
        Ok(())
    }

    fn on_server_close(&mut self, _: usize, code: Option<u16>, _: u64) -> bool {
        if code == Some(1001) {
            self.closes_1001 += 1;
        } else {
            self.other_closes += 1;
        }
        true
    }

    fn on_finished(&mut self, _: usize, now_us: u64) {
        self.finished += 1;
        self.last_fin_us = self.last_fin_us.max(now_us);
    }
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let n = a.conns;
    let pid = a.server_pid.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "drain needs --server-pid")
    })?;
    let mut net = Net::for_run(run, ReadyOn::FirstText)?;
    let mut h = Drain {
        n,
        signal_us: None,
        notice: Histogram::default(),
        notices: 0,
        announced: None,
        last: vec![0; n],
        remaining: vec![0],
        published_us: vec![0],
        last_arrival_us: vec![0],
        highest: 0,
        gaps: 0,
        closes_1001: 0,
        other_closes: 0,
        finished: 0,
        last_fin_us: 0,
        errors: 0,
    };
    let (_, mut ok) = net.connect_many(n + 1, a.concurrency, run.setup_deadline, &mut h);
    let publisher = n;
    let mut exit_after_fin = None;
    let mut timed_out = false;
    if ok {
        eprintln!("wsload: {n} clients ready; publishing, SIGTERM in {LEAD:?}");
        let start = Instant::now();
        let mut sent: u32 = 0;
        let mut payload = Vec::with_capacity(a.size + 64);
        let mut publishing = a.rate > 0.0;
        loop {
            let now = Instant::now();
            if now >= run.safety {
                timed_out = true;
                break;
            }
            if h.signal_us.is_none() && now >= start + LEAD {
                h.signal_us = Some(net.now_us());
                if let Err(e) = sys::terminate(pid) {
                    net.error("signal", &e.to_string());
                    break;
                }
            }
            if h.finished == n + 1 || (h.signal_us.is_some() && net.ready + net.closing == 0) {
                break;
            }
            let mut wait = MAX_WAIT;
            if publishing {
                let due = ((now - start).as_secs_f64() * a.rate).floor() as u32 + 1;
                while sent < due {
                    let seq = sent + 1;
                    payload.clear();
                    ws_payload(&mut payload, seq, a.size);
                    h.remaining.push(n as u32);
                    h.published_us.push(net.now_us());
                    h.last_arrival_us.push(0);
                    sent = seq;
                    if !net.send_text(publisher, &payload, &mut h) {
                        // Closed by the server at the deadline: what it
                        // did not take is not a loss.
                        publishing = false;
                        break;
                    }
                }
                let next = start + Duration::from_secs_f64(f64::from(sent) / a.rate);
                wait = wait.min(next.saturating_duration_since(now));
            }
            net.poll_once(Some(wait), &mut h);
        }
        if !timed_out && h.finished == n + 1 {
            let fin = h.last_fin_us;
            let give_up = Instant::now() + EXIT_WAIT;
            while !sys::has_exited(pid) && Instant::now() < give_up {
                std::thread::sleep(EXIT_POLL);
            }
            if sys::has_exited(pid) {
                exit_after_fin = Some(net.now_us().saturating_sub(fin) as f64 / 1000.0);
            } else {
                eprintln!("wsload: the server had not exited {EXIT_WAIT:?} after the last close");
            }
        }
        ok = exit_after_fin.is_some();
    }
    net.close_all(CLOSE_GRACE, &mut h);
    if timed_out {
        eprintln!("wsload: safety timeout reached");
    }

    // A broadcast any subscriber got was taken by the server: every
    // subscriber should have it before its Close.
    let taken = h.highest as usize;
    let lost: u64 = h.remaining[1..=taken].iter().map(|&r| u64::from(r)).sum();
    let errors = net.errors + h.errors;
    let valid = ok
        && !timed_out
        && errors == 0
        && h.notices == n as u64
        && h.closes_1001 == n as u64 + 1
        && lost == 0;
    let first_notice = h.notice.percentile(0.0).map(|us| us as f64 / 1000.0);
    let fanout = broadcast_fanout_ms(&h);
    let last_notice = h.notice.percentile(100.0).map(|us| us as f64 / 1000.0);
    let ratio = match (last_notice, fanout) {
        (Some(last), Some(f)) if f > 0.0 => Some(last / f),
        _ => None,
    };
    let mut line = Line::new("drain", a.label.as_deref());
    line.field("conns", n)
        .field("notices", h.notices)
        .raw("notice_latency_us", &latency(&h.notice))
        .field("first_notice_ms", opt_round(first_notice, 2))
        .field("broadcast_fanout_ms", opt_round(fanout, 2))
        .field("last_notice_per_fanout", opt_round(ratio, 2))
        .field("announced_drain_timeout_s_min", h.announced.map(|x| x.0))
        .field("announced_drain_timeout_s_max", h.announced.map(|x| x.1))
        .field("broadcasts_taken", taken as u64)
        .field("lost", lost)
        .field("gaps", h.gaps)
        .field("closes_1001", h.closes_1001)
        .field("other_closes", h.other_closes)
        .field("exit_after_last_fin_ms", opt_round(exit_after_fin, 2));
    Ok(Outcome::new(line, errors, valid))
}

/// The median time from publishing a broadcast to its last subscriber,
/// over the broadcasts published before the signal that every subscriber
/// got: how long one pass over every client takes in this run, to compare
/// the notices with.
fn broadcast_fanout_ms(h: &Drain) -> Option<f64> {
    let signal = h.signal_us?;
    let mut times: Vec<u64> = (1..h.published_us.len())
        .filter(|&i| h.published_us[i] < signal && h.remaining[i] == 0)
        .map(|i| h.last_arrival_us[i].saturating_sub(h.published_us[i]))
        .collect();
    times.sort_unstable();
    times.get(times.len() / 2).map(|&us| us as f64 / 1000.0)
}
