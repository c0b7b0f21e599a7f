//! wsnotify: a WebSocket notification server.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use wsnotify::config::{self, Command};
use wsnotify::shared::Shared;
use wsnotify::{log, net, obs};

fn main() -> ExitCode {
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
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!(Error, e);
            ExitCode::from(1)
        }
    }
}

/// Binds every worker's listener, then runs the workers until they finish.
fn serve(config: config::Config) -> Result<(), String> {
    let workers = config.workers;
    let mut addr = SocketAddr::new(config.host, config.port);
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listener = net::listen::bind(addr, workers > 1)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        // With --port 0 the first bind picks the port; the others join it.
        addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        listeners.push(listener);
    }
    if config.redis.is_some() {
        log!(
            Warn,
            "Redis fanout is not available in this build yet; running as a single instance"
        );
    }
    let shared = Arc::new(Shared::new(config));
    let mut handles = Vec::with_capacity(workers);
    for (id, listener) in listeners.into_iter().enumerate() {
        let worker = net::worker::Worker::new(id, Arc::clone(&shared), listener)
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        let handle = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || worker.run())
            .map_err(|e| format!("cannot start worker {id}: {e}"))?;
        handles.push(handle);
    }
    obs::log::emit(
        config::LogLevel::Info,
        &format!("listening on http://{addr}"),
        &[("workers", &workers), ("instance", &shared.instance)],
    );
    for (id, handle) in handles.into_iter().enumerate() {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("worker {id} failed: {e}")),
            Err(_) => return Err(format!("worker {id} panicked")),
        }
    }
    Ok(())
}
