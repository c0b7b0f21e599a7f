//! `wsload echo`: C connections to `/echo`, each keeping D messages in
//! flight; every echo is checked against what was sent, in order, and its
//! round trip timed.

use std::time::{Duration, Instant};

use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::report::{latency, opt_round, Line};
use crate::stats::Histogram;
use crate::sys::CpuSample;
use crate::{Outcome, Run, CLOSE_GRACE, STRAGGLERS};

const HEX: &[u8; 16] = b"0123456789abcdef";
const ALPHABET: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// Message `counter` of a connection: the counter as 8 hex digits, then
/// letters starting at `counter % 26` (only letters if `size` < 8), so
/// consecutive messages differ and a reordered or mixed-up echo shows.
pub struct Payloads {
    size: usize,
    /// The alphabet repeated: every message's letters are one slice of it.
    letters: Vec<u8>,
}

impl Payloads {
    pub fn new(size: usize) -> Payloads {
        let letters = ALPHABET.iter().copied().cycle().take(size + 26).collect();
        Payloads { size, letters }
    }

    fn prefix(counter: u32) -> [u8; 8] {
        let mut p = [0u8; 8];
        for (i, b) in p.iter_mut().enumerate() {
            *b = HEX[((counter >> (28 - 4 * i)) & 0xF) as usize];
        }
        p
    }

    fn parts(&self, counter: u32) -> (usize, &[u8]) {
        let hex = if self.size >= 8 { 8 } else { 0 };
        let from = (counter % 26) as usize;
        (hex, &self.letters[from..from + self.size - hex])
    }

    pub fn fill(&self, counter: u32, dst: &mut [u8]) {
        let (hex, letters) = self.parts(counter);
        dst[..hex].copy_from_slice(&Self::prefix(counter)[..hex]);
        dst[hex..].copy_from_slice(letters);
    }

    pub fn matches(&self, counter: u32, text: &[u8]) -> bool {
        let (hex, letters) = self.parts(counter);
        text.len() == self.size
            && text[..hex] == Self::prefix(counter)[..hex]
            && &text[hex..] == letters
    }
}

struct Echo {
    depth: usize,
    payloads: Payloads,
    /// Per connection: messages sent and echoes received.
    sent: Vec<u32>,
    received: Vec<u32>,
    /// Per connection, `depth` slots: when message k was sent (slot k % D).
    sent_at: Vec<u64>,
    sending: bool,
    window_end_us: u64,
    /// Echoes received inside the measuring window.
    in_window: u64,
    outstanding: u64,
    hist: Histogram,
}

impl Echo {
    fn queue_next(&mut self, id: usize, tx: &mut Tx, now_us: u64) {
        let k = self.sent[id];
        let payloads = &self.payloads;
        tx.text_with(payloads.size, |dst| payloads.fill(k, dst));
        self.sent_at[id * self.depth + k as usize % self.depth] = now_us;
        self.sent[id] = k + 1;
        self.outstanding += 1;
    }
}

impl Handler for Echo {
    fn on_text(&mut self, id: usize, text: &[u8], tx: &mut Tx, now_us: u64) -> Result<(), String> {
        let k = self.received[id];
        if k >= self.sent[id] {
            return Err("an echo of a message never sent".into());
        }
        if !self.payloads.matches(k, text) {
            return Err(format!(
                "echo of message {k} differs from what was sent ({} bytes)",
                text.len()
            ));
        }
        let rtt = now_us.saturating_sub(self.sent_at[id * self.depth + k as usize % self.depth]);
        if now_us <= self.window_end_us {
            self.in_window += 1;
            self.hist.record(rtt);
        }
        self.received[id] = k + 1;
        self.outstanding -= 1;
        if self.sending {
            self.queue_next(id, tx, now_us);
        }
        Ok(())
    }
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let c = a.conns;
    let mut net = Net::for_run(run, ReadyOn::Open)?;
    let mut h = Echo {
        depth: a.depth,
        payloads: Payloads::new(a.size),
        sent: vec![0; c],
        received: vec![0; c],
        sent_at: vec![0; c * a.depth],
        sending: false,
        window_end_us: 0,
        in_window: 0,
        outstanding: 0,
        hist: Histogram::default(),
    };
    let (ids, ok) = net.connect_many(c, a.concurrency, run.setup_deadline, &mut h);
    let mut timed_out = false;
    let mut secs = None;
    let mut gen_cpu = None;
    let mut lost = 0;
    if ok {
        eprintln!("wsload: {c} echo connections open; sending");
        let gen_sample = CpuSample::take(None);
        let start = Instant::now();
        let start_us = net.now_us();
        let end = start + Duration::from_secs_f64(a.duration);
        h.window_end_us = start_us + (a.duration * 1e6) as u64;
        h.sending = true;
        let mut failed = Vec::new();
        for id in ids {
            let now_us = net.now_us();
            let r = net.with_tx(id, |tx| {
                for _ in 0..h.depth {
                    h.queue_next(id, tx, now_us);
                }
            });
            if let Some(Err(e)) = r {
                failed.push((id, e));
            }
        }
        for (id, e) in failed {
            net.fail(id, format!("write: {e}"), &mut h);
        }
        loop {
            let now = Instant::now();
            if now >= run.safety {
                timed_out = true;
                break;
            }
            if now >= end {
                break;
            }
            if net.errors > 0 {
                eprintln!("wsload: stopping early after an error");
                break;
            }
            net.poll_once(Some(end - now), &mut h);
        }
        secs = Some(start.elapsed().as_secs_f64());
        h.sending = false;
        gen_cpu = gen_sample.percent_since();
        let give_up = Instant::now() + STRAGGLERS;
        while h.outstanding > 0 && net.errors == 0 && !timed_out {
            let now = Instant::now();
            if now >= run.safety {
                timed_out = true;
            }
            if now >= give_up || timed_out {
                break;
            }
            net.poll_once(Some(give_up - now), &mut h);
        }
        if h.outstanding > 0 && net.errors == 0 {
            lost = h.outstanding;
            eprintln!("wsload: {lost} echoes never came back");
        }
    }
    net.close_all(CLOSE_GRACE, &mut h);
    if timed_out {
        eprintln!("wsload: safety timeout reached");
    }

    let errors = net.errors + lost;
    let valid = ok && !timed_out && errors == 0 && h.in_window > 0;
    let mut line = Line::new("echo", a.label.as_deref());
    line.field("conns", c)
        .field("depth", a.depth)
        .field("size", a.size)
        .field("messages", h.in_window)
        .field(
            "msgs_per_sec",
            opt_round(secs.map(|s| h.in_window as f64 / s), 1),
        )
        .raw("rtt_us", &latency(&h.hist))
        .field("secs", opt_round(secs, 4))
        .field("gen_cpu_percent", opt_round(gen_cpu, 1));
    Ok(Outcome::new(line, errors, valid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_differ() {
        for size in [1, 7, 8, 9, 100, 5000] {
            let p = Payloads::new(size);
            let mut a = vec![0; size];
            let mut b = vec![0; size];
            p.fill(41, &mut a);
            p.fill(42, &mut b);
            assert!(p.matches(41, &a));
            assert!(!p.matches(42, &a), "size {size}");
            assert!(p.matches(42, &b));
            assert!(std::str::from_utf8(&a).is_ok());
            assert!(!p.matches(41, &a[..size - 1]));
        }
        let p = Payloads::new(12);
        let mut a = vec![0; 12];
        p.fill(0x1234_abcd, &mut a);
        assert_eq!(&a, b"1234abcdhijk");
    }
}
