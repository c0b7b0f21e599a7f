//! The main thread: binds the listeners, starts the workers, and then waits
//! on signals, drain progress and the workers' completion.

use std::os::fd::OwnedFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::clock;
use super::handover::{Confirmed, Handed, Successor};
use super::listeners::Listeners;
use super::peer_io::Link;
use super::signals::{self, Meaning, SignalCount};
use super::wakeups::Wakeups;
use super::worker::Worker;
use crate::config::{Config, LogLevel};
use crate::log;
use crate::node::{Process, CLOSE_LINGER};
use crate::obs::sd_notify::Notifier;
use crate::rand::Rng;

const SIGNALS: Token = Token(0);
/// Woken when a worker finished, or a new server took the sockets.
const WAKE: Token = Token(1);
/// The link to the other process of a hand-over.
const LINK: Token = Token(2);

/// How the process ends when every worker has finished.
pub enum Outcome {
    Clean,
    Failed(String),
}

/// `inherited`: the sockets passed by socket activation, if any.
pub fn run(config: Config, inherited: Option<Vec<OwnedFd>>) -> Result<Outcome, String> {
    let workers = config.workers;
    let listeners = Listeners::acquire(&config, inherited)?;
    let addrs = listeners.addresses()?;
    let addr = addrs[0];
    check_fd_limit(&config);
    if config.require_token && config.token_secret.is_none() {
        log!(
            Warn,
            "--require-token without --token-secret or --token-secret-file: every /ws upgrade gets 401"
        );
    }

    let mut poll = Poll::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
    let mut signal_source =
        signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
    poll.registry()
        .register(&mut signal_source, SIGNALS, Interest::READABLE)
        .map_err(|e| format!("cannot watch signals: {e}"))?;
    let supervisor =
        Waker::new(poll.registry(), WAKE).map_err(|e| format!("cannot create a waker: {e}"))?;
    let mut worker_polls = Vec::with_capacity(workers);
    let mut worker_listeners = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for id in 0..workers {
        worker_listeners.push(
            listeners
                .for_worker(id)
                .map_err(|e| format!("cannot share a listening socket with worker {id}: {e}"))?,
        );
        let worker_poll = Poll::new().map_err(|e| format!("cannot create an event loop: {e}"))?;
        wakers
            .push(Worker::waker(&worker_poll).map_err(|e| format!("cannot create a waker: {e}"))?);
        worker_polls.push(worker_poll);
    }
    let force_at = config.force_signals;
    let drain_timeout = config.drain_timeout;
    let log_interval = config.drain_log_interval;
    let started = clock::now();
    let process = Arc::new(
        Process::new(config, started.at, &mut Rng::from_os()).with_listener(listeners.origin),
    );
    let wakeups = Arc::new(Wakeups::new(wakers, supervisor));
    let Listeners {
        sockets,
        origin,
        previous,
    } = listeners;
    let (successor_tx, successors) = std::sync::mpsc::channel();
    let (handed_tx, handed_rx) = std::sync::mpsc::channel();
    let mut link = Link::new(handed_rx, LINK);
    if let Some(previous) = previous {
        // Before any worker accepts: a client's welcome already names the
        // continued stream.
        match previous.confirm(&process.instance) {
            Ok(Confirmed::Continued(continued)) => {
                link.continue_from(continued, &process, poll.registry(), started.at)
            }
            // An older release: the stream this process started with (a
            // new epoch) is the one it serves, alone.
            Ok(Confirmed::SocketsOnly) => {}
            Err(e) => log!(
                Warn,
                format!(
                    "{e}; serving a stream of its own (clients that resume are told unknown_epoch)"
                )
            ),
        }
    }

    let mut handles: Vec<JoinHandle<std::io::Result<()>>> = Vec::with_capacity(workers);
    for (id, (mine, worker_poll)) in worker_listeners.into_iter().zip(worker_polls).enumerate() {
        let worker = Worker::new(
            id,
            Arc::clone(&process),
            Arc::clone(&wakeups),
            mine,
            worker_poll,
            started,
        )
        .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        let done = Arc::clone(&wakeups);
        let handle = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || {
                let result = worker.run();
                done.worker_finished();
                result
            })
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        handles.push(handle);
    }
    let fds = sockets.len();
    if let Some(path) = &process.config.handover {
        let sockets = sockets.into_iter().map(OwnedFd::from).collect();
        let instance = process.instance.clone();
        super::handover::offer(path, sockets, instance, successor_tx, Arc::clone(&wakeups))?;
    }
    let pid = std::process::id();
    let origin = origin.as_str();
    let also = AlsoListening(&addrs[1..]);
    let mut fields: Vec<(&str, &dyn std::fmt::Display)> = vec![
        ("workers", &workers),
        ("instance", &process.instance),
        ("pid", &pid),
        ("listener", &origin),
        ("sockets", &fds),
    ];
    if addrs.len() > 1 {
        fields.push(("also", &also));
    }
    crate::obs::log::emit(
        LogLevel::Info,
        &format!("listening on http://{addr}"),
        &fields,
    );
    let notifier = Notifier::from_env();
    notifier.send(&format!(
        "READY=1\nSTATUS=serving on {addr}\nMAINPID={}",
        std::process::id()
    ));

    let mut count = SignalCount::new(force_at);
    let mut next_progress: Option<Instant> = None;
    let mut events = Events::with_capacity(8);
    let mut handed_over = false;
    // The clock is read once per turn, after the poll; the sleep is timed
    // from the last turn's reading, a few microseconds old.
    let mut now = started.at;
    while wakeups.finished_workers() < workers {
        let timeout = next_progress.map(|at| at.saturating_duration_since(now));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("event loop failed: {e}"));
            }
        }
        now = clock::now().at;
        for event in events.iter() {
            if event.token() == LINK || event.token() == WAKE {
                take_successor(&successors, &handed_tx, &process);
                link.take_handed(&process, &wakeups, poll.registry(), now);
                link.pump(&process, &wakeups, poll.registry(), now);
            }
            if event.token() == WAKE && !handed_over && process.listener.successor().is_some() {
                handed_over = true;
                if drain_after_hand_over(&process, &wakeups, &notifier, drain_timeout, now) {
                    next_progress = Some(now + log_interval);
                }
                continue;
            }
            if event.token() != SIGNALS {
                continue;
            }
            for signal in signal_source.pending() {
                let name = signals::name(signal);
                let active = process.stats.active();
                match count.record() {
                    Meaning::Drain if process.is_draining() => log!(
                        Warn,
                        format!("received {name} (1/{force_at}): already draining after a hand-over; {} more forces an immediate exit", force_at - 1),
                        connections = active
                    ),
                    Meaning::Drain => {
                        process.start_drain(now + drain_timeout);
                        wakeups.wake_workers();
                        let newcomers = if process.listener.is_shared() {
                            "stopped accepting, new clients go to the process that shares the listening socket"
                        } else {
                            "new clients are refused"
                        };
                        log!(
                            Warn,
                            format!("received {name} (1/{force_at}): draining; {newcomers}; connected ones are served until they leave"),
                            connections = active,
                            deadline_in_s = drain_timeout.as_secs(),
                            force = format!("send {} more to force an immediate exit", force_at - 1)
                        );
                        report_progress(&process, &notifier, now);
                        next_progress = Some(now + log_interval);
                    }
                    Meaning::Counted { count, force_at } => {
                        let left = force_at - count;
                        log!(
                            Warn,
                            format!("received {name} ({count}/{force_at}): still draining; {left} more forces an immediate exit"),
                            connections = active
                        );
                    }
                    Meaning::Force { count } => {
                        log!(
                            Error,
                            format!("received {name} ({count}/{force_at}): forcing exit now"),
                            connections = active
                        );
                        // Forced means now: the log gets a moment, not more.
                        crate::obs::log_writer::flush(Duration::from_millis(200));
                        std::process::exit(130);
                    }
                }
            }
        }
        if let Some(at) = next_progress {
            if now >= at && wakeups.finished_workers() < workers {
                report_progress(&process, &notifier, now);
                next_progress = Some(now + log_interval);
            }
        }
    }

    link.finish(&process);
    let mut failure = None;
    for (id, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(format!("worker {id} failed: {e}")),
            Err(_) => failure = Some(format!("worker {id} panicked")),
        }
    }
    Ok(match failure {
        Some(message) => Outcome::Failed(message),
        None => {
            log!(
                Info,
                "drain complete; exiting",
                uptime_s = process.uptime(now).as_secs()
            );
            Outcome::Clean
        }
    })
}

