//! The stream across a one-host upgrade (`--handover`, no Redis): the
//! clients of the old server follow their `shutdown_notice` to the new one
//! and resume there with `since`/`epoch`, as /client.js does, while a
//! publisher posts over HTTP keep-alive and clients chat. Every client must
//! get every message exactly once, its offsets rising by one from its
//! first welcome to the final marker, and its resume recovered. Real
//! processes and sockets; every wait is on a condition. `--nocapture`
//! prints what each upgrade published and how the publisher fared.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const CLIENTS: usize = 20;
/// Long enough that no client meets the old server's deadline: the
/// reconnect hints spread over 10 s at most.
const DRAIN: &str = "30s";
/// The clients honour a fifth of their hint: they still leave one by one,
/// in the order the server drew, and a test takes 2 s instead of 10.
const HINT_DIVISOR: u64 = 5;
/// How long a client waits for one read before it looks at its commands
/// and its move again.
const TICK: Duration = Duration::from_millis(20);
/// The longest anything here may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(40);
/// The final message; a client stops reading once it has it.
const MARKER: &str = "final";

/// A directory of its own for a test's hand-over socket, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("wsnotify-upgrade-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("handover.sock")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_handover(path: &Path) -> Server {
    Server::start(&[
        "--notify-interval",
        "0",
        "--workers",
        "2",
        "--drain-timeout",
        DRAIN,
        "--handover",
        path.to_str().unwrap(),
    ])
}

/// The instance named in a server's `listening on` line.
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

fn instance_of(welcome: &Value) -> String {
    let id = welcome["client_id"].as_str().expect("client_id");
    id.split('-').next().unwrap_or_default().to_owned()
}

/// When a client leaves the old server for the new one.
#[derive(Clone, Copy)]
enum Leave {
    /// At its notice's hint (divided by `HINT_DIVISOR`).
    AtHint,
    /// As soon as its notice arrives.
    AtOnce,
    /// Once noticed and told (`Command::LeaveAfter`).
    WhenTold,
    /// As soon as its notice arrives, but it resumes only when told
    /// (`Command::Return`): what was published meanwhile is replayed.
    Away,
}

enum Command {
    Chat(String),
    /// Leave once this message has arrived on the old connection.
    LeaveAfter(String),
    /// Resume (a client away).
    Return,
}

/// What the clients have reached so far.
#[derive(Default)]
struct Progress {
    welcomed: AtomicUsize,
    noticed: AtomicUsize,
    /// Clients away: left the old server, not resumed yet.
    away: AtomicUsize,
    resumed: AtomicUsize,
}

