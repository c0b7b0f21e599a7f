//! `wsload subscribe`: N clients that only listen. Every broadcast that
//! carries the marker `wsl <seq> <publish time> ` (written by `wsload
//! publish`, another process, possibly through another server) is counted
//! per client and timed by the wall clock both processes share. Several
//! of these, one per server, check a fanout across instances.

use std::time::{Duration, Instant};

use crate::fanout::{find_marker, leading_number};
use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::report::{latency, opt_round, Line};
use crate::resume_check::{find_offset, Tracker};
use crate::stats::Histogram;
use crate::sys::{self_cpu_us, unix_us};
use crate::{Outcome, Run, CLOSE_GRACE};

/// Longest poll wait; deliveries wake the loop sooner.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// How long the clients keep listening for duplicates once every
/// broadcast has arrived everywhere.
pub const LINGER: Duration = Duration::from_millis(500);

/// The sequence number and publish time (µs since the Unix epoch) in a
/// frame: None without the marker, Some(None) for a marker not followed by
/// `<seq> <time> `.
pub fn find_stamp(text: &[u8]) -> Option<Option<(u32, u64)>> {
    let marker = find_marker(text)?;
    Some(marker.and_then(|(seq, rest)| Some((seq, leading_number(rest, 20)?.0))))
}

struct Subscribe {
    n: usize,
    expect: u32,
    tracker: Tracker,
    hist: Histogram,
    /// The wall clock at the loop clock's zero, µs: receive times are
    /// taken from the loop's monotonic clock.
    epoch_us: u64,
    first_sent_us: Option<u64>,
    last_delivery_us: u64,
}

impl Handler for Subscribe {
    fn on_text(&mut self, id: usize, text: &[u8], _: &mut Tx, now_us: u64) -> Result<(), String> {
        if id >= self.n {
            return Ok(());
        }
        let Some(stamp) = find_stamp(text) else {
            return Ok(());
        };
        let (seq, sent_us) = stamp.ok_or_else(|| {
            format!(
                "a marker without a sequence number and time: {:?}",
                String::from_utf8_lossy(&text[..text.len().min(200)])
            )
        })?;
        if seq == 0 || seq > self.expect {
            return Err(format!(
                "message {seq} is not one of the {} expected",
                self.expect
            ));
        }
        let (before, disorder_before) = (self.tracker.deliveries, self.tracker.out_of_order);
        let offset = find_offset(text);
        self.tracker.delivery(id, seq, offset);
        if self.tracker.out_of_order > disorder_before && self.tracker.out_of_order <= 10 {
            eprintln!("wsload: client {id}: message {seq} (offset {offset:?}) after a later one");
        }
        if self.tracker.deliveries == before {
            return Ok(());
        }
        let recv_us = self.epoch_us + now_us;
        self.hist.record(recv_us.saturating_sub(sent_us));
        self.first_sent_us = Some(self.first_sent_us.map_or(sent_us, |f| f.min(sent_us)));
        self.last_delivery_us = self.last_delivery_us.max(recv_us);
        Ok(())
    }
}

