//! `wsload idle`: open N clients, then measure what they cost the server
//! while they sit idle (memory per connection, CPU).

use std::time::{Duration, Instant};

use crate::net::{Handler, Net, ReadyOn, Tx};
use crate::report::{opt_round, round, Line};
use crate::sys::{self, CpuSample};
use crate::{Outcome, Run, CLOSE_GRACE};

/// Settling time between the last ready client and the RSS reading.
const SETTLE: Duration = Duration::from_secs(1);

/// Idle clients ignore whatever text arrives (periodic notifications);
/// pings are answered by the loop.
struct Quiet;

impl Handler for Quiet {
    fn on_text(&mut self, _: usize, _: &[u8], _: &mut Tx, _: u64) -> Result<(), String> {
        Ok(())
    }
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let mut net = Net::for_run(run, ReadyOn::FirstText)?;
    let mut h = Quiet;
    let pid = a.server_pid;
    let rss_before = pid.and_then(sys::rss_kib);
    let anon_before = pid.and_then(sys::anon_kib);
    if pid.is_some() && rss_before.is_none() {
        eprintln!("wsload: cannot read /proc/{}/status", pid.unwrap_or(0));
    }

    // Both processes' CPU over the handshakes: on two cores the rate is
    // capped by whichever saturates first, the server or wsload.
    let own_pid = std::process::id();
    let server_ns_before = pid.and_then(sys::run_ns);
    if pid.is_some() && server_ns_before.is_none() {
        eprintln!(
            "wsload: cannot read /proc/{}/task/*/schedstat",
            pid.unwrap_or(0)
        );
    }
    let client_ns_before = sys::run_ns(own_pid);
    let wall_before = Instant::now();
    let start_us = net.now_us();
    let (_, all_ready) = net.connect_many(a.conns, a.concurrency, run.setup_deadline, &mut h);
    let wall_secs = wall_before.elapsed().as_secs_f64();
    let client_ns_after = sys::run_ns(own_pid);
    let server_ns_after = pid.and_then(sys::run_ns);
    let cpu_secs = |before: Option<u64>, after: Option<u64>| match (all_ready, before, after) {
        (true, Some(b), Some(af)) => Some(af.saturating_sub(b) as f64 / 1e9),
        _ => None,
    };
    let handshake_server_cpu = cpu_secs(server_ns_before, server_ns_after);
    let handshake_client_cpu_percent = cpu_secs(client_ns_before, client_ns_after)
        .filter(|_| wall_secs > 0.0)
        .map(|s| s / wall_secs * 100.0);
    let mut timed_out = Instant::now() >= run.setup_deadline && !all_ready;
    let mut handshake_secs = None;
    let mut rss_after = None;
    let mut anon_after = None;
    let mut cpu = None;
    if all_ready {
        let secs = (net.last_ready_us.saturating_sub(start_us)) as f64 / 1e6;
        handshake_secs = Some(secs);
        eprintln!(
            "wsload: {} clients ready in {secs:.3} s; settling {SETTLE:?}",
            a.conns
        );
        if net.run_until(Instant::now() + SETTLE, run.safety, &mut h) {
            rss_after = pid.and_then(sys::rss_kib);
            anon_after = pid.and_then(sys::anon_kib);
            let sample = pid.map(|p| CpuSample::take(Some(p)));
            let idle = Duration::from_secs_f64(a.idle_secs);
            eprintln!("wsload: idling {idle:?}");
            if net.run_until(Instant::now() + idle, run.safety, &mut h) {
                cpu = sample.and_then(|s| s.percent_since());
            } else {
                timed_out = true;
            }
        } else {
            timed_out = true;
        }
    }
    net.close_all(CLOSE_GRACE, &mut h);
    if timed_out {
        eprintln!("wsload: safety timeout reached");
    }

    let errors = net.errors;
    let valid = all_ready && !timed_out && errors == 0;
    let n = a.conns as f64;
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(af)) => Some((af as f64 - b as f64) * 1024.0 / n),
        _ => None,
    };
    let mut line = Line::new("idle", a.label.as_deref());
    line.field("conns", a.conns)
        .field("deflate_offered", a.deflate)
        .field("deflate_negotiated", crate::wire::negotiated_count())
        .field(
            "handshakes_per_sec",
            opt_round(handshake_secs.map(|s| n / s), 1),
        )
        .field("handshake_secs", opt_round(handshake_secs, 4))
        .field(
            "handshake_server_cpu_secs",
            opt_round(handshake_server_cpu, 6),
        )
        .field(
            "handshakes_per_server_cpu_sec",
            opt_round(handshake_server_cpu.filter(|s| *s > 0.0).map(|s| n / s), 1),
        )
        .field(
            "handshake_client_cpu_percent",
            opt_round(handshake_client_cpu_percent, 1),
        )
        .field("rss_before_kib", rss_before)
        .field("rss_after_kib", rss_after)
        .field(
            "rss_per_conn_bytes",
            opt_round(per_conn(rss_before, rss_after), 1),
        )
        .field(
            "anon_per_conn_bytes",
            opt_round(per_conn(anon_before, anon_after), 1),
        )
        .field("idle_secs", round(a.idle_secs, 3))
        .field("idle_cpu_percent", opt_round(cpu, 2));
    Ok(Outcome::new(line, errors, valid))
}