impl Progress {
    fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

/// What one client received, on both connections, in order.
struct Received {
    first: Value,
    resumed: Value,
    /// (offset, message) of every broadcast and chat, marker included.
    stream: Vec<(u64, String)>,
    /// How many of them came on the old connection.
    on_old: usize,
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn open(addr: SocketAddr, path: &str) -> Ws {
    let stream = TcpStream::connect(addr).expect("connect");
    // The handshake blocks; only then do reads give up after a tick.
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{addr}{path}"), stream).expect("handshake");
    ws.get_ref().set_read_timeout(Some(TICK)).unwrap();
    ws
}

/// The next text message as JSON; None when a read found nothing for a
/// tick. Anything else (a Close, an error) fails the test.
fn read_json(ws: &mut Ws) -> Option<Value> {
    match ws.read() {
        Ok(tungstenite::Message::Text(text)) => {
            Some(serde_json::from_str(text.as_str()).expect("JSON"))
        }
        Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => None,
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        other => panic!("unexpected read: {other:?}"),
    }
}

fn welcome(ws: &mut Ws, deadline: Instant) -> Value {
    loop {
        assert!(Instant::now() < deadline, "no welcome in time");
        if let Some(m) = read_json(ws) {
            assert_eq!(m["type"], "welcome", "{m}");
            return m;
        }
    }
}

/// (offset, message) of a broadcast or chat; None for anything else.
fn in_stream(m: &Value) -> Option<(u64, String)> {
    if m["type"] != "notification" && m["type"] != "chat" {
        return None;
    }
    let offset = m["offset"]
        .as_u64()
        .unwrap_or_else(|| panic!("no offset: {m}"));
    Some((offset, m["message"].as_str().expect("message").to_owned()))
}

/// A client as /client.js behaves: on the old server until it leaves as
/// `leave` says, then closed and resumed on the same address with the
/// last offset it saw and its epoch, until the final marker.
fn client(
    addr: SocketAddr,
    leave: Leave,
    commands: Receiver<Command>,
    progress: Arc<Progress>,
) -> JoinHandle<Received> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        let mut ws = open(addr, "/ws");
        let first = welcome(&mut ws, deadline);
        progress.welcomed.fetch_add(1, Ordering::SeqCst);
        let epoch = first["epoch"].as_str().expect("epoch").to_owned();
        let mut last = first["offset"].as_u64().expect("offset");
        let mut stream = Vec::new();
        // Set by the notice: when to leave, or (WhenTold) only once told.
        let mut leave_at: Option<Option<Instant>> = None;
        let mut leave_after: Option<String> = None;
        loop {
            assert!(Instant::now() < deadline, "still on the old server");
            while let Ok(command) = commands.try_recv() {
                match command {
                    Command::Chat(text) => {
                        let chat = serde_json::json!({"type": "chat", "message": text});
                        ws.send(tungstenite::Message::text(chat.to_string()))
                            .expect("send a chat");
                    }
                    Command::LeaveAfter(text) => leave_after = Some(text),
                    Command::Return => panic!("told to return before leaving"),
                }
            }
            let told = leave_after
                .as_ref()
                .is_some_and(|text| stream.iter().any(|(_, m)| m == text));
            match leave_at {
                Some(Some(at)) if Instant::now() >= at => break,
                Some(None) if told => break,
                _ => {}
            }
            let Some(m) = read_json(&mut ws) else {
                continue;
            };
            if let Some((offset, message)) = in_stream(&m) {
                last = offset;
                stream.push((offset, message));
            } else if m["type"] == "shutdown_notice" {
                progress.noticed.fetch_add(1, Ordering::SeqCst);
                let hint = Duration::from_millis(m["reconnect_after_ms"].as_u64().unwrap());
                leave_at = Some(match leave {
                    Leave::AtHint => Some(Instant::now() + hint / HINT_DIVISOR as u32),
                    Leave::AtOnce | Leave::Away => Some(Instant::now()),
                    Leave::WhenTold => None,
                });
            }
        }
        let on_old = stream.len();
        // As /client.js: close, ignore whatever the old connection still
        // brings, and resume on the same address.
        let _ = ws.close(None);
        let _ = ws.flush();
        drop(ws);
        if let Leave::Away = leave {
            progress.away.fetch_add(1, Ordering::SeqCst);
            let command = commands.recv_timeout(PATIENCE);
            assert!(
                matches!(command, Ok(Command::Return)),
                "never told to return"
            );
        }
        let mut ws = open(addr, &format!("/ws?since={last}&epoch={epoch}"));
        let resumed = welcome(&mut ws, deadline);
        progress.resumed.fetch_add(1, Ordering::SeqCst);
        loop {
            assert!(Instant::now() < deadline, "no final marker");
            let Some(m) = read_json(&mut ws) else {
                continue;
            };
            if let Some((offset, message)) = in_stream(&m) {
                let done = message.starts_with(MARKER);
                stream.push((offset, message));
                if done {
                    break;
                }
            }
        }
        let _ = ws.close(None);
        let _ = ws.flush();
        Received {
            first,
            resumed,
            stream,
            on_old,
        }
    })
}

/// `POST /broadcast` over one keep-alive connection, opened again when
/// the server closes it or says `Connection: close`. A request the server
/// never answered (its connection closed or reset under it) is noted, not
/// sent again: whether it was published, only the clients can tell.
#[derive(Default)]
struct Publisher {
    addr: Option<SocketAddr>,
    stream: Option<TcpStream>,
    answered: Vec<String>,
    unanswered: Vec<String>,
    connections: usize,
}