/// The hand-over thread's news: a server of this release goes to the
/// link, which passes it the stream and marks the sockets shared; a
/// version 1 server only takes the sockets, so they are marked shared here
/// and no link follows.
fn take_successor(successors: &Receiver<Successor>, linked: &Sender<Handed>, process: &Process) {
    for successor in successors.try_iter() {
        match successor {
            Successor::Linked(handed) => {
                // The link's receiver lives as long as this loop.
                let _ = linked.send(handed);
            }
            Successor::SocketsOnly { pid } => process.listener.handed_over_to(pid),
        }
    }
}

/// A new server took the sockets: the drain a first signal starts, or, if
/// one runs already, the workers wake to stop accepting. Whether the drain
/// started now.
fn drain_after_hand_over(
    process: &Process,
    wakeups: &Wakeups,
    notifier: &Notifier,
    drain_timeout: Duration,
    now: Instant,
) -> bool {
    let Some(successor) = process.listener.successor() else {
        return false;
    };
    if process.is_draining() {
        log!(
            Warn,
            "handed over while draining: stopped accepting",
            to_pid = successor
        );
        wakeups.wake_workers();
        return false;
    }
    process.start_drain(now + drain_timeout);
    wakeups.wake_workers();
    log!(
        Warn,
        "handed over: draining; stopped accepting, new clients go to the new server; connected ones are served until they leave",
        to_pid = successor,
        connections = process.stats.active(),
        deadline_in_s = drain_timeout.as_secs()
    );
    report_progress(process, notifier, now);
    true
}

