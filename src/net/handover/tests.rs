//! Both sides of the exchange against fake peers that speak version 1 or
//! 2 (the lines of the releases before), over a real unix socket with real
//! listening TCP sockets.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};

use mio::{Events, Poll, Token, Waker};

use super::*;

/// A pid for the fake peer: the exchange only echoes it.
const FAKE_PID: u32 = 4242;

/// A directory of its own for a test's hand-over socket, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "wsnotify-handover-unit-{}-{name}",
            std::process::id()
        ));
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

fn line(stream: &UnixStream) -> Option<String> {
    read_line_alone(stream).unwrap()
}

fn send(stream: &UnixStream, line: &str) {
    (&*stream).write_all(line.as_bytes()).unwrap();
}

/// An older release's first move: it refuses the request of a newer
/// protocol as a bad request and takes the next connection, which asks
/// again. Returns that connection and the two request lines.
fn refuse_the_first_request(listener: &UnixListener, version: u32) -> (UnixStream, Vec<String>) {
    let (first, _) = listener.accept().unwrap();
    let request = line(&first).unwrap();
    send(
        &first,
        &format!("wsnotify-handover {version} refused bad request {request:?}\n"),
    );
    drop(first);
    let (second, _) = listener.accept().unwrap();
    let again = line(&second).unwrap();
    (second, vec![request, again])
}

/// The received socket accepts a connection made to `addr`.
fn accepts_at(fd: OwnedFd, addr: SocketAddr) {
    let listener = TcpListener::from(fd);
    assert_eq!(listener.local_addr().unwrap(), addr);
    let _client = TcpStream::connect(addr).unwrap();
    listener.accept().unwrap();
}

#[test]
fn lines_of_the_protocol() {
    let offer = parse_offer(
        "wsnotify-handover 2 fds=3 pid=42 instance=ab12",
        Version::V2,
    )
    .unwrap();
    assert_eq!((offer.fds, offer.pid), (3, 42));
    assert_eq!(
        offer.from,
        Counterpart::Linked {
            instance: "ab12".into()
        }
    );
    let offer = parse_offer("wsnotify-handover 1 fds=3 pid=42", Version::V1).unwrap();
    assert_eq!((offer.fds, offer.pid), (3, 42));
    assert_eq!(offer.from, Counterpart::SocketsOnly);
    for (line, version) in [
        (
            "wsnotify-handover 1 fds=3 pid=42 instance=ab12",
            Version::V2,
        ),
        (
            "wsnotify-handover 1 fds=3 pid=42 instance=ab12",
            Version::V1,
        ),
        ("wsnotify-handover 2 fds=3 pid=42", Version::V1),
        (
            "wsnotify-handover 2 fds=x pid=42 instance=ab12",
            Version::V2,
        ),
        ("wsnotify-handover 2 fds=3 pid=42", Version::V2),
        ("wsnotify-handover 2 fds=3 pid=42 instance=", Version::V2),
    ] {
        assert!(
            parse_offer(line, version).is_none(),
            "{line} as {version:?}"
        );
    }
    assert_eq!(
        parse_request("wsnotify-handover 2 pid=7"),
        Some((Version::V2, 7))
    );
    assert_eq!(
        parse_request("wsnotify-handover 1 pid=7"),
        Some((Version::V1, 7))
    );
    assert_eq!(
        parse_request("wsnotify-handover 3 pid=7"),
        Some((Version::V3, 7))
    );
    assert_eq!(parse_request("wsnotify-handover 4 pid=7"), None);
    assert_eq!(parse_request("wsnotify-handover 2 pid=7 extra"), None);
    assert_eq!(parse_request("hello"), None);
    assert_eq!(
        parse_serving("serving pid=7 instance=cd34", 7, Version::V2),
        Some(Counterpart::Linked {
            instance: "cd34".into()
        })
    );
    assert_eq!(
        parse_serving("serving pid=8 instance=cd34", 7, Version::V2),
        None
    );
    assert_eq!(
        parse_serving("serving pid=7 instance=", 7, Version::V2),
        None
    );
    assert_eq!(parse_serving("serving pid=7", 7, Version::V2), None);
    assert_eq!(
        parse_serving("serving pid=7", 7, Version::V1),
        Some(Counterpart::SocketsOnly)
    );
    assert_eq!(
        parse_serving("serving pid=7 instance=cd34", 7, Version::V1),
        None
    );
    assert_eq!(parse_serving("serving pid=8", 7, Version::V1), None);
}

