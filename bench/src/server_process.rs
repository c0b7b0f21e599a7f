//! A wsnotify process that wsload starts itself (the old and the new server
//! of `upgrade`): its log is read by a thread of its own, so the server
//! never waits on a full pipe, and kept (in a file if asked; its last
//! notable lines in memory); its `listening on` line gives the port and
//! the instance; it is stopped by its pid at the end, and dies with wsload
//! should wsload be killed (`PR_SET_PDEATHSIG`).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log lines kept in memory, for the tail printed when a run fails.
const TAIL: usize = 40;
/// Lines of every client and publication: in the log file, not in the
/// tail, which would hold nothing else.
const ROUTINE: [&str; 3] = [
    "client connected",
    "client disconnected",
    "notification published",
];

/// What the log said so far.
#[derive(Default)]
struct Log {
    /// The port and instance of the `listening on` line.
    listening: Option<(u16, String)>,
    tail: VecDeque<String>,
}

pub struct ServerProcess {
    pub name: &'static str,
    child: Child,
    log: Arc<Mutex<Log>>,
    status: Option<ExitStatus>,
}

impl ServerProcess {
    /// Starts `binary args`, its stderr read line by line and appended to
    /// `log_file` if given.
    pub fn spawn(
        name: &'static str,
        binary: &str,
        args: &[String],
        log_file: Option<std::path::PathBuf>,
    ) -> std::io::Result<ServerProcess> {
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and the closure allocates
        // nothing, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut file = match log_file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => None,
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    // A log that cannot be written costs the run nothing.
                    let _ = writeln!(f, "{line}");
                }
                let mut log = sink.lock().expect("log lock");
                if log.listening.is_none() {
                    log.listening = parse_listening(&line);
                }
                if ROUTINE.iter().any(|r| line.contains(r)) {
                    continue;
                }
                if log.tail.len() == TAIL {
                    log.tail.pop_front();
                }
                log.tail.push_back(line);
            }
        });
        Ok(ServerProcess {
            name,
            child,
            log,
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port and instance of its `listening on` line, once logged.
    pub fn listening(&self) -> Option<(u16, String)> {
        self.log.lock().expect("log lock").listening.clone()
    }

    /// Its exit status once it has exited (reaped here).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Prints the last lines of its log on stderr.
    pub fn print_tail(&self) {
        let log = self.log.lock().expect("log lock");
        eprintln!(
            "wsload: last {} log lines of the {} server:",
            log.tail.len(),
            self.name
        );
        for line in &log.tail {
            eprintln!("  {line}");
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; its exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.exited().is_some() {
            return self.status;
        }
        // Already gone if this fails; the wait below says so.
        let _ = crate::sys::terminate(self.pid());
        let end = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The port and instance of a `listening on http://HOST:PORT ...
/// instance=ID` line.
fn parse_listening(line: &str) -> Option<(u16, String)> {
    let rest = &line[line.find("listening on http://")? + "listening on http://".len()..];
    let addr = rest.split_whitespace().next()?;
    let port = addr.rsplit(':').next()?.parse().ok()?;
    let instance = rest
        .split_whitespace()
        .find_map(|field| field.strip_prefix("instance="))
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    Some((port, instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        let line = "2026-12-06T19:59:49.411Z INFO  listening on http://127.0.0.1:44939 workers=1 instance=402eeb02 pid=30912 listener=handed_over sockets=1";
        assert_eq!(parse_listening(line), Some((44939, "402eeb02".into())));
        assert_eq!(
            parse_listening("INFO listening on http://[::1]:80 instance=ab"),
            Some((80, "ab".into()))
        );
        assert_eq!(parse_listening("INFO waiting for a hand-over"), None);
    }
}
