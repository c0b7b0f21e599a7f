//! `wsload upgrade`: a one-host upgrade under load. N clients on the old
//! server (started here with `--handover PATH`, or running already), a
//! publisher posting R broadcasts/s over HTTP keep-alive, and a new server
//! started with the same `--handover PATH` in the middle: it takes the
//! listening socket, the old one drains, and every client follows its
//! `shutdown_notice` as /client.js does (`upgrade_clients.rs`). Publishing
//! goes on until every client has moved and the old server has exited;
//! then a final marker, and every broadcast must have reached every client
//! exactly once, in offset order.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::args::{Args, Reconnect};
use crate::fanout::http_body;
use crate::net::{Net, ReadyOn};
use crate::publish_http::HttpPublisher;
use crate::report::{opt_round, rate_value, round, Line};
use crate::server_process::ServerProcess;
use crate::upgrade_clients::Clients;
use crate::{sys, Outcome, Run, CATCH_UP, CLOSE_GRACE};

/// Longest poll wait; events, publications and moves wake the loop sooner.
const MAX_WAIT: Duration = Duration::from_millis(20);
/// How long a server started here gets to exit after SIGTERM at the end.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The old server: started here (its exit status is ours to read) or
/// running already (only its pid is known).
enum Old {
    Started(ServerProcess),
    Running(u32),
}

impl Old {
    fn pid(&self) -> u32 {
        match self {
            Old::Started(p) => p.pid(),
            Old::Running(pid) => *pid,
        }
    }

    /// Whether it has exited, and its exit code when known.
    fn exited(&mut self) -> Option<Option<i32>> {
        match self {
            Old::Started(p) => p.exited().map(|s| s.code()),
            Old::Running(pid) => sys::has_exited(*pid).then_some(None),
        }
    }
}