#[test]
fn descriptors_cross_a_socket_pair() {
    let (a, b) = UnixStream::pair().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    send_with_fds(&a, b"one line\n", &[listener.as_fd()]).unwrap();
    let (line, fds) = read_line_with_fds(&b).unwrap();
    assert_eq!(line.as_deref(), Some("one line"));
    assert_eq!(fds.len(), 1);
    accepts_at(fds.into_iter().next().unwrap(), addr);
    drop(a);
    assert_eq!(read_line_with_fds(&b).unwrap().0, None);
}

// The new server (this release) and an old server of the release before.

/// How the fake version 1 server behaves once asked in version 1.
#[derive(Clone, Copy, PartialEq)]
enum OldServer {
    /// The whole exchange.
    Completes,
    /// Refuses that request too.
    RefusesAgain,
    /// Says nothing after the request.
    StallsBeforeSockets,
    /// Sends the sockets, then says nothing after `serving`.
    StallsBeforeDraining,
}

/// A server of the release before the stream crossed at `path`, with
/// `socket`: it refuses the version 3 request as that release does, then
/// answers the version 1 one as `behaviour` says. Returns the lines it
/// read.
fn fake_version_1_server(
    path: &Path,
    socket: TcpListener,
    behaviour: OldServer,
) -> std::thread::JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (second, mut seen) = refuse_the_first_request(&listener, 1);
        match behaviour {
            OldServer::RefusesAgain => {
                send(
                    &second,
                    "wsnotify-handover 1 refused peer uid 1 is not this server's uid 0\n",
                );
                return seen;
            }
            OldServer::StallsBeforeSockets => {
                // Holds the connection until the new server gives up.
                assert_eq!(line(&second), None);
                return seen;
            }
            OldServer::Completes | OldServer::StallsBeforeDraining => {}
        }
        let offer = format!("wsnotify-handover 1 fds=1 pid={FAKE_PID}\n");
        send_with_fds(&second, offer.as_bytes(), &[socket.as_fd()]).unwrap();
        seen.push(line(&second).unwrap());
        if behaviour == OldServer::Completes {
            send(&second, "draining\n");
        }
        // Nothing follows in version 1: the new server closes.
        assert_eq!(line(&second), None);
        seen
    })
}

#[test]
fn a_new_server_takes_the_sockets_of_a_version_1_server_without_its_stream() {
    let scratch = Scratch::new("from-v1");
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let old = fake_version_1_server(&scratch.socket(), socket, OldServer::Completes);

    let mut taken = take_over(&scratch.socket())
        .unwrap()
        .expect("a server answered");
    assert_eq!(taken.previous_pid, FAKE_PID);
    assert_eq!(taken.fds.len(), 1);
    accepts_at(taken.fds.pop().unwrap(), addr);
    let confirmed = taken.confirm("ab12").unwrap();
    assert!(matches!(confirmed, Confirmed::SocketsOnly));

    let me = std::process::id();
    assert_eq!(
        old.join().unwrap(),
        [
            format!("wsnotify-handover 3 pid={me}"),
            format!("wsnotify-handover 1 pid={me}"),
            format!("serving pid={me}"),
        ]
    );
}

/// A server of the release before channels at `path`, with `socket`: it
/// refuses the version 3 request as that release does, answers the version
/// 2 one, then sends its stream (everyone's, no channel). Returns the
/// lines it read.
fn fake_version_2_server(path: &Path, socket: TcpListener) -> std::thread::JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (second, mut seen) = refuse_the_first_request(&listener, 2);
        let offer = format!("wsnotify-handover 2 fds=1 pid={FAKE_PID} instance=ef56\n");
        send_with_fds(&second, offer.as_bytes(), &[socket.as_fd()]).unwrap();
        seen.push(line(&second).unwrap());
        let mut stream = b"draining\n".to_vec();
        let state = crate::node::peer::wire::Message::State {
            epoch: "0a0b".into(),
            last: 7,
            first_since: 6,
            entries: 1,
        };
        state.encode(&mut stream);
        let entry = crate::node::peer::wire::Message::Entry {
            age: Duration::from_secs(1),
            frame: Arc::from(&b"\x81\x01x"[..]),
        };
        entry.encode(&mut stream);
        (&second).write_all(&stream).unwrap();
        seen
    })
}

