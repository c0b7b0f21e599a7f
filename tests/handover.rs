//! Upgrading on one host: a new server takes the listening socket (through
//! `--handover`, or shared by socket activation) while the old one drains.
//! Real processes, real sockets, real signals. Run with `--nocapture` to see
//! the counts.

mod support;

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_wsnotify");
/// Long enough that every reconnect hint (at most 10 s) falls before it.
const DRAIN: &str = "20s";
/// How often the churning client opens a new connection.
const CHURN_EVERY: Duration = Duration::from_millis(5);
/// Clients connected to the old server before the upgrade.
const RESIDENTS: usize = 4;
/// Churn connections welcomed by the old server before the upgrade, and
/// by the new one once the old one has exited.
const CHURN_AROUND: u64 = 50;

/// A directory of its own for a test's hand-over socket, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("wsnotify-handover-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_handover(path: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--notify-interval",
        "0",
        "--drain-timeout",
        DRAIN,
        "--handover",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Starts the server as systemd would with one socket.
fn start_activated(socket: &impl AsRawFd, extra: &[&str]) -> Server {
    let mut command = activated(&[socket.as_raw_fd()]);
    command
        .args(["--notify-interval", "0", "--drain-timeout", DRAIN])
        .args(extra);
    Server::spawn(command)
}

/// The binary with `fds` passed as systemd passes them: at 3, 4, ...,
/// `LISTEN_FDS` counting them and `LISTEN_PID` naming the server itself
/// (the shell's pid, which `exec` keeps).
fn activated(fds: &[i32]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "export LISTEN_PID=$$ LISTEN_FDS={}; exec \"$0\" \"$@\"",
            fds.len()
        ))
        .arg(BIN);
    let fds = fds.to_vec();
    // SAFETY: fcntl, dup2 and close are async-signal-safe, as pre_exec
    // requires, and the closure allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Out of the way first, so no source is overwritten by an
            // earlier target.
            for (i, &fd) in fds.iter().enumerate() {
                if libc::fcntl(fd, libc::F_DUPFD, 100 + i as i32) != 100 + i as i32 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for i in 0..fds.len() as i32 {
                if libc::dup2(100 + i, 3 + i) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(100 + i);
            }
            Ok(())
        });
    }
    command
}

/// The instance named in the server's `listening on` line.
fn instance(server: &Server) -> String {
    let lines = server.log_lines();
    let line = lines
        .iter()
        .find(|l| l.contains("listening on"))
        .expect("listening line");
    let at = line.find("instance=").expect("instance field") + "instance=".len();
    line[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, _, body) = http(addr, "GET", "/status", &[], b"");
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("status JSON")
}

/// Reads text messages until one of `kind`; None on any error first.
fn wait_for(client: &mut Client, kind: &str) -> Option<serde_json::Value> {
    loop {
        match client.read().ok()? {
            tungstenite::Message::Text(text) => {
                let message: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
                if message["type"] == kind {
                    return Some(message);
                }
            }
            tungstenite::Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn instance_of(welcome: &serde_json::Value) -> String {
    let id = welcome["client_id"].as_str().expect("client_id");
    id.split('-').next().unwrap_or_default().to_owned()
}

/// What one new connection met.
enum Outcome {
    Welcomed {
        instance: String,
        worker: u64,
    },
    Refused,
    Reset,
    /// The connection ended before an answer.
    Closed,
    Unavailable,
    Other(String),
}

fn attempt(addr: SocketAddr) -> Outcome {
    let stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::Refused,
        Err(e) => return Outcome::Other(format!("connect: {e}")),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let io_outcome = |e: &std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionReset => Outcome::Reset,
        std::io::ErrorKind::UnexpectedEof => Outcome::Closed,
        _ => Outcome::Other(e.to_string()),
    };
    let mut client = match tungstenite::client(format!("ws://{addr}/ws"), stream) {
        Ok((client, _)) => client,
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            return match response.status().as_u16() {
                503 => Outcome::Unavailable,
                code => Outcome::Other(format!("HTTP {code}")),
            }
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Io(e))) => {
            return io_outcome(&e)
        }
        Err(e) => return Outcome::Other(format!("handshake: {e}")),
    };
    let welcome = loop {
        match client.read() {
            Ok(tungstenite::Message::Text(text)) => {
                break serde_json::from_str::<serde_json::Value>(text.as_str()).unwrap()
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) => return io_outcome(&e),
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(_),
            ) => return Outcome::Closed,
            Err(e) => return Outcome::Other(format!("read: {e}")),
        }
    };
    let _ = client.close(None);
    let _ = client.flush();
    Outcome::Welcomed {
        instance: instance_of(&welcome),
        worker: welcome["worker"].as_u64().unwrap_or(u64::MAX),
    }
}