impl Publisher {
    fn new(addr: SocketAddr) -> Publisher {
        Publisher {
            addr: Some(addr),
            ..Publisher::default()
        }
    }

    /// Publishes `message`; true if it was answered `sent`.
    fn publish(&mut self, message: &str) -> bool {
        if self.stream.as_ref().is_some_and(|s| !still_open(s)) {
            self.stream = None;
        }
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr.unwrap()).expect("connect the publisher");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            self.stream = Some(stream);
            self.connections += 1;
        }
        let body = serde_json::json!({ "message": message }).to_string();
        let request = format!(
            "POST /broadcast HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let stream = self.stream.as_mut().unwrap();
        let answer = stream
            .write_all(request.as_bytes())
            .ok()
            .and_then(|()| answer(stream));
        let Some((head, body)) = answer else {
            self.stream = None;
            self.unanswered.push(message.to_owned());
            return false;
        };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body: Value = serde_json::from_slice(&body).expect("JSON answer");
        assert_eq!(body["status"], "sent", "{body}");
        if header_value(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.stream = None;
        }
        self.answered.push(message.to_owned());
        true
    }
}

/// Whether an idle keep-alive connection is still open, as an HTTP client
/// looks before it reuses one: the server may have closed it meanwhile.
/// (It can still close it right after: that request goes unanswered.)
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open = match stream.peek(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Ok(0) | Err(_) => false,
        Ok(_) => panic!("bytes from the server without a request"),
    };
    stream.set_nonblocking(false).unwrap();
    open
}