#[test]
fn a_new_server_continues_the_stream_of_a_version_2_server_without_channels() {
    let scratch = Scratch::new("from-v2");
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = fake_version_2_server(&scratch.socket(), socket);

    let taken = take_over(&scratch.socket())
        .unwrap()
        .expect("a server answered");
    let Confirmed::Continued(continued) = taken.confirm("ab12").unwrap() else {
        panic!("a version 2 server passes its stream");
    };
    assert_eq!(continued.previous_instance, "ef56");
    let state = continued.state;
    assert_eq!(
        (state.epoch.as_str(), state.last, state.first_since),
        ("0a0b", 7, 6)
    );
    assert_eq!(state.entries.len(), 1);
    assert!(state.channels.channels.is_empty());
    assert_eq!(state.channels.floor, 0);

    let me = std::process::id();
    assert_eq!(
        old.join().unwrap(),
        [
            format!("wsnotify-handover 3 pid={me}"),
            format!("wsnotify-handover 2 pid={me}"),
            format!("serving pid={me} instance=ab12"),
        ]
    );
}

#[test]
fn a_version_1_refusal_of_the_version_1_request_is_the_answer() {
    let scratch = Scratch::new("v1-refuses");
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let old = fake_version_1_server(&scratch.socket(), socket, OldServer::RefusesAgain);
    let error = take_over(&scratch.socket()).unwrap_err();
    assert!(
        error.contains("it refused: peer uid 1 is not this server's uid 0"),
        "{error}"
    );
    assert_eq!(old.join().unwrap().len(), 2);
}

#[test]
fn a_new_server_gives_up_on_a_version_1_server_that_stalls() {
    let within = Duration::from_millis(300);
    for stall in [
        OldServer::StallsBeforeSockets,
        OldServer::StallsBeforeDraining,
    ] {
        let scratch = Scratch::new("v1-stalls");
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let old = fake_version_1_server(&scratch.socket(), socket, stall);
        let started = Instant::now();
        let error = match take_over_within(&scratch.socket(), within) {
            Err(e) => e,
            Ok(taken) => taken.unwrap().confirm("ab12").err().expect("no drain"),
        };
        let waited = started.elapsed();
        assert!(error.contains("temporarily unavailable"), "{error}");
        assert!(waited >= within && waited < within * 5, "{waited:?}");
        old.join().unwrap();
    }
}

// The old server (this release) and a new server of the release before:
// a rollback.

/// This release's hand-over thread on `path`, offering `socket`; the
/// supervisor's side of it: what it reports, and the poll its waker wakes.
struct Offering {
    successors: Receiver<Successor>,
    poll: Poll,
    /// Held as the supervisor holds it: the hand-over thread drops its
    /// copy when it ends, and a waker closed before the poll is no event.
    _wakeups: Arc<Wakeups>,
}

const SUPERVISOR: Token = Token(1);

fn offering(path: &Path, socket: &TcpListener) -> Offering {
    let poll = Poll::new().unwrap();
    let waker = Waker::new(poll.registry(), SUPERVISOR).unwrap();
    let wakeups = Arc::new(Wakeups::new(Vec::new(), waker));
    let (tx, successors) = mpsc::channel();
    let copy = OwnedFd::from(socket.try_clone().unwrap());
    offer(path, vec![copy], "ab12".into(), tx, Arc::clone(&wakeups)).unwrap();
    Offering {
        successors,
        poll,
        _wakeups: wakeups,
    }
}

impl Offering {
    /// The supervisor was woken and told of a successor.
    fn successor(&mut self) -> Successor {
        let mut events = Events::with_capacity(4);
        self.poll
            .poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert!(events.iter().any(|e| e.token() == SUPERVISOR));
        self.successors.try_recv().expect("a successor")
    }
}