#[derive(Debug, Default)]
struct Tally {
    attempted: u64,
    refused: u64,
    reset: u64,
    closed: u64,
    unavailable: u64,
    other: Vec<String>,
    /// Welcomes per instance and worker.
    welcomed: HashMap<(String, u64), u64>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome) {
        self.attempted += 1;
        match outcome {
            Outcome::Welcomed { instance, worker } => {
                *self.welcomed.entry((instance, worker)).or_default() += 1
            }
            Outcome::Refused => self.refused += 1,
            Outcome::Reset => self.reset += 1,
            Outcome::Closed => self.closed += 1,
            Outcome::Unavailable => self.unavailable += 1,
            Outcome::Other(e) => self.other.push(e),
        }
    }

    fn welcomed_by(&self, instance: &str) -> u64 {
        self.welcomed
            .iter()
            .filter(|((i, _), _)| i == instance)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A client that opens a new `/ws` connection every few milliseconds until
/// stopped.
struct Churn {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    thread: JoinHandle<()>,
}

impl Churn {
    fn start(addr: SocketAddr) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (flag, counts) = (Arc::clone(&stop), Arc::clone(&tally));
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let next = Instant::now() + CHURN_EVERY;
                let outcome = attempt(addr);
                counts.lock().unwrap().add(outcome);
                // Pacing, not a wait: the churn's rate of new connections.
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        });
        Churn {
            stop,
            tally,
            thread,
        }
    }

    /// Waits until `instance` has welcomed `n` more of the churn's
    /// connections.
    fn wait_welcomed_by(&self, instance: &str, n: u64) {
        let before = self.tally.lock().unwrap().welcomed_by(instance);
        wait_until(
            &format!("{n} more churn connections welcomed by {instance}"),
            Duration::from_secs(10),
            || self.tally.lock().unwrap().welcomed_by(instance) >= before + n,
        );
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("churn thread");
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// What a client connected before the upgrade went through.
struct Resident {
    first: String,
    notice: serde_json::Value,
    second: String,
}

/// Connects, reports its welcome, waits for the shutdown notice, honours
/// its reconnect hint, closes, reconnects and reports where it landed.
fn resident(addr: SocketAddr, ready: mpsc::Sender<()>) -> JoinHandle<Option<Resident>> {
    std::thread::spawn(move || {
        let connect = || {
            let stream = TcpStream::connect(addr).ok()?;
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .ok()?;
            tungstenite::client(format!("ws://{addr}/ws"), stream)
                .ok()
                .map(|(c, _)| c)
        };
        let mut client = connect()?;
        let first = instance_of(&wait_for(&mut client, "welcome")?);
        let _ = ready.send(());
        let notice = wait_for(&mut client, "shutdown_notice")?;
        // Pacing, not a wait: the client honours its reconnect hint, which
        // spreads the residents' reconnects as the server asked.
        std::thread::sleep(Duration::from_millis(
            notice["reconnect_after_ms"].as_u64()?,
        ));
        let _ = client.close(None);
        while client.read().is_ok() {}
        let mut again = connect()?;
        let second = instance_of(&wait_for(&mut again, "welcome")?);
        let _ = again.close(None);
        Some(Resident {
            first,
            notice,
            second,
        })
    })
}

fn start_residents(addr: SocketAddr) -> Vec<JoinHandle<Option<Resident>>> {
    let (ready, welcomed) = mpsc::channel();
    let residents: Vec<_> = (0..RESIDENTS)
        .map(|_| resident(addr, ready.clone()))
        .collect();
    for _ in 0..RESIDENTS {
        welcomed
            .recv_timeout(Duration::from_secs(5))
            .expect("a resident client's welcome");
    }
    residents
}

/// Every resident was on the old server, got its notice, and came back to
/// the new one.
fn check_residents(residents: Vec<JoinHandle<Option<Resident>>>, old: &str, new: &str) {
    for resident in residents {
        let r = resident
            .join()
            .expect("resident thread")
            .expect("a resident got its notice and reconnected");
        assert_eq!(r.first, old);
        assert_eq!(r.notice["reconnect"], true, "{}", r.notice);
        assert!(r.notice["reconnect_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms < 10_000));
        assert_eq!(r.second, new, "reconnected to the new server");
    }
}

/// The end of an upgrade that started at `since`: the residents came back
/// to the new server, the old one exited 0 once they had left, and the
/// churning client met no failure and reached the new server.
fn finish_upgrade(
    residents: Vec<JoinHandle<Option<Resident>>>,
    old: &mut Server,
    new: &Server,
    churn: Churn,
    since: Instant,
    label: &str,
) {
    let new_id = instance(new);
    check_residents(residents, &instance(old), &new_id);
    exits_cleanly_after_its_clients(old, "the old server");
    eprintln!(
        "{label}: the old server exited {:?} after the upgrade began",
        since.elapsed()
    );
    // The churn goes on against the new server alone for a while.
    churn.wait_welcomed_by(&new_id, CHURN_AROUND);
    let tally = churn.finish();
    check_no_failure(&tally, label);
}

fn check_no_failure(tally: &Tally, label: &str) {
    eprintln!(
        "{label}: connects attempted {}, refused {}, reset {}, closed unanswered {}, 503 {}, other {:?}; welcomed by (instance, worker): {:?}",
        tally.attempted, tally.refused, tally.reset, tally.closed, tally.unavailable, tally.other, tally.welcomed
    );
    assert!(tally.attempted >= 100, "too few attempts: {tally:?}");
    assert_eq!(
        (tally.refused, tally.reset, tally.closed, tally.unavailable),
        (0, 0, 0, 0),
        "{tally:?}"
    );
    assert!(tally.other.is_empty(), "{tally:?}");
}

fn exits_cleanly_after_its_clients(server: &mut Server, label: &str) {
    let status = server
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{label} did not exit; log: {:?}", server.log_lines()));
    assert_eq!(status.code(), Some(0), "{label}: {:?}", server.log_lines());
    let lines = server.log_lines();
    assert!(
        !lines.iter().any(|l| l.contains("drain deadline reached")),
        "{label} waited for its deadline: {lines:?}"
    );
}

#[test]
fn handover_upgrade_refuses_nobody() {
    let scratch = Scratch::new("upgrade");
    let path = scratch.path("handover.sock");
    let mut old = start_handover(&path, &["--workers", "2"]);
    let meta = std::fs::symlink_metadata(&path).expect("the hand-over socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(status(old.addr)["listener"], "bound");
    let residents = start_residents(old.addr);
    let churn = Churn::start(old.addr);
    churn.wait_welcomed_by(&instance(&old), CHURN_AROUND);

    let started = Instant::now();
    let new = start_handover(&path, &["--workers", "2"]);
    let listening = started.elapsed();
    assert_eq!(new.addr, old.addr, "the new server serves the same port");
    assert!(
        old.wait_for_log("handed over: draining", Duration::from_secs(5)),
        "{:?}",
        old.log_lines()
    );
    let handed_over = started.elapsed();
    eprintln!(
        "hand-over: new server listening after {listening:?}, old server draining after {handed_over:?}"
    );
    finish_upgrade(residents, &mut old, &new, churn, started, "hand-over");
    let now = status(new.addr);
    assert_eq!(
        (now["pid"].as_u64(), now["listener"].as_str()),
        (Some(u64::from(new.child.id())), Some("handed_over"))
    );
    let old_log = old.log_lines().join("\n");
    let new_log = new.log_lines().join("\n");
    for (log, line) in [
        (&old_log, "sent the listening sockets to a new server"),
        (
            &new_log,
            "received the listening sockets of the running server",
        ),
    ] {
        let found = log.lines().find(|l| l.contains(line)).expect(line);
        assert!(
            found.contains("fds=") && found.contains(&new.addr.to_string()),
            "{found}"
        );
    }
}

#[test]
fn socket_activation_upgrade_refuses_nobody() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(1024).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();

    let mut old = start_activated(&socket, &["--workers", "2"]);
    assert_eq!(
        old.addr, addr,
        "the listening line names the inherited socket"
    );
    assert!(
        old.wait_for_log("listener=inherited", Duration::from_secs(1)),
        "{:?}",
        old.log_lines()
    );
    let residents = start_residents(addr);
    let churn = Churn::start(addr);
    churn.wait_welcomed_by(&instance(&old), CHURN_AROUND);

    let new = start_activated(&socket, &["--workers", "2"]);
    assert_eq!(new.addr, addr);
    let stopped = Instant::now();
    old.signal(SIGTERM);
    finish_upgrade(
        residents,
        &mut old,
        &new,
        churn,
        stopped,
        "socket activation",
    );
    assert!(old
        .log_lines()
        .iter()
        .any(|l| l.contains("stopped accepting, new clients go to the process that shares")));
    let now = status(addr);
    assert_eq!(
        (now["pid"].as_u64(), now["listener"].as_str()),
        (Some(u64::from(new.child.id())), Some("inherited"))
    );
}

/// Runs a command that should fail, up to 10 s; its status and stderr.
fn run_to_exit(mut command: Command) -> (ExitStatus, String) {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let Some(status) = poll_until(Duration::from_secs(10), || child.try_wait().expect("wait"))
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the command did not exit: {:?}", reader.join());
    };
    (status, reader.join().unwrap_or_default())
}

/// The running server still answers, as itself, and still owns PATH.
fn still_serving(server: &Server, resident: &mut Client, path: &Path) {
    let now = status(server.addr);
    assert_eq!(
        (now["pid"].as_u64(), now["state"].as_str()),
        (Some(u64::from(server.child.id())), Some("running"))
    );
    resident
        .send(tungstenite::Message::text(r#"{"type":"ping"}"#))
        .unwrap();
    assert!(wait_for(resident, "pong").is_some());
    let mut fresh = connect(server, "/ws");
    assert_eq!(instance_of(&next_json(&mut fresh)), instance(server));
    assert!(std::fs::symlink_metadata(path)
        .unwrap()
        .file_type()
        .is_socket());
}

fn as_nobody(path: &Path) -> Command {
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["--host", "127.0.0.1", "--port", "0", "--handover"])
        .arg(path);
    command
}

#[test]
fn refused_handover_leaves_the_running_server_untouched() {
    let scratch = Scratch::new("refused");
    let path = scratch.path("handover.sock");
    let server = start_handover(&path, &[]);
    let mut resident = connect(&server, "/ws");
    next_json(&mut resident);

    // PATH names a regular file: never replaced, never treated as stale.
    let file = scratch.path("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["--host", "127.0.0.1", "--port", "0", "--handover"])
        .arg(&file);
    let (code, log) = run_to_exit(command);
    assert_eq!(code.code(), Some(1), "{log}");
    assert!(log.contains("exists and is not a socket"), "{log}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    still_serving(&server, &mut resident, &path);

    let am_root = unsafe { libc::geteuid() } == 0;
    if !am_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("refused hand-over: another user's attempts skipped (needs root and setpriv)");
        return;
    }
    // Another user: the socket's mode (0600) keeps it out...
    let (code, log) = run_to_exit(as_nobody(&path));
    assert_eq!(code.code(), Some(1), "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    still_serving(&server, &mut resident, &path);

    // ...and with the mode opened up, SO_PEERCRED does.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, log) = run_to_exit(as_nobody(&path));
    assert_eq!(code.code(), Some(1), "{log}");
    assert!(
        log.contains("it refused: peer uid 65534 is not this server's uid 0"),
        "{log}"
    );
    assert!(
        server.wait_for_log("hand-over refused: peer uid 65534", Duration::from_secs(5)),
        "{:?}",
        server.log_lines()
    );
    still_serving(&server, &mut resident, &path);
    eprintln!(
        "refused hand-over: regular file, mode 0600 and SO_PEERCRED all left the server serving"
    );
}

#[test]
fn a_new_server_that_fails_before_serving_leaves_the_old_one_serving() {
    let scratch = Scratch::new("aborted");
    let path = scratch.path("handover.sock");
    let mut old = start_handover(&path, &[]);
    let mut resident = connect(&old, "/ws");
    next_json(&mut resident);

    // It takes the sockets the way a new server does, then goes away
    // without saying it serves.
    let taken = wsnotify::net::handover::take_over(&path)
        .expect("the exchange")
        .expect("a running server answered");
    assert_eq!(taken.fds.len(), 1);
    drop(taken);
    assert!(
        old.wait_for_log("closed before confirming it serves", Duration::from_secs(5)),
        "{:?}",
        old.log_lines()
    );
    still_serving(&old, &mut resident, &path);
    let mode = std::fs::symlink_metadata(&path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // PATH still leads to it: a real hand-over works afterwards.
    let new = start_handover(&path, &[]);
    assert!(old.wait_for_log("handed over: draining", Duration::from_secs(5)));
    let notice = wait_for(&mut resident, "shutdown_notice").expect("notice");
    assert_eq!(notice["reconnect"], true);
    let _ = resident.close(None);
    while resident.read().is_ok() {}
    exits_cleanly_after_its_clients(&mut old, "the old server");
    assert_eq!(
        status(new.addr)["pid"].as_u64(),
        Some(u64::from(new.child.id()))
    );
}

#[test]
fn a_second_handover_while_the_first_old_server_still_drains() {
    let scratch = Scratch::new("chain");
    let path = scratch.path("handover.sock");
    let mut first = start_handover(&path, &[]);
    let mut stays = connect(&first, "/ws");
    next_json(&mut stays);

    let mut second = start_handover(&path, &[]);
    assert!(first.wait_for_log("handed over: draining", Duration::from_secs(5)));
    wait_for(&mut stays, "shutdown_notice").expect("notice");
    let third = start_handover(&path, &[]);
    assert!(second.wait_for_log("handed over: draining", Duration::from_secs(5)));
    // The second had no clients: it is gone; the first still drains.
    exits_cleanly_after_its_clients(&mut second, "the second server");
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first still drains"
    );
    let mut fresh = connect(&third, "/ws");
    assert_eq!(instance_of(&next_json(&mut fresh)), instance(&third));
    assert_eq!(
        status(third.addr)["pid"].as_u64(),
        Some(u64::from(third.child.id()))
    );

    stays
        .send(tungstenite::Message::text(r#"{"type":"ping"}"#))
        .unwrap();
    assert!(
        wait_for(&mut stays, "pong").is_some(),
        "the draining server still serves"
    );
    let _ = stays.close(None);
    while stays.read().is_ok() {}
    exits_cleanly_after_its_clients(&mut first, "the first server");
}

#[test]
fn an_inherited_descriptor_that_is_not_a_listening_tcp_socket_exits_2() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let unbound = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    for (fd, why) in [
        (udp.as_raw_fd(), "not SOCK_STREAM"),
        (unbound.as_raw_fd(), "not listening"),
    ] {
        let mut command = activated(&[fd]);
        command.args(["--host", "127.0.0.1", "--port", "0"]);
        let (code, log) = run_to_exit(command);
        assert_eq!(code.code(), Some(2), "{log}");
        assert!(
            log.contains("inherited descriptor 3 is not a listening TCP socket")
                && log.contains(why),
            "{log}"
        );
        assert_eq!(log.lines().count(), 1, "{log}");
    }
}

#[test]
fn a_connection_accepted_before_the_handover_is_served_by_the_old_server() {
    let scratch = Scratch::new("accepted");
    let path = scratch.path("handover.sock");
    let mut old = start_handover(&path, &[]);
    // Connected (and accepted: only the old server exists) but silent.
    let early = TcpStream::connect(old.addr).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // A request answered after the connect shows the worker has run its
    // accept loop since.
    assert_eq!(
        status(old.addr)["pid"].as_u64(),
        Some(u64::from(old.child.id()))
    );
    let new = start_handover(&path, &[]);
    assert!(old.wait_for_log("handed over: draining", Duration::from_secs(5)));
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old server waits for the connection it accepted"
    );

    let (mut client, _) = tungstenite::client(format!("ws://{}/ws", old.addr), early)
        .expect("the upgrade is served, not refused");
    let welcome = wait_for(&mut client, "welcome").expect("welcome");
    assert_eq!(instance_of(&welcome), instance(&old));
    let notice = wait_for(&mut client, "shutdown_notice").expect("its notice, after the welcome");
    assert_eq!(notice["reconnect"], true);
    let _ = client.close(None);
    while client.read().is_ok() {}
    exits_cleanly_after_its_clients(&mut old, "the old server");
    let mut fresh = connect(&new, "/ws");
    assert_eq!(instance_of(&next_json(&mut fresh)), instance(&new));
}

#[test]
fn every_inherited_socket_is_served() {
    let sockets: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr().unwrap()).collect();
    let fds: Vec<i32> = sockets.iter().map(AsRawFd::as_raw_fd).collect();
    let mut command = activated(&fds);
    command.args(["--notify-interval", "0", "--workers", "2"]);
    let server = Server::spawn(command);
    assert_eq!(server.addr, addrs[0]);
    let line = server
        .log_lines()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .unwrap();
    assert!(
        line.contains("listener=inherited sockets=2")
            && line.contains(&format!("also=http://{}", addrs[1])),
        "{line}"
    );
    let mut workers = std::collections::HashSet::new();
    for addr in &addrs {
        for _ in 0..40 {
            match attempt(*addr) {
                Outcome::Welcomed { worker, .. } => workers.insert(worker),
                _ => panic!("a connection to {addr} was not welcomed"),
            };
        }
    }
    eprintln!("two inherited sockets, two workers: welcomes came from workers {workers:?}");
}

#[test]
fn socket_activation_for_another_process_is_ignored() {
    let server = Server::start_with_env(&[], &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    assert!(
        server.wait_for_log("listener=bound", Duration::from_secs(1)),
        "{:?}",
        server.log_lines()
    );
}

/// A server started by scripts/upgrade.sh runs detached: not our child, so
/// it is killed by pid at the end, whatever happens.
struct Detached(Vec<i32>);

impl Drop for Detached {
    fn drop(&mut self) {
        for &pid in &self.0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Runs scripts/upgrade.sh with `args`, logging to `log`.
fn run_upgrade_script(args: &[&str], log: &Path) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/upgrade.sh");
    Command::new(script)
        .args(args)
        .env("UPGRADE_LOG", log)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/upgrade.sh")
}

fn upgrade_script(path: &Path, log: &Path) -> (i32, String) {
    let path = path.to_str().unwrap();
    let args = [
        "--handover",
        path,
        BIN,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--notify-interval",
        "0",
    ];
    let output = run_upgrade_script(&args, log);
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let pid = out
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}, stderr {:?}", output.stderr));
    (pid, out)
}

fn alive(pid: i32) -> bool {
    // A reaped or zombie process is gone for this purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn upgrade_script_without_systemd() {
    let scratch = Scratch::new("script");
    // The socket's directory does not exist yet: the script makes it, for
    // this user alone.
    let dir = scratch.path("run/wsnotify");
    let path = dir.join("handover.sock");
    let log = scratch.path("wsnotify.log");
    let mut started = Detached(Vec::new());

    let (first, out) = upgrade_script(&path, &log);
    started.0.push(first);
    assert!(out.contains("so it bound the port"), "{out}");
    assert!(out.contains("created"), "{out}");
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    let (second, out) = upgrade_script(&path, &log);
    started.0.push(second);
    assert!(
        out.contains("with the listening sockets of the server that ran before"),
        "{out}"
    );
    wait_until(
        "exit of the first server, without clients, once handed over",
        Duration::from_secs(5),
        || !alive(first),
    );
    assert!(alive(second));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("to_pid={second}")), "{text}");
    eprintln!("scripts/upgrade.sh --handover: {}", out.trim());
}

#[test]
fn upgrade_script_failures_end_with_a_fail_line() {
    let scratch = Scratch::new("script-fails");
    let path = scratch.path("handover.sock");
    let path = path.to_str().unwrap();
    let log = scratch.path("wsnotify.log");
    let running = Server::start(&["--workers", "2", "--notify-interval", "0"]);
    let port = running.addr.port().to_string();
    let not_a_binary = scratch.0.to_str().unwrap();
    let unreachable = "/proc/self/nowhere/handover.sock";
    let cases: [(&[&str], i32, &str); 5] = [
        (&["--handover", path], 2, "usage"),
        (&["--bogus"], 2, "usage"),
        (
            &["--handover", path, not_a_binary],
            1,
            "is not an executable",
        ),
        (&["--handover", unreachable, BIN], 1, "cannot create"),
        (
            &[
                "--handover",
                path,
                BIN,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
            ],
            1,
            "exited before listening",
        ),
    ];
    for (args, code, why) in cases {
        let out = run_upgrade_script(args, &log);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(
            last.starts_with("upgrade: FAIL: ") && last.contains(why),
            "{args:?}: {stderr}"
        );
    }
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("port {port} is taken")),
        "the server says why in the log"
    );
    let (code, _, _) = http(running.addr, "GET", "/health", &[], b"");
    assert_eq!(code, 200, "the running server serves on");
}

#[test]
fn a_stale_handover_socket_is_replaced() {
    let scratch = Scratch::new("stale");
    let path = scratch.path("handover.sock");
    // A server that stopped leaves its socket file behind, with nobody
    // listening on it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let server = start_handover(&path, &[]);
    assert!(
        server.wait_for_log("removed a stale hand-over socket", Duration::from_secs(1)),
        "{:?}",
        server.log_lines()
    );
    assert_eq!(status(server.addr)["listener"], "bound");
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        std::os::unix::net::UnixStream::connect(&path).is_ok(),
        "it listens there now"
    );
}