/// The addresses after the first, for the `listening on` line.
struct AlsoListening<'a>(&'a [std::net::SocketAddr]);

impl std::fmt::Display for AlsoListening<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<String> = self.0.iter().map(|a| format!("http://{a}")).collect();
        f.write_str(&all.join(","))
    }
}

/// Raises the open-file limit and warns, once, when the clients allowed by
/// `--max-connections` cannot all get a descriptor: beyond the limit,
/// accepting pauses (see the worker) instead of serving them.
fn check_fd_limit(config: &Config) {
    let (limit, error) = super::fd_limit::raise_to_hard();
    if let Some(e) = error {
        log!(Warn, "could not raise the open-file limit", error = e);
    }
    let needed = super::fd_limit::needed(config.max_connections, config.workers);
    if needed > limit {
        log!(
            Warn,
            format!(
                "--max-connections {} does not fit in the open-file limit {limit}; raise it (ulimit -n, LimitNOFILE=) to at least {needed}",
                config.max_connections
            ),
            open_file_limit = limit,
            needed = needed
        );
    } else {
        log!(Debug, "open-file limit", open_file_limit = limit);
    }
}

/// A progress line, and the same news for systemd: the status text and
/// more time, so a stop timeout shorter than the drain does not cut it.
fn report_progress(process: &Process, notifier: &Notifier, now: Instant) {
    let remaining = process.stats.active();
    let deadline_in_s = process.drain_deadline_in_s(now);
    log!(
        Info,
        "draining",
        remaining = remaining,
        deadline_in_s = deadline_in_s
    );
    if notifier.enabled() {
        let extend = Duration::from_secs(deadline_in_s) + CLOSE_LINGER + Duration::from_secs(5);
        notifier.send(&format!(
            "STOPPING=1\nSTATUS=draining {remaining} connections, deadline in {deadline_in_s} s\nEXTEND_TIMEOUT_USEC={}",
            extend.as_micros()
        ));
    }
}