/// One answer's head and body; None if the connection ends first.
fn answer(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = header_value(&head, "content-length")?.parse().ok()?;
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// A publisher posting `b1`, `b2`, ... on a thread of its own until
/// stopped, one every poll of `poll_until`.
struct Posting {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    thread: JoinHandle<Publisher>,
}

impl Posting {
    fn start(addr: SocketAddr) -> Posting {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (Arc::clone(&stop), Arc::clone(&answered));
        let thread = std::thread::spawn(move || {
            let mut publisher = Publisher::new(addr);
            let mut n = 0;
            // poll_until paces the posts: one per look at the stop flag.
            let stopped = poll_until(PATIENCE * 2, || {
                n += 1;
                if publisher.publish(&format!("b{n}")) {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                flag.load(Ordering::SeqCst).then_some(())
            });
            assert!(stopped.is_some(), "the publisher was never stopped");
            publisher
        });
        Posting {
            stop,
            answered,
            thread,
        }
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }

    /// Waits until `more` further posts were answered.
    fn wait_more(&self, more: usize) {
        let target = self.answered() + more;
        wait_until(
            &format!("{more} more broadcasts answered"),
            PATIENCE,
            || self.answered() >= target,
        );
    }

    /// Stops posting, then publishes the final marker; the publisher.
    fn finish(self) -> Publisher {
        self.stop.store(true, Ordering::SeqCst);
        let mut publisher = self.thread.join().expect("the publisher thread");
        let mut attempt = 0;
        while !publisher.publish(&format!("{MARKER}-{attempt}")) {
            attempt += 1;
            assert!(attempt < 3, "the final marker was never answered");
        }
        publisher
    }
}

/// The clients of one test.
struct Fleet {
    progress: Arc<Progress>,
    commands: Vec<Sender<Command>>,
    threads: Vec<JoinHandle<Received>>,
}

impl Fleet {
    /// Connects one client per entry of `leaves` and waits for every
    /// welcome.
    fn connect(addr: SocketAddr, leaves: &[Leave]) -> Fleet {
        let progress = Arc::new(Progress::default());
        let (mut commands, mut threads) = (Vec::new(), Vec::new());
        for &leave in leaves {
            let (tx, rx) = mpsc::channel();
            commands.push(tx);
            threads.push(client(addr, leave, rx, Arc::clone(&progress)));
        }
        let fleet = Fleet {
            progress,
            commands,
            threads,
        };
        fleet.wait("welcomed", |p| &p.welcomed, leaves.len());
        fleet
    }

    fn wait(&self, what: &str, counter: impl Fn(&Progress) -> &AtomicUsize, n: usize) {
        wait_until(&format!("{n} clients {what}"), PATIENCE, || {
            Progress::count(counter(&self.progress)) >= n
        });
    }

    fn tell(&self, client: usize, command: Command) {
        self.commands[client]
            .send(command)
            .expect("the client runs");
    }

    fn join(self) -> Vec<Received> {
        self.threads
            .into_iter()
            .map(|t| t.join().expect("a client thread"))
            .collect()
    }
}

/// What every client must have: every answered broadcast and every chat
/// exactly once, offsets rising by one from its first welcome's to the
/// marker, one offset per message across clients, and a recovered resume
/// on the new server with the old epoch. A broadcast left unanswered must
/// have reached every client or none.
fn check(received: &[Received], publisher: &Publisher, chats: &[String], new_instance: &str) {
    let mut required: HashSet<&str> = publisher.answered.iter().map(String::as_str).collect();
    required.extend(chats.iter().map(String::as_str));
    let mut offsets: HashMap<&str, u64> = HashMap::new();
    for (i, r) in received.iter().enumerate() {
        let epoch = &r.first["epoch"];
        assert_eq!(r.resumed["epoch"], *epoch, "client {i}: {}", r.resumed);
        assert_eq!(r.resumed["recovered"], true, "client {i}: {}", r.resumed);
        assert_eq!(instance_of(&r.resumed), new_instance, "client {i}");
        let start = r.first["offset"].as_u64().unwrap();
        for (k, (offset, message)) in r.stream.iter().enumerate() {
            assert_eq!(
                *offset,
                start + 1 + k as u64,
                "client {i}: message {k} ({message}) after {:?}",
                &r.stream[k.saturating_sub(3)..k]
            );
            let known = *offsets.entry(message).or_insert(*offset);
            assert_eq!(known, *offset, "client {i}: {message} numbered twice");
        }
        let (last_offset, last) = r.stream.last().expect("the marker");
        assert!(last.starts_with(MARKER), "client {i} ended on {last}");
        let got: HashSet<&str> = r.stream.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(got.len(), r.stream.len(), "client {i}: a message twice");
        let missing: Vec<_> = required.difference(&got).collect();
        assert!(missing.is_empty(), "client {i} missed {missing:?}");
        for message in &publisher.unanswered {
            let everywhere = received.iter().all(|other| {
                other
                    .stream
                    .iter()
                    .any(|(o, m)| m == message && o < last_offset)
            });
            let nowhere = received
                .iter()
                .all(|other| !other.stream.iter().any(|(_, m)| m == message));
            assert!(
                everywhere || nowhere,
                "unanswered {message}: some clients got it"
            );
        }
    }
}

fn report(label: &str, received: &[Received], publisher: &Publisher) {
    let on_old: usize = received.iter().map(|r| r.on_old).sum();
    let delivered: Vec<bool> = publisher
        .unanswered
        .iter()
        .map(|message| received[0].stream.iter().any(|(_, m)| m == message))
        .collect();
    let replayed: u64 = received
        .iter()
        .map(|r| r.resumed["replayed"].as_u64().unwrap_or(0))
        .sum();
    eprintln!(
        "{label}: {} clients, {} messages each ({on_old} deliveries on the old server), {replayed} replayed; \
         publisher: {} answered, {} unanswered {:?} (delivered: {delivered:?}), {} connections",
        received.len(),
        received[0].stream.len(),
        publisher.answered.len(),
        publisher.unanswered.len(),
        publisher.unanswered,
        publisher.connections
    );
}

fn exits_cleanly(server: &mut Server) {
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("the old server did not exit: {:?}", server.log_lines()));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn every_client_gets_every_broadcast_once_across_a_handover_upgrade() {
    let scratch = Scratch::new("broadcasts");
    let mut old = start_handover(&scratch.socket());
    let fleet = Fleet::connect(old.addr, &[Leave::AtHint; CLIENTS]);
    let posting = Posting::start(old.addr);
    posting.wait_more(20);

    let new = start_handover(&scratch.socket());
    fleet.wait("noticed", |p| &p.noticed, CLIENTS);
    fleet.wait("resumed", |p| &p.resumed, CLIENTS);
    exits_cleanly(&mut old);
    // The new server alone, for a while.
    posting.wait_more(10);
    let publisher = posting.finish();

    let received = fleet.join();
    report("broadcasts", &received, &publisher);
    check(&received, &publisher, &[], &instance(&new));
}

#[test]
fn a_chat_from_a_client_of_the_old_server_reaches_the_clients_of_the_new_one() {
    let scratch = Scratch::new("chat");
    let mut old = start_handover(&scratch.socket());
    let mut leaves = vec![Leave::AtHint; CLIENTS - 1];
    leaves.push(Leave::WhenTold);
    let talker = CLIENTS - 1;
    let fleet = Fleet::connect(old.addr, &leaves);
    let posting = Posting::start(old.addr);
    posting.wait_more(10);

    let new = start_handover(&scratch.socket());
    fleet.wait("resumed", |p| &p.resumed, CLIENTS - 1);
    // Everyone else is on the new server; the talker, still on the old
    // one, chats, and leaves once its last chat came back numbered.
    let chats: Vec<String> = (1..=10).map(|k| format!("chat-{k}")).collect();
    for chat in &chats {
        fleet.tell(talker, Command::Chat(chat.clone()));
    }
    fleet.tell(talker, Command::LeaveAfter(chats.last().unwrap().clone()));
    fleet.wait("resumed", |p| &p.resumed, CLIENTS);
    exits_cleanly(&mut old);
    posting.wait_more(5);
    let publisher = posting.finish();

    let received = fleet.join();
    report("chat", &received, &publisher);
    check(&received, &publisher, &chats, &instance(&new));
    let talked = &received[talker];
    assert!(
        chats
            .iter()
            .all(|c| talked.stream[..talked.on_old].iter().any(|(_, m)| m == c)),
        "the talker got its chats back on the old server"
    );
}

#[test]
fn a_client_resumes_on_the_new_server_while_the_old_one_still_serves() {
    let scratch = Scratch::new("early");
    let mut old = start_handover(&scratch.socket());
    let mut leaves = vec![Leave::WhenTold; CLIENTS - 2];
    leaves.insert(0, Leave::AtOnce);
    leaves.insert(1, Leave::Away);
    let (early, away, holders) = (0, 1, 2..CLIENTS);
    let fleet = Fleet::connect(old.addr, &leaves);
    let posting = Posting::start(old.addr);
    posting.wait_more(10);

    let new = start_handover(&scratch.socket());
    fleet.wait("resumed", |p| &p.resumed, 1);
    fleet.wait("away", |p| &p.away, 1);
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "the old server still serves its other clients"
    );
    // Published while the early client is on the new server and the rest
    // on the old one: through the publisher's connection, through a new
    // connection (the new server's), and a chat from the old server.
    posting.wait_more(10);
    fleet.tell(away, Command::Return);
    fleet.wait("resumed", |p| &p.resumed, 2);
    let (code, _, _) = http(
        old.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"through a new connection"}"#,
    );
    assert_eq!(code, 200);
    let chats = vec!["from the old server".to_owned()];
    fleet.tell(holders.start, Command::Chat(chats[0].clone()));
    for holder in holders {
        fleet.tell(holder, Command::LeaveAfter(chats[0].clone()));
    }
    fleet.wait("resumed", |p| &p.resumed, CLIENTS);
    exits_cleanly(&mut old);
    posting.wait_more(5);
    let mut publisher = posting.finish();

    let received = fleet.join();
    report("early", &received, &publisher);
    publisher
        .answered
        .push("through a new connection".to_owned());
    check(&received, &publisher, &chats, &instance(&new));
    assert_eq!(received[early].resumed["recovered"], true);
    let replayed = received[away].resumed["replayed"].as_u64().unwrap();
    assert!(
        replayed >= 10,
        "the client away got what it missed from the history the new server took over: {}",
        received[away].resumed
    );
}
