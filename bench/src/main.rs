//! wsload: the bundled load generator for wsnotify. One thread, one mio
//! loop, hand-written masked client frames; see bench/README.md.

mod args;
mod channel_plan;
mod channels;
mod drain;
mod drain_resume;
mod echo;
mod fanout;
mod frame;
mod handshake;
mod idle;
mod net;
mod publish;
mod publish_http;
mod report;
mod resume_check;
mod server_process;
mod stats;
mod subscribe;
mod sys;
mod upgrade;
mod upgrade_clients;
mod wire;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use args::{Args, Mode};

/// Time allowed for connecting every client (and the publisher).
pub const SETUP: Duration = Duration::from_secs(30);
/// How long to wait for deliveries or echoes still in flight at the end.
pub const STRAGGLERS: Duration = Duration::from_secs(2);
/// drain-resume: how long deliveries still coming in at the end (replays
/// left B behind) are awaited at most; upgrade: how long the final marker
/// may take to reach every client.
pub const CATCH_UP: Duration = Duration::from_secs(30);
/// How long the closing handshakes may take.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How long past the safety timeout the watchdog waits before it prints
/// an invalid result itself and exits, should the loop ever be stuck.
const WATCHDOG_GRACE: Duration = Duration::from_secs(5);

/// The JSON line has been printed (by the run or by the watchdog).
static PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints the one JSON line unless the watchdog already did.
fn emit(line: &str) -> bool {
    if PRINTED.swap(true, Ordering::SeqCst) {
        return false;
    }
    println!("{line}");
    true
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Idle => "idle",
        Mode::Fanout => "fanout",
        Mode::Echo => "echo",
        Mode::Drain => "drain",
        Mode::DrainResume => "drain-resume",
        Mode::Subscribe => "subscribe",
        Mode::Publish => "publish",
        Mode::Upgrade => "upgrade",
        Mode::Channels => "channels",
    }
}

/// The line for a run that produced no figures.
fn failed_line(args: &Args) -> String {
    let mut line = report::Line::new(mode_name(args.mode), args.label.as_deref());
    line.field("errors", 1).field("valid", false);
    line.finish()
}

/// What every mode gets: its arguments and its deadlines.
pub struct Run {
    pub args: Args,
    pub t0: Instant,
    /// Connecting must be done by then.
    pub setup_deadline: Instant,
    /// The overall safety timeout: past it the run prints what it has, as
    /// invalid.
    pub safety: Instant,
}

/// A finished run: the JSON line and whether the run is valid.
pub struct Outcome {
    pub line: String,
    pub valid: bool,
}

impl Outcome {
    /// Ends a run's line with its error count and its verdict.
    pub fn new(mut line: report::Line, errors: u64, valid: bool) -> Outcome {
        line.field("errors", errors).field("valid", valid);
        Outcome {
            line: line.finish(),
            valid,
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wsload: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let nofile = sys::raise_nofile();
    let needed = args.conns as u64 + 16;
    if nofile < needed {
        eprintln!(
            "wsload: {} connections need about {needed} descriptors; RLIMIT_NOFILE allows {nofile}",
            args.conns
        );
        return ExitCode::from(2);
    }
    let t0 = Instant::now();
    let measure = match args.mode {
        Mode::Idle => 1.0 + args.idle_secs,
        Mode::Fanout | Mode::Echo | Mode::Drain | Mode::Publish => args.duration,
        Mode::Subscribe => args.duration + subscribe::LINGER.as_secs_f64(),
        Mode::Channels => args.duration + channels::SETTLE.as_secs_f64(),
        Mode::DrainResume | Mode::Upgrade => {
            args.before + args.duration + args.after + CATCH_UP.as_secs_f64()
        }
    };
    let safety = t0
        + SETUP
        + Duration::from_secs_f64(measure)
        + STRAGGLERS
        + CLOSE_GRACE
        + Duration::from_secs(1);
    let fallback = failed_line(&args);
    std::thread::spawn(move || {
        std::thread::sleep(safety.saturating_duration_since(Instant::now()) + WATCHDOG_GRACE);
        if emit(&fallback) {
            eprintln!("wsload: watchdog: the run overran its safety timeout; exiting");
            std::process::exit(1);
        }
    });
    let run = Run {
        args,
        t0,
        setup_deadline: t0 + SETUP,
        safety,
    };
    let result = match run.args.mode {
        Mode::Idle => idle::run(&run),
        Mode::Fanout => fanout::run(&run),
        Mode::Echo => echo::run(&run),
        Mode::Drain => drain::run(&run),
        Mode::DrainResume => drain_resume::run(&run),
        Mode::Subscribe => subscribe::run(&run),
        Mode::Publish => publish::run(&run),
        Mode::Upgrade => upgrade::run(&run),
        Mode::Channels => channels::run(&run),
    };
    match result {
        Ok(out) => {
            let printed = emit(&out.line);
            if out.valid && printed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("wsload: {e}");
            emit(&failed_line(&run.args));
            ExitCode::from(1)
        }
    }
}
