//! wsnotify: a WebSocket notification server.

use std::process::ExitCode;
use std::time::Duration;

use wsnotify::config::{self, Command};
use wsnotify::net::supervisor::Outcome;
use wsnotify::{log, net, obs};

fn main() -> ExitCode {
    // Before the options: the probe must not trip over the server's variables.
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return wsnotify::healthcheck::main(std::env::args().skip(2));
    }
    let config = match config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", config::help_text());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("wsnotify {}", config::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wsnotify: {e}");
            return ExitCode::from(2);
        }
    };
    obs::log::init(config.log_format, config.log_level);
    // First, while no other thread runs: it edits the environment.
    let inherited = match net::listen_fds::take() {
        Ok(fds) => fds,
        Err(e) => {
            log!(Error, e);
            return ExitCode::from(2);
        }
    };
    if let Err(e) = obs::log::start_writer() {
        log!(Error, format!("cannot start the log writer thread: {e}"));
        return ExitCode::from(1);
    }
    let code = match net::supervisor::run(config, inherited) {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Failed(e)) | Err(e) => {
            log!(Error, e);
            ExitCode::from(1)
        }
    };
    obs::log_writer::flush(EXIT_FLUSH);
    code
}

/// How long the last log lines may take to reach stderr at exit: all the
/// time they need, unless nothing reads it.
const EXIT_FLUSH: Duration = Duration::from_secs(1);