/// A new server of the release before: its request, the sockets it got
/// (checked to listen at `addr`), its `serving`, and what it is answered.
fn rollback(path: &Path, addr: SocketAddr) -> Option<String> {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    send(&stream, &format!("wsnotify-handover 1 pid={FAKE_PID}\n"));
    let (offer, mut fds) = read_line_with_fds(&stream).unwrap();
    let me = std::process::id();
    assert_eq!(offer, Some(format!("wsnotify-handover 1 fds=1 pid={me}")));
    assert_eq!(fds.len(), 1);
    accepts_at(fds.pop().unwrap(), addr);
    send(&stream, &format!("serving pid={FAKE_PID}\n"));
    let answer = line(&stream);
    // Version 1 ends there: the old server closes.
    assert_eq!(line(&stream), None);
    answer
}

#[test]
fn an_old_server_hands_its_sockets_to_a_version_1_server_and_drains_unlinked() {
    let scratch = Scratch::new("to-v1");
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let mut old = offering(&scratch.socket(), &socket);

    assert_eq!(
        rollback(&scratch.socket(), addr).as_deref(),
        Some("draining")
    );
    assert!(matches!(
        old.successor(),
        Successor::SocketsOnly { pid: FAKE_PID }
    ));
}

/// A server of this release (version 3) or of the one before channels
/// (version 2) is linked; only the first is sent the channels.
#[test]
fn an_old_server_links_to_a_server_of_this_release_or_the_one_before() {
    for (version, channels) in [(3, true), (2, false)] {
        let scratch = Scratch::new(&format!("to-v{version}"));
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut old = offering(&scratch.socket(), &socket);

        let stream = UnixStream::connect(scratch.socket()).unwrap();
        send(
            &stream,
            &format!("wsnotify-handover {version} pid={FAKE_PID}\n"),
        );
        let (offer, fds) = read_line_with_fds(&stream).unwrap();
        let me = std::process::id();
        assert_eq!(
            offer,
            Some(format!(
                "wsnotify-handover {version} fds=1 pid={me} instance=ab12"
            ))
        );
        assert_eq!(fds.len(), 1);
        send(&stream, &format!("serving pid={FAKE_PID} instance=cd34\n"));
        match old.successor() {
            Successor::Linked(handed) => {
                assert_eq!((handed.pid, handed.instance.as_str()), (FAKE_PID, "cd34"));
                assert_eq!(handed.channels, channels, "version {version}");
            }
            Successor::SocketsOnly { .. } => panic!("a server of version {version} is linked"),
        }
    }
}

#[test]
fn an_old_server_drops_a_version_1_server_that_stalls_within_the_exchange_limit() {
    let scratch = Scratch::new("v1-stalls-old");
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let mut old = offering(&scratch.socket(), &socket);

    // Silent after its request: refused, in its version, at the limit.
    let silent = UnixStream::connect(scratch.socket()).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    send(&silent, "wsnotify-handover 1 pid=");
    let refusal = line(&silent).unwrap();
    let waited = started.elapsed();
    assert!(
        refusal
            .starts_with("wsnotify-handover 3 refused no request: no complete exchange within 2s"),
        "{refusal}"
    );
    assert!(
        waited >= EXCHANGE_LIMIT - Duration::from_millis(100)
            && waited < EXCHANGE_LIMIT + Duration::from_millis(1500),
        "{waited:?}"
    );

    // Takes the sockets, never says `serving`: dropped at the limit.
    let stalled = UnixStream::connect(scratch.socket()).unwrap();
    stalled.set_read_timeout(Some(TIMEOUT)).unwrap();
    let started = Instant::now();
    send(&stalled, &format!("wsnotify-handover 1 pid={FAKE_PID}\n"));
    let (offer, fds) = read_line_with_fds(&stalled).unwrap();
    assert!(offer.unwrap().starts_with("wsnotify-handover 1 fds=1 "));
    assert_eq!(fds.len(), 1);
    assert_eq!(line(&stalled), None);
    let waited = started.elapsed();
    assert!(
        waited >= EXCHANGE_LIMIT - Duration::from_millis(100)
            && waited < EXCHANGE_LIMIT + Duration::from_millis(1500),
        "{waited:?}"
    );
    assert!(old.successors.try_recv().is_err(), "still serving");

    // PATH is the old server's again, and the next one gets through.
    assert_eq!(
        rollback(&scratch.socket(), addr).as_deref(),
        Some("draining")
    );
    assert!(matches!(
        old.successor(),
        Successor::SocketsOnly { pid: FAKE_PID }
    ));
}