/// The arguments of a server started here.
fn server_args(a: &Args) -> Vec<String> {
    let u = &a.upgrade;
    let mut args: Vec<String> = [
        "--host",
        &a.host.to_string(),
        "--port",
        "0",
        "--handover",
        &u.handover,
        "--notify-interval",
        "0",
        "--drain-timeout",
        &u.drain_timeout,
        "--max-connections",
        &(a.conns + 1000).to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(url) = &u.redis {
        args.extend(["--redis".to_string(), url.clone()]);
    }
    args.extend(u.server_args.iter().cloned());
    args
}

fn spawn(a: &Args, name: &'static str, binary: &str) -> std::io::Result<ServerProcess> {
    let log = a
        .upgrade
        .log_dir
        .as_ref()
        .map(|dir| Path::new(dir).join(format!("{name}.log")));
    let p = ServerProcess::spawn(name, binary, &server_args(a), log)?;
    eprintln!("wsload: started the {name} server: pid {}", p.pid());
    Ok(p)
}

/// Starts the old server and waits for its `listening on` line.
fn start_old(run: &Run) -> std::io::Result<(ServerProcess, u16)> {
    let a = &run.args;
    let binary = a.upgrade.server.as_deref().expect("checked by args");
    let mut p = spawn(a, "old", binary)?;
    loop {
        if let Some((port, _)) = p.listening() {
            return Ok((p, port));
        }
        if p.exited().is_some() || Instant::now() >= run.setup_deadline {
            p.print_tail();
            return Err(std::io::Error::other(
                "the old server did not start listening",
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The moments of the upgrade, in µs of the loop's clock.
#[derive(Default)]
struct Times {
    /// The new server was started.
    upgrade_us: Option<u64>,
    /// It logged `listening on`.
    new_listening_us: Option<u64>,
    /// The old server exited, with its code when known.
    old_exit_us: Option<u64>,
    old_exit_code: Option<i32>,
}

impl Times {
    fn since_upgrade(&self, at: Option<u64>) -> Option<f64> {
        Some(at?.saturating_sub(self.upgrade_us?) as f64 / 1e6)
    }
}

pub fn run(run: &Run) -> std::io::Result<Outcome> {
    let a = &run.args;
    let u = &a.upgrade;
    let n = a.conns;
    let (mut old, port) = match &u.server {
        Some(_) => {
            let (p, port) = start_old(run)?;
            (Old::Started(p), port)
        }
        None => (Old::Running(a.server_pid.expect("checked by args")), a.port),
    };
    let addr = SocketAddr::new(IpAddr::V4(a.host), port);
    let mut net = Net::new(
        a.host,
        port,
        &a.path,
        a.sources.clone(),
        ReadyOn::Open,
        run.t0,
    )?;
    let mut h = Clients::new(n, u.reconnect);
    let (_, mut ok) = net.connect_many(n, a.concurrency, run.setup_deadline, &mut h);
    while ok && h.welcomed_old < n && net.errors + h.errors == 0 {
        let now = Instant::now();
        if now >= run.setup_deadline {
            h.error("setup", "not every client got its welcome in time");
            break;
        }
        net.poll_once(Some((run.setup_deadline - now).min(MAX_WAIT)), &mut h);
    }
    ok = ok && h.welcomed_old == n && net.errors + h.errors == 0;
    if ok {
        eprintln!(
            "wsload: {n} clients welcomed by the old server (pid {}) on {addr}",
            old.pid()
        );
        let mut http = HttpPublisher::new(addr, net.source_for(2 * n), &addr.to_string(), None);
        http.tolerate_unanswered();
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

    let mut new: Option<ServerProcess> = None;
    let mut times = Times::default();
    let mut timed_out = false;
    if ok {
        timed_out = upgrade_under_load(run, &mut net, &mut h, &mut old, &mut new, &mut times);
    }
    net.close_all(CLOSE_GRACE, &mut h);
    let (requests_answered, unanswered, publisher_connections) =
        h.http.take().map_or((0, Vec::new(), 0), |p| {
            (p.responses, p.unanswered_lost, p.connections)
        });
    if timed_out {
        eprintln!("wsload: time limit reached");
    }
    let errors = net.errors + h.errors;
    let new_status: Option<ExitStatus> = new.as_mut().and_then(|p| p.stop(STOP_GRACE));
    if let Old::Started(p) = &mut old {
        if times.old_exit_us.is_none() {
            p.stop(STOP_GRACE);
        }
    }

    // A request left unanswered was published if any client got it.
    let unanswered: HashSet<u32> = unanswered.into_iter().collect();
    let expected: Vec<u32> = (1..=h.published)
        .filter(|seq| !unanswered.contains(seq) || h.tracker.seen_by_any(*seq))
        .collect();
    let unanswered_published = unanswered
        .iter()
        .filter(|&&seq| h.tracker.seen_by_any(seq))
        .count();
    let mut per_client = h.tracker.missing_per_client(&expected);
    per_client.sort_unstable();
    let missing: u64 = per_client.iter().sum();
    let expected_deliveries = expected.len() as u64 * n as u64;
    let t = &h.tracker;
    let lost_nothing = missing == 0
        && t.duplicates == 0
        && t.out_of_order == 0
        && t.offset_disorder == 0
        && t.offset_mismatches == 0
        && t.without_offset == 0;
    let old_ok = match old {
        Old::Started(_) => times.old_exit_code == Some(0),
        Old::Running(_) => times.old_exit_us.is_some(),
    };
    let valid = ok
        && !timed_out
        && errors == 0
        && h.marker_seen == n
        && h.resumed == n
        && h.resumed_on_old == 0
        && t.recovered == n as u64
        && lost_nothing
        && old_ok;
    if !valid {
        if let Old::Started(p) = &old {
            p.print_tail();
        }
        if let Some(p) = &new {
            p.print_tail();
        }
    }
    if !unanswered.is_empty() {
        eprintln!(
            "wsload: {} publish request(s) unanswered ({unanswered_published} of them reached clients)",
            unanswered.len()
        );
    }

    let mut line = Line::new("upgrade", a.label.as_deref());
    line.field("clients", n)
        .field("rate", rate_value(a.rate))
        .field(
            "reconnect",
            match u.reconnect {
                Reconnect::Hint => "hint",
                Reconnect::Now => "now",
            },
        )
        .field("redis", u.redis.is_some())
        .field("published", h.published)
        .field("expected", expected_deliveries)
        .field("deliveries", t.deliveries)
        .field("missing", missing)
        .field(
            "missing_pct",
            round(percent(missing, expected_deliveries), 3),
        )
        .raw("missing_per_client", &spread(&per_client))
        .field(
            "clients_missing",
            per_client.iter().filter(|&&m| m > 0).count(),
        )
        .field("duplicates", t.duplicates)
        .field("out_of_order", t.out_of_order)
        .field("offset_disorder", t.offset_disorder)
        .field("offset_mismatches", t.offset_mismatches)
        .field("without_offset", t.without_offset)
        .field("notices", h.notices)
        .field("hint_max_ms", h.hint_max_ms)
        .field("resumed", h.resumed)
        .field("recovered", t.recovered)
        .field("too_old", t.too_old)
        .field("unknown_epoch", t.unknown_epoch)
        .field("not_recovered_other", t.not_recovered_other)
        .field("resumed_on_old", h.resumed_on_old)
        .field("replayed", t.replayed)
        .field("requests_answered", requests_answered)
        .field("requests_unanswered", unanswered.len())
        .field("unanswered_published", unanswered_published)
        .field("publisher_connections", publisher_connections)
        .field(
            "new_listening_ms",
            opt_round(
                times.since_upgrade(times.new_listening_us).map(|s| s * 1e3),
                1,
            ),
        )
        .field(
            "moved_secs",
            opt_round(
                (h.resumed == n)
                    .then(|| times.since_upgrade(Some(h.last_resume_us)))
                    .flatten(),
                3,
            ),
        )
        .field(
            "old_exit_secs",
            opt_round(times.since_upgrade(times.old_exit_us), 3),
        )
        .field("old_exit_code", times.old_exit_code)
        .field("new_exit_code", new_status.and_then(|s| s.code()));
    Ok(Outcome::new(line, errors, valid))
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `{"min":..,"median":..,"max":..}` of sorted values (nulls when empty).
fn spread(sorted: &[u64]) -> String {
    let v = |x: Option<&u64>| x.map_or("null".to_string(), u64::to_string);
    format!(
        "{{\"min\":{},\"median\":{},\"max\":{}}}",
        v(sorted.first()),
        v(sorted.get(sorted.len() / 2)),
        v(sorted.last())
    )
}

/// The measured part: publishing, the new server, every client's move,
/// the old server's exit, the final marker. True if it ran out of time.
fn upgrade_under_load(
    run: &Run,
    net: &mut Net,
    h: &mut Clients,
    old: &mut Old,
    new: &mut Option<ServerProcess>,
    times: &mut Times,
) -> bool {
    let a = &run.args;
    let n = a.conns;
    let target = net.target();
    let mut payload = Vec::with_capacity(a.size + 64);
    let start = Instant::now();
    let upgrade_at = start + Duration::from_secs_f64(a.before);
    let limit = upgrade_at + Duration::from_secs_f64(a.duration);
    let mut marker_at: Option<Instant> = None;
    let mut marker_sent: Option<Instant> = None;
    eprintln!(
        "wsload: publishing {} msgs/s; the new server starts in {:.1} s",
        a.rate, a.before
    );
    loop {
        let now = Instant::now();
        if now >= run.safety {
            return true;
        }
        if net.errors + h.errors > 0 {
            eprintln!("wsload: stopping early after an error");
            return false;
        }
        let now_us = net.now_us();
        if new.is_none() && now >= upgrade_at {
            let binary = a
                .upgrade
                .new_server
                .as_deref()
                .or(a.upgrade.server.as_deref())
                .expect("checked by args");
            match spawn(a, "new", binary) {
                Ok(p) => *new = Some(p),
                Err(e) => {
                    h.error("new server", &e.to_string());
                    return false;
                }
            }
            times.upgrade_us = Some(now_us);
        }
        if let Some(p) = new.as_mut() {
            if times.new_listening_us.is_none() && p.listening().is_some() {
                times.new_listening_us = Some(now_us);
            }
            if let Some(status) = p.exited() {
                h.error("new server", &format!("exited during the run: {status}"));
                return false;
            }
        }
        if times.old_exit_us.is_none() {
            if let Some(code) = old.exited() {
                if new.is_none() {
                    h.error("old server", "exited before the upgrade");
                    return false;
                }
                times.old_exit_us = Some(now_us);
                times.old_exit_code = code;
                eprintln!(
                    "wsload: the old server exited ({}) {:.3} s after the new one started",
                    code.map_or("code unknown".into(), |c| format!("code {c}")),
                    times.since_upgrade(Some(now_us)).unwrap_or(0.0)
                );
            }
        }
        while let Some(&std::cmp::Reverse((due, c))) = h.moves.peek() {
            if due > now_us {
                break;
            }
            h.moves.pop();
            let c = c as usize;
            // As /client.js: close the old connection, ignore what it
            // still brings, and resume on the same address.
            net.abandon(h.current[c], h);
            h.moved[c] = true;
            let path = h.tracker.resume_path(c, &a.path);
            let id = net.open_to(target, net.source_for(c), path);
            h.attach(id, c);
        }
        if marker_at.is_none() && h.resumed == n && times.old_exit_us.is_some() {
            eprintln!("wsload: every client moved and the old server exited");
            marker_at = Some(now + Duration::from_secs_f64(a.after));
        }
        if marker_at.is_none() && new.is_some() && now >= limit {
            eprintln!(
                "wsload: after --duration: {} of {n} clients resumed, old server {}",
                h.resumed,
                if times.old_exit_us.is_some() {
                    "exited"
                } else {
                    "still running"
                }
            );
            return true;
        }
        if let Some(sent) = marker_sent {
            let answered = h
                .http
                .as_ref()
                .is_some_and(|p| p.in_flight() == 0 && p.resend.is_empty());
            if h.marker_seen == n && answered {
                return false;
            }
            if now >= sent + CATCH_UP {
                eprintln!(
                    "wsload: the final marker reached {} of {n} clients",
                    h.marker_seen
                );
                return true;
            }
        }

        let mut wait = MAX_WAIT;
        if let Some(&std::cmp::Reverse((due, _))) = h.moves.peek() {
            wait = wait.min(Duration::from_micros(due.saturating_sub(now_us)));
        }
        if new.is_none() {
            wait = wait.min(upgrade_at.saturating_duration_since(now));
        }
        let http = h.http.as_mut().expect("connected before");
        if let Err(e) = http.ensure_connected(net.registry()) {
            h.error("http publisher", &e);
            continue;
        }
        // Requests the server dropped unprocessed behind a
        // `Connection: close` go out again first.
        let mut failed = http
            .send_again(
                &mut payload,
                |buf, seq| http_body(buf, seq, None, a.size),
                |_| {},
            )
            .err();
        let ready = failed.is_none() && http.resend.is_empty() && http.can_send();
        match marker_at {
            Some(at) if marker_sent.is_none() && now >= at && ready => {
                let seq = h.published + 1;
                payload.clear();
                http_body(&mut payload, seq, None, a.size);
                h.published = seq;
                h.marker = Some(seq);
                failed = http.send(seq, &payload).err();
                marker_sent = Some(now);
            }
            _ if marker_sent.is_some() => {}
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
                    h.published = seq;
                    failed = http.send(seq, &payload).err();
                }
                let next = start + Duration::from_secs_f64(f64::from(h.published) / a.rate);
                wait = wait.min(next.saturating_duration_since(now));
            }
        }
        if let Some(e) = failed {
            h.error("http publisher", &e);
        }
        net.poll_once(Some(wait), h);
    }
}
