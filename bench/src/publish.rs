//! `wsload publish`: M broadcasts over HTTP `POST /broadcast` at a fixed
//! rate, each text `wsl <seq> <publish time> ` with the wall-clock time
//! (µs since the Unix epoch) it was written at, for `wsload subscribe`
//! processes to count and time. No WebSocket client of its own.

use std::time::{Duration, Instant};

use mio::event::Event;
use mio::Token;

use crate::fanout::http_body;
use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::publish_http::{self, HttpPublisher};
use crate::report::{opt_round, rate_value, Line};
use crate::sys::unix_us;
use crate::{Outcome, Run};

/// Longest poll wait; answers and due times wake the loop sooner.
const MAX_WAIT: Duration = Duration::from_millis(20);

struct Publish {
    http: HttpPublisher,
    errors: u64,
}

impl Publish {
    fn error(&mut self, msg: &str) {
        self.errors += 1;
        if self.errors <= 20 {
            eprintln!("wsload: http publisher: {msg}");
        }
    }
}

impl Handler for Publish {
    fn on_text(&mut self, _: usize, _: &[u8], _: &mut Tx, _: u64) -> Result<(), String> {
        Ok(())
    }

    fn on_foreign(&mut self, token: Token, event: &Event, _now_us: u64) {
        if token == publish_http::TOKEN {
            if let Err(e) = self.http.on_event(event) {
                self.error(&e);
            }
        }
    }
}

fn stamped_body(buf: &mut Vec<u8>, seq: u32, size: usize) {
    http_body(buf, seq, Some(unix_us()), size);
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let total = a.messages.expect("checked by args");
    let mut net = Net::for_run(run, ReadyOn::Open)?;
    let http = HttpPublisher::new(net.target(), net.source_for(0), net.host_header(), None);
    let mut h = Publish { http, errors: 0 };
    if let Err(e) = h.http.ensure_connected(net.registry()) {
        h.error(&e);
    }
    while h.errors == 0 && !h.http.connected() {
        let now = Instant::now();
        if now >= run.setup_deadline {
            h.error("connect timed out");
            break;
        }
        net.poll_once(Some((run.setup_deadline - now).min(MAX_WAIT)), &mut h);
    }

    let mut published: u32 = 0;
    let mut timed_out = false;
    let mut secs = None;
    if h.errors == 0 {
        let mut payload = Vec::with_capacity(a.size + 64);
        let start = Instant::now();
        let limit = (start + Duration::from_secs_f64(a.duration)).min(run.safety);
        eprintln!(
            "wsload: publishing {total} broadcasts at {} to {}",
            if a.rate > 0.0 {
                format!("{} msgs/s", a.rate)
            } else {
                "the answer rate".to_string()
            },
            net.target()
        );
        loop {
            let now = Instant::now();
            if h.errors > 0 {
                break;
            }
            if h.http.responses >= u64::from(total) {
                secs = Some((now - start).as_secs_f64());
                break;
            }
            if now >= limit {
                timed_out = true;
                eprintln!(
                    "wsload: time limit reached with {} of {total} broadcasts answered",
                    h.http.responses
                );
                break;
            }
            // Requests the server dropped unprocessed go out again first,
            // with a new publish time.
            if let Err(e) = h.http.ensure_connected(net.registry()) {
                h.error(&e);
                continue;
            }
            if let Err(e) = h.http.send_again(
                &mut payload,
                |buf, seq| stamped_body(buf, seq, a.size),
                |_| {},
            ) {
                h.error(&e);
            }
            let due = if a.rate > 0.0 {
                let by_time = (now - start).as_secs_f64() * a.rate;
                (by_time.floor() as u64 + 1).min(u64::from(total)) as u32
            } else {
                total
            };
            let mut wait = MAX_WAIT.min(limit - now);
            while published < due && h.http.resend.is_empty() && h.http.can_send() {
                let seq = published + 1;
                payload.clear();
                stamped_body(&mut payload, seq, a.size);
                if let Err(e) = h.http.send(seq, &payload) {
                    h.error(&e);
                }
                published = seq;
            }
            if a.rate > 0.0 && published < total {
                let next = start + Duration::from_secs_f64(f64::from(published) / a.rate);
                wait = wait.min(next.saturating_duration_since(now));
            }
            net.poll_once(Some(wait), &mut h);
        }
        eprintln!(
            "wsload: http publisher: {} answers over {} connections",
            h.http.responses, h.http.connections
        );
    }

    let answered = h.http.responses;
    let valid = !timed_out && h.errors == 0 && answered == u64::from(total);
    let mut line = Line::new("publish", a.label.as_deref());
    line.field("size", a.size)
        .field("rate", rate_value(a.rate))
        .field("messages", published)
        .field("answered", answered)
        .field("secs", opt_round(secs, 4))
        .field(
            "answered_per_sec",
            opt_round(secs.filter(|s| *s > 0.0).map(|s| answered as f64 / s), 1),
        );
    Ok(Outcome::new(line, h.errors, valid))
}