/// Publishes `message` to everyone at `addr`; the notification's id.
fn broadcast_at(addr: SocketAddr, message: &str) -> u64 {
    let body = format!(r#"{{"message":"{message}"}}"#);
    let (code, _, answer) = http(addr, "POST", "/broadcast", &[], body.as_bytes());
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    answer["id"].as_u64().unwrap()
}

/// The next message for everyone a client gets: (offset, message).
fn next_in_stream(client: &mut Client) -> (u64, String) {
    loop {
        let m = next_json(client);
        if m["type"] == "notification" || m["type"] == "chat" {
            let offset = m["offset"].as_u64().expect("an offset");
            return (offset, m["message"].as_str().unwrap().to_owned());
        }
    }
}

#[test]
fn socket_activation_with_handover_passes_the_stream() {
    let dir = Scratch::new("activated-stream");
    let path = dir.path("handover.sock");
    let path = path.to_str().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(1024).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();

    let old = start_activated(&socket, &["--handover", path]);
    let mut resident = connect(&old, "/ws");
    let welcome = next_of_type(&mut resident, "welcome");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    broadcast_at(addr, "one");
    broadcast_at(addr, "two");
    assert_eq!(next_in_stream(&mut resident), (1, "one".to_owned()));
    assert_eq!(next_in_stream(&mut resident), (2, "two".to_owned()));

    let new = start_activated(&socket, &["--handover", path]);
    assert!(
        new.wait_for_log("continuing its stream", Duration::from_secs(5)),
        "{:?}",
        new.log_lines()
    );
    assert_eq!(
        next_of_type(&mut resident, "shutdown_notice")["type"],
        "shutdown_notice"
    );
    // The old process stopped accepting: this goes to the new one, which
    // numbers it after the old one's two, and the old one's client gets it.
    broadcast_at(addr, "three");
    assert_eq!(next_in_stream(&mut resident), (3, "three".to_owned()));
    let mut fresh = connect(&new, &format!("/ws?since=1&epoch={epoch}"));
    let resumed = next_of_type(&mut fresh, "welcome");
    assert_eq!(instance_of(&resumed), instance(&new));
    assert_eq!(
        (
            resumed["epoch"].as_str(),
            resumed["recovered"].as_bool(),
            resumed["replayed"].as_u64()
        ),
        (Some(epoch.as_str()), Some(true), Some(2)),
        "{resumed}"
    );
    assert_eq!(next_in_stream(&mut fresh), (2, "two".to_owned()));
    assert_eq!(next_in_stream(&mut fresh), (3, "three".to_owned()));
}

#[test]
fn a_peer_that_drips_delays_an_upgrade_by_two_seconds_at_most() {
    let dir = Scratch::new("drip");
    let path = dir.path("handover.sock");
    let old = start_handover(&path, &[]);
    let dripping = Arc::new(AtomicBool::new(true));
    let drip = {
        let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let dripping = Arc::clone(&dripping);
        std::thread::spawn(move || {
            use std::io::Write;
            for byte in b"wsnotify-handover 2 pid=1".iter().cycle() {
                if !dripping.load(Ordering::Relaxed) || peer.write_all(&[*byte]).is_err() {
                    return;
                }
                // The point of this peer: one byte at a time, never a line.
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // The dripping peer is first in the old server's queue of connections:
    // the new server waits behind it.
    let started = Instant::now();
    let new = start_handover(&path, &[]);
    let serving = started.elapsed();
    dripping.store(false, Ordering::Relaxed);
    drip.join().unwrap();
    assert_eq!(new.addr, old.addr);
    assert!(
        old.log_lines()
            .iter()
            .any(|l| l.contains("hand-over refused") && l.contains("within 2s")),
        "{:?}",
        old.log_lines()
    );
    // Two seconds for the dripping peer, and the new server's own start.
    assert!(serving < Duration::from_millis(3500), "{serving:?}");
}

#[test]
fn the_last_words_of_the_old_servers_last_client_reach_the_new_servers_clients() {
    let dir = Scratch::new("last-words");
    let path = dir.path("handover.sock");
    let mut old = start_handover(&path, &[]);
    let mut leaving = connect(&old, "/ws");
    next_of_type(&mut leaving, "welcome");
    let new = start_handover(&path, &[]);
    next_of_type(&mut leaving, "shutdown_notice");
    let mut staying = connect(&new, "/ws");
    next_of_type(&mut staying, "welcome");
    // A chat and a Close in one breath: the old server exits as soon as it
    // has read the Close, with the chat still on its way to the new one.
    leaving
        .send(tungstenite::Message::text("last words"))
        .unwrap();
    leaving.close(None).unwrap();
    let _ = leaving.flush();
    assert_eq!(
        old.wait_exit(Duration::from_secs(10)).map(|s| s.code()),
        Some(Some(0))
    );
    assert_eq!(next_in_stream(&mut staying), (1, "last words".to_owned()));
}

/// Publishers on keep-alive connections through an upgrade.
const PUBLISHERS: usize = 3;
/// How often each publisher posts.
const PUBLISH_EVERY: Duration = Duration::from_millis(2);
/// Answers each publisher gets from the old server before the upgrade, and
/// from the new one after the old one has exited.
const ANSWERS_AROUND: u64 = 20;

/// What one keep-alive publisher went through.
#[derive(Debug, Default)]
struct Publications {
    /// Answers, by the pid of the server that gave them.
    answered: HashMap<u32, u64>,
    /// Connections whose last answer carried `Connection: close`, by pid.
    closed_by: HashMap<u32, u64>,
    /// The pid each of its connections landed on, in order.
    landed: Vec<u32>,
    /// A request that got no answer, or an answer that was not a 200.
    failures: Vec<String>,
}

/// One HTTP response read off a keep-alive connection: status, head, body;
/// an error if the connection ends first.
fn try_read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = header_value(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, head, body))
}

/// A publisher that keeps one connection for as long as the server lets
/// it: it asks `/status` which process it reached, then posts a broadcast
/// every `PUBLISH_EVERY`, and connects again when an answer says
/// `Connection: close`.
fn keep_alive_publisher(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Publications>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut stream = match TcpStream::connect(addr) {
                Ok(stream) => stream,
                Err(e) => {
                    seen.lock().unwrap().failures.push(format!("connect: {e}"));
                    continue;
                }
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut pid = None;
            while !stop.load(Ordering::Relaxed) {
                let request = match pid {
                    None => "GET /status HTTP/1.1\r\nHost: t\r\n\r\n".to_owned(),
                    Some(_) => {
                        sent += 1;
                        let body = format!(r#"{{"message":"keep-alive {sent}"}}"#);
                        format!(
                            "POST /broadcast HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    }
                };
                let answer = std::io::Write::write_all(&mut stream, request.as_bytes())
                    .and_then(|()| try_read_response(&mut stream));
                let mut seen = seen.lock().unwrap();
                let (status, head, body) = match answer {
                    Ok(answer) => answer,
                    Err(e) => {
                        seen.failures.push(format!("no answer on pid {pid:?}: {e}"));
                        break;
                    }
                };
                if status != 200 {
                    seen.failures.push(format!("{status} on pid {pid:?}"));
                }
                let at = match pid {
                    Some(at) => at,
                    None => {
                        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let at = status["pid"].as_u64().unwrap() as u32;
                        seen.landed.push(at);
                        *pid.insert(at)
                    }
                };
                *seen.answered.entry(at).or_default() += 1;
                if header_value(&head, "connection").is_some_and(|v| v == "close") {
                    *seen.closed_by.entry(at).or_default() += 1;
                    break;
                }
                drop(seen);
                // Pacing, not a wait: the publisher's rate of requests.
                std::thread::sleep(PUBLISH_EVERY);
            }
        }
    })
}

#[test]
fn keep_alive_publishers_move_to_the_new_server_and_every_request_is_answered() {
    let scratch = Scratch::new("publishers");
    let path = scratch.path("handover.sock");
    let mut old = start_handover(&path, &["--workers", "2"]);
    let old_pid = old.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<_> = (0..PUBLISHERS)
        .map(|_| Arc::new(Mutex::new(Publications::default())))
        .collect();
    let threads: Vec<_> = seen
        .iter()
        .map(|s| keep_alive_publisher(old.addr, Arc::clone(&stop), Arc::clone(s)))
        .collect();
    let answered_by = |pid: u32| {
        let seen = &seen;
        move || {
            seen.iter().all(|s| {
                s.lock().unwrap().answered.get(&pid).copied().unwrap_or(0) >= ANSWERS_AROUND
            })
        }
    };
    wait_until(
        "answers from the old server",
        Duration::from_secs(10),
        answered_by(old_pid),
    );

    let new = start_handover(&path, &["--workers", "2"]);
    let new_pid = new.child.id();
    // No client holds the old server: it exits as soon as each publisher
    // has had its last answer there.
    exits_cleanly_after_its_clients(&mut old, "the old server");
    wait_until(
        "answers from the new server",
        Duration::from_secs(10),
        answered_by(new_pid),
    );
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("publisher thread");
    }
    for (i, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        eprintln!(
            "keep-alive publisher {i}: answers by the old server {}, by the new one {}, connections {}",
            seen.answered[&old_pid],
            seen.answered[&new_pid],
            seen.landed.len()
        );
        assert!(seen.failures.is_empty(), "{seen:?}");
        assert_eq!(
            seen.closed_by.get(&old_pid),
            Some(&1),
            "its connection to the old server ended with Connection: close: {seen:?}"
        );
        assert_eq!(seen.closed_by.get(&new_pid), None, "{seen:?}");
        assert_eq!(seen.landed[0], old_pid, "{seen:?}");
        assert!(
            seen.landed[1..].iter().all(|pid| *pid == new_pid),
            "every reconnect landed on the new server: {seen:?}"
        );
    }
}

/// A rollback: a new server of the release before (hand-over version 1,
/// played here by the test) takes the sockets of this release's server,
/// which drains with no link and exits 0 once its client has left.
#[test]
fn a_rollback_to_a_version_1_server_drains_the_old_one_without_a_link() {
    use std::io::{BufRead, BufReader, Write};
    let scratch = Scratch::new("rollback");
    let path = scratch.path("handover.sock");
    let mut old = start_handover(&path, &[]);
    let mut resident = connect(&old, "/ws");
    next_json(&mut resident);

    let me = std::process::id();
    let mut peer = std::os::unix::net::UnixStream::connect(&path).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    writeln!(peer, "wsnotify-handover 1 pid={me}").unwrap();
    // Read without a control buffer: the descriptors that come with the
    // line are discarded, which is all a test that serves nothing needs.
    let mut lines = BufReader::new(peer.try_clone().unwrap()).lines();
    let offer = lines.next().unwrap().unwrap();
    assert_eq!(
        offer,
        format!("wsnotify-handover 1 fds=1 pid={}", old.child.id())
    );
    writeln!(peer, "serving pid={me}").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "draining");
    assert!(lines.next().is_none(), "nothing follows in version 1");

    assert!(
        old.wait_for_log(
            "to an older release (hand-over version 1)",
            Duration::from_secs(5)
        ),
        "{:?}",
        old.log_lines()
    );
    assert!(old.wait_for_log("handed over: draining", Duration::from_secs(5)));
    let notice = wait_for(&mut resident, "shutdown_notice").expect("notice");
    assert_eq!(notice["reconnect"], true);
    let _ = resident.close(None);
    while resident.read().is_ok() {}
    exits_cleanly_after_its_clients(&mut old, "the old server");
    let lines = old.log_lines();
    assert!(
        !lines.iter().any(|l| l.contains("passing the stream")),
        "no stream for a version 1 server: {lines:?}"
    );
}