/// Tells whoever starts the publisher that every client is ready: the
/// file appears complete (written aside, then renamed).
fn write_ready_file(path: &str, n: usize) -> std::io::Result<()> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, format!("{n}\n"))?;
    std::fs::rename(&tmp, path)
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let n = a.conns;
    let expect = a.messages.expect("checked by args");
    let mut net = Net::for_run(run, ReadyOn::FirstText)?;
    let mut h = Subscribe {
        n,
        expect,
        tracker: Tracker::new(n),
        hist: Histogram::default(),
        epoch_us: unix_us().saturating_sub(net.now_us()),
        first_sent_us: None,
        last_delivery_us: 0,
    };
    let (_, ok) = net.connect_many(n, a.concurrency, run.setup_deadline, &mut h);
    let mut ready_file_error = 0;
    let mut timed_out = false;
    let mut cpu_secs = None;
    if ok {
        let cpu_at_ready = self_cpu_us();
        eprintln!("wsload: {n} clients ready; waiting for {expect} broadcasts");
        if let Some(path) = &a.ready_file {
            if let Err(e) = write_ready_file(path, n) {
                eprintln!("wsload: --ready-file {path}: {e}");
                ready_file_error = 1;
            }
        }
        let all = u64::from(expect) * n as u64;
        let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
        let mut complete_at: Option<Instant> = None;
        while ready_file_error == 0 && net.errors == 0 {
            let now = Instant::now();
            if complete_at.is_none() && h.tracker.deliveries >= all {
                complete_at = Some(now);
            }
            let until = match complete_at {
                Some(t) => t + LINGER,
                None => deadline,
            };
            if now >= run.safety || (complete_at.is_none() && now >= deadline) {
                timed_out = true;
                eprintln!(
                    "wsload: time limit reached with {} of {all} deliveries",
                    h.tracker.deliveries
                );
                break;
            }
            if now >= until {
                break;
            }
            net.poll_once(Some((until - now).min(MAX_WAIT)), &mut h);
        }
        cpu_secs = Some(self_cpu_us().saturating_sub(cpu_at_ready) as f64 / 1e6);
    }
    net.close_all(CLOSE_GRACE, &mut h);

    let t = &h.tracker;
    let expected = u64::from(expect) * n as u64;
    let errors = net.errors + ready_file_error;
    let secs = h
        .first_sent_us
        .map(|first| h.last_delivery_us.saturating_sub(first) as f64 / 1e6);
    let valid = ok && !timed_out && errors == 0 && t.exact(expected);
    let mut line = Line::new("subscribe", a.label.as_deref());
    line.field("clients", n).field("broadcasts", expect);
    t.report(&mut line, expected);
    line.field(
        "deliveries_per_sec",
        opt_round(
            secs.filter(|s| *s > 0.0).map(|s| t.deliveries as f64 / s),
            1,
        ),
    )
    .raw("lat_us", &latency(&h.hist))
    .field("first_sent_unix_us", h.first_sent_us)
    .field(
        "last_delivery_unix_us",
        h.first_sent_us.map(|_| h.last_delivery_us),
    )
    .field("cpu_secs", opt_round(cpu_secs, 3));
    Ok(Outcome::new(line, errors, valid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::http_body;

    #[test]
    fn finds_the_publish_time_after_the_sequence_number() {
        let mut body = Vec::new();
        http_body(&mut body, 7, Some(1_764_644_000_123_456), 40);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text,
            r#"{"message":"wsl 7 1764644000123456 xxxxxxxxxxxxxxxxx"}"#
        );
        assert_eq!(find_stamp(&body), Some(Some((7, 1_764_644_000_123_456))));
        assert_eq!(find_stamp(br#"{"type":"welcome"}"#), None);
        assert_eq!(find_stamp(b"wsl 7 xxxx"), Some(None), "no time");
        assert_eq!(find_stamp(b"wsl 7 12"), Some(None), "time not ended");
        assert_eq!(find_stamp(b"wsl x 12 "), Some(None));
    }

    #[test]
    fn counts_deliveries_duplicates_and_strangers() {
        let mut h = Subscribe {
            n: 2,
            expect: 3,
            tracker: Tracker::new(2),
            hist: Histogram::default(),
            epoch_us: 1_000_000,
            first_sent_us: None,
            last_delivery_us: 0,
        };
        let mut out = Vec::new();
        let mut rng = crate::frame::Rng::from_entropy();
        let mut tx = Tx::for_test(&mut out, &mut rng);
        let msg =
            |seq: u32, sent: u64| format!(r#"{{"type":"chat","message":"wsl {seq} {sent} x"}}"#);
        h.on_text(0, msg(1, 999_000).as_bytes(), &mut tx, 500)
            .unwrap();
        h.on_text(1, msg(1, 999_000).as_bytes(), &mut tx, 700)
            .unwrap();
        h.on_text(1, msg(1, 999_000).as_bytes(), &mut tx, 900)
            .unwrap();
        h.on_text(0, b"{\"type\":\"notification\"}", &mut tx, 900)
            .unwrap();
        h.on_text(9, msg(3, 1).as_bytes(), &mut tx, 900).unwrap();
        assert!(h
            .on_text(0, msg(4, 999_000).as_bytes(), &mut tx, 900)
            .is_err());
        assert!(h.on_text(0, b"wsl 2 x", &mut tx, 900).is_err());
        assert_eq!((h.tracker.deliveries, h.tracker.duplicates), (2, 1));
        assert_eq!((h.hist.count(), h.hist.max()), (2, 1_700));
        assert_eq!(
            (h.first_sent_us, h.last_delivery_us),
            (Some(999_000), 1_000_700)
        );
    }
}
