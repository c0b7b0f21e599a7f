//! Hand-over between two servers on one host (`--handover PATH`): the
//! running server gives its listening sockets and its stream to the new one
//! over a unix socket, then drains, so the port never stops accepting and
//! no message is lost.
//!
//! The protocol, version 3, starts with an exchange of lines:
//!
//! ```text
//! new → old  wsnotify-handover 3 pid=<new pid>
//! old → new  wsnotify-handover 3 fds=<n> pid=<old pid> instance=<old>   (+ n sockets, SCM_RIGHTS)
//! new → old  serving pid=<new pid> instance=<new>
//! old → new  draining
//! ```
//!
//! then the connection stays open as the link of `node::peer` (its
//! messages in `node::peer::wire`): first the old server's stream (every
//! channel's offsets and history, then everyone's epoch, offsets and
//! history), then, both ways, the messages the two deliver as one until
//! the old server exits. A new server that has its sockets already (socket
//! activation) takes the stream and drops the copies it is sent.
//!
//! Version 2, spoken by the release before channels, is the same but its
//! stream has no channels (its reader knows no such message). Version 1,
//! spoken by the release before the stream crossed, is the same four lines
//! without `instance=`, and nothing follows `draining`: the sockets cross,
//! the stream does not. This server speaks both, both ways, so an upgrade
//! from those releases and a rollback to them lose no connection:
//!
//! - New server: an older server refuses the version 3 request in its own
//!   version (`wsnotify-handover 2 refused bad request ...`); this one
//!   connects again and asks in that version. From version 2 it continues
//!   the stream, with no channel known yet; from version 1 it starts a
//!   stream of its own (a new epoch, no link), so a client that resumes
//!   across is told `unknown_epoch`.
//! - Old server: asked in version 2, it passes its stream without the
//!   channels (a channel's resume on the new server is `too_old`); asked
//!   in version 1, it answers in version 1, drains with its sockets shared
//!   and no link, and numbers what it accepts itself until it exits.
//!
//! Instead of the sockets the old server may answer
//! `wsnotify-handover <version> refused <why>`. Anything unexpected, a peer
//! of another user, or a peer that has not said `serving` within
//! `EXCHANGE_LIMIT` ends the exchange and the old server goes on serving
//! as before. The old server's side runs on a thread of its own, one
//! exchange at a time, so a slow peer holds up no event loop and delays
//! the next hand-over by `EXCHANGE_LIMIT` at most.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::fds::{describe, peer_uid, read_line_with_fds, send_with_fds, MAX_LINE};
use super::listen_fds::check_listening_tcp;
use super::wakeups::Wakeups;
use crate::app::history::StreamState;
use crate::log;
use crate::node::peer::wire::Decoder;
use crate::node::peer::StateReader;

mod fds;
#[cfg(test)]
mod tests;

const MAGIC: &str = "wsnotify-handover";
/// How long the old server gives a peer to complete its part, from its
/// connection to its `serving` line.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(2);
/// How long the new server waits for each step of the old one: longer than
/// `EXCHANGE_LIMIT`, since it may wait behind another peer's exchange.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The versions of the protocol this server speaks, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    /// The sockets, then the connection closes.
    V1,
    /// The sockets, then the stream (without channels) and the link on the
    /// same connection.
    V2,
    /// Version 2 with every channel's stream.
    V3,
}

impl Version {
    const ALL: [Version; 3] = [Version::V3, Version::V2, Version::V1];

    fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// `wsnotify-handover <n> `, which starts the requests, offers and
    /// refusals of this version.
    fn prefix(self) -> String {
        format!("{MAGIC} {} ", self.number())
    }
}

/// The other server of an exchange, by what follows its sockets.
#[derive(Debug, PartialEq, Eq)]
enum Counterpart {
    /// A server of this release (`instance`): the stream and the link.
    Linked { instance: String },
    /// A version 1 server: nothing.
    SocketsOnly,
}

/// The running server's sockets, received; the connection stays open until
/// `confirm` tells that server this one serves.
#[derive(Debug)]
pub struct Taken {
    stream: UnixStream,
    pub fds: Vec<OwnedFd>,
    pub previous_pid: u32,
    previous: Counterpart,
}

/// What the new server goes on with once the previous one drains.
pub enum Confirmed {
    /// The previous server's stream, and the link to it.
    Continued(Continued),
    /// The previous server speaks version 1: its stream stays with it, and
    /// this server serves one of its own (a new epoch, no link).
    SocketsOnly,
}

/// What the new server continues after a hand-over: the stream, and the
/// link to the old server.
pub struct Continued {
    pub state: StreamState,
    pub stream: UnixStream,
    /// What was read past the stream's state.
    pub decoder: Decoder,
    pub previous_instance: String,
}

/// The server that took the sockets, as the old server's hand-over thread
/// reports it to the supervisor.
pub enum Successor {
    /// A server of this release: the connection becomes the link, over
    /// which this one passes its stream.
    Linked(Handed),
    /// A version 1 server (`pid`), told `draining` already: nothing more
    /// crosses.
    SocketsOnly { pid: u32 },
}

/// A completed exchange with a server that continues the stream.
pub struct Handed {
    pub stream: UnixStream,
    pub pid: u32,
    pub instance: String,
    /// It reads the channels' streams (version 3); one of the release
    /// before them is sent everyone's alone.
    pub channels: bool,
}

/// Asks the server listening on `path` for its sockets. `None` when no
/// server answers there (nothing at `path`, or a stale socket file left by
/// a server that stopped, which is removed); an error when a server is
/// there but the hand-over fails, or `path` is not a socket.
pub fn take_over(path: &Path) -> Result<Option<Taken>, String> {
    take_over_within(path, TIMEOUT)
}

/// `take_over`, waiting up to `timeout` for each step of the old server.
fn take_over_within(path: &Path, timeout: Duration) -> Result<Option<Taken>, String> {
    let at = path.display();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("--handover {at}: {e}")),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!(
                "--handover {at} exists and is not a socket; refusing to replace it"
            ))
        }
        Ok(_) => {}
    }
    let stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Ok(()) => log!(Info, "removed a stale hand-over socket", path = at),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(format!(
                        "cannot remove the stale hand-over socket {at}: {e}"
                    ))
                }
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot connect to the hand-over socket {at}: {e}")),
    };
    let fail = |what: String| format!("hand-over from the server at {at} failed: {what}");
    let mut asked = Version::V3;
    let mut answer = ask(stream, asked, timeout).map_err(fail)?;
    let (stream, offer, fds) = loop {
        match answer {
            Answer::Sockets { stream, offer, fds } => break (stream, offer, fds),
            Answer::Refused { version, why } if version < asked => {
                let n = version.number();
                log!(
                    Info,
                    format!("the running server is an older release (hand-over version {n}); asking again in version {n}"),
                    its_refusal = why
                );
                let again = UnixStream::connect(path)
                    .map_err(|e| fail(format!("cannot connect again in version {n}: {e}")))?;
                asked = version;
                answer = ask(again, asked, timeout).map_err(fail)?;
            }
            Answer::Refused { why, .. } => return Err(fail(format!("it refused: {why}"))),
        }
    };
    if offer.fds != fds.len() {
        return Err(fail(format!(
            "announced {} sockets, sent {}",
            offer.fds,
            fds.len()
        )));
    }
    for fd in &fds {
        check_listening_tcp(fd.as_fd()).map_err(|why| fail(format!("a passed socket: {why}")))?;
    }
    log!(
        Info,
        "received the listening sockets of the running server",
        from_pid = offer.pid,
        fds = describe(&fds)
    );
    Ok(Some(Taken {
        stream,
        fds,
        previous_pid: offer.pid,
        previous: offer.from,
    }))
}

/// What the old server answered a request.
enum Answer {
    Sockets {
        stream: UnixStream,
        offer: Offer,
        fds: Vec<OwnedFd>,
    },
    /// In the version the old server speaks, whichever was asked.
    Refused { version: Version, why: String },
}

/// Sends the request of `version` and reads the old server's answer.
fn ask(stream: UnixStream, version: Version, timeout: Duration) -> Result<Answer, String> {
    set_timeouts(&stream, timeout).map_err(|e| e.to_string())?;
    let me = std::process::id();
    // A failed write is not the end: a server that refuses at once may
    // have closed already, and its answer says why.
    let sent = (&stream).write_all(format!("{}pid={me}\n", version.prefix()).as_bytes());
    let (line, fds) = read_line_with_fds(&stream).map_err(|e| e.to_string())?;
    let Some(line) = line else {
        return Err(match sent {
            Ok(()) => "it closed without an answer".into(),
            Err(e) => format!("cannot send the request: {e}"),
        });
    };
    for spoken in Version::ALL {
        if let Some(why) = line.strip_prefix(&format!("{}refused ", spoken.prefix())) {
            return Ok(Answer::Refused {
                version: spoken,
                why: why.to_owned(),
            });
        }
    }
    let offer = parse_offer(&line, version).ok_or_else(|| format!("unexpected answer {line:?}"))?;
    Ok(Answer::Sockets { stream, offer, fds })
}

impl Taken {
    /// Tells the previous server that this one (`instance`) accepts on the
    /// sockets and owns PATH now, so it drains, and takes its stream if it
    /// passes one.
    pub fn confirm(self, instance: &str) -> Result<Confirmed, String> {
        let from = self.previous_pid;
        let fail = |what: String| format!("the previous server (pid {from}) {what}");
        let me = std::process::id();
        let serving = match &self.previous {
            Counterpart::Linked { .. } => format!("serving pid={me} instance={instance}\n"),
            Counterpart::SocketsOnly => format!("serving pid={me}\n"),
        };
        (&self.stream)
            .write_all(serving.as_bytes())
            .map_err(|e| fail(format!("did not take the confirmation: {e}")))?;
        match read_line_alone(&self.stream) {
            Ok(Some(line)) if line == "draining" => {}
            Ok(other) => return Err(fail(format!("answered {other:?} instead of draining"))),
            Err(e) => return Err(fail(format!("did not confirm its drain: {e}"))),
        }
        let Counterpart::Linked {
            instance: previous_instance,
        } = self.previous
        else {
            log!(
                Warn,
                "the previous server is draining; it is an older release (hand-over version 1), so its stream did not cross: this server starts a new epoch, and clients that resume from the old one are told unknown_epoch",
                previous_pid = from
            );
            return Ok(Confirmed::SocketsOnly);
        };
        let mut decoder = Decoder::default();
        let mut reader = StateReader::default();
        let mut buf = vec![0u8; 64 * 1024];
        let state = loop {
            match reader.read(&mut decoder) {
                Ok(Some(state)) => break state,
                Ok(None) => {}
                Err(e) => return Err(fail(format!("sent a stream this server cannot read: {e}"))),
            }
            match (&self.stream).read(&mut buf) {
                Ok(0) => return Err(fail("closed before its stream was complete".into())),
                Ok(n) => decoder.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(format!("did not send its stream: {e}"))),
            }
        };
        log!(
            Info,
            "the previous server is draining; continuing its stream",
            previous_pid = from,
            epoch = state.epoch,
            offset = state.last,
            history_entries = state.entries.len(),
            channels = state.channels.channels.len()
        );
        Ok(Confirmed::Continued(Continued {
            state,
            stream: self.stream,
            decoder,
            previous_instance,
        }))
    }
}

/// Listens on `path` for the next server and gives it `sockets` (copies of
/// the ones the workers serve). When a hand-over completes, reports the
/// successor to the supervisor through `successors` (for a server of this
/// release, it sends the stream over the connection; either way it marks
/// the sockets shared and starts the drain) and gives up `path`, which the
/// new server owns by then.
pub fn offer(
    path: &Path,
    sockets: Vec<OwnedFd>,
    instance: String,
    successors: Sender<Successor>,
    wakeups: Arc<Wakeups>,
) -> Result<(), String> {
    let listener = publish(path).map_err(|e| {
        format!(
            "cannot listen on the hand-over socket {}: {e}",
            path.display()
        )
    })?;
    log!(Info, "waiting for a hand-over", path = path.display());
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || serve(listener, &path, &sockets, &instance, &successors, &wakeups))
        .map_err(|e| format!("cannot start the hand-over thread: {e}"))?;
    Ok(())
}

fn serve(
    mut listener: UnixListener,
    path: &Path,
    sockets: &[OwnedFd],
    instance: &str,
    successors: &Sender<Successor>,
    wakeups: &Wakeups,
) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                log!(Warn, "hand-over socket: accept failed", error = e);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let successor = match exchange(&stream, sockets, instance) {
            Err(Failure {
                why,
                sent: false,
                version,
            }) => {
                log!(Warn, format!("hand-over refused: {why}; still serving"));
                let refusal = format!("{}refused {why}\n", version.prefix());
                let _ = (&stream).write_all(refusal.as_bytes());
                continue;
            }
            Err(Failure {
                why, sent: true, ..
            }) => {
                log!(Warn, format!("hand-over aborted: {why}; still serving"));
                // The peer may have put its own socket at PATH before
                // failing: take PATH back so the next attempt finds us.
                match publish(path) {
                    Ok(fresh) => listener = fresh,
                    Err(e) => log!(
                        Error,
                        "cannot listen on the hand-over socket again",
                        path = path.display(),
                        error = e
                    ),
                }
                continue;
            }
            Ok((pid, Counterpart::Linked { instance: peer }, version)) => {
                log!(
                    Warn,
                    "handed the listening sockets over; passing the stream and draining without accepting",
                    to_pid = pid,
                    fds = describe(sockets),
                    protocol = version.number()
                );
                Successor::Linked(Handed {
                    stream,
                    pid,
                    instance: peer,
                    channels: version >= Version::V3,
                })
            }
            Ok((pid, Counterpart::SocketsOnly, _)) => {
                // The last line of version 1: the connection closes with it.
                if let Err(e) = (&stream).write_all(b"draining\n") {
                    log!(
                        Warn,
                        "could not tell the new server that this one drains; it serves anyway",
                        to_pid = pid,
                        error = e
                    );
                }
                log!(
                    Warn,
                    "handed the listening sockets over to an older release (hand-over version 1): draining without accepting; the stream does not cross, what this server accepts is numbered here until it exits",
                    to_pid = pid,
                    fds = describe(sockets)
                );
                Successor::SocketsOnly { pid }
            }
        };
        if successors.send(successor).is_ok() {
            wakeups.wake_supervisor();
        }
        return;
    }
}

struct Failure {
    why: String,
    /// The sockets were sent before it failed.
    sent: bool,
    /// The version to refuse in: the request's, or this release's if there
    /// was none.
    version: Version,
}

/// The old server's side of one exchange, bounded by `EXCHANGE_LIMIT`; the
/// new server's pid, what follows its sockets and the version it asked in
/// on success.
fn exchange(
    stream: &UnixStream,
    sockets: &[OwnedFd],
    instance: &str,
) -> Result<(u32, Counterpart, Version), Failure> {
    let unasked = |why: String| Failure {
        why,
        sent: false,
        version: Version::V3,
    };
    let limit = Limit::from_now(EXCHANGE_LIMIT);
    stream
        .set_write_timeout(Some(EXCHANGE_LIMIT))
        .map_err(|e| unasked(e.to_string()))?;
    let uid = peer_uid(stream).map_err(|e| unasked(format!("cannot read the peer's uid: {e}")))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if uid != me {
        return Err(unasked(format!(
            "peer uid {uid} is not this server's uid {me}"
        )));
    }
    let request = match limit
        .arm(stream)
        .and_then(|()| read_line_limited(stream, &limit))
    {
        Ok(Some(line)) => line,
        Ok(None) => return Err(unasked("the peer closed without a request".into())),
        Err(e) => return Err(unasked(format!("no request: {e}"))),
    };
    let (version, pid) =
        parse_request(&request).ok_or_else(|| unasked(format!("bad request {request:?}")))?;
    let early = |why: String| Failure {
        why,
        sent: false,
        version,
    };
    let header = match version {
        Version::V2 | Version::V3 => format!(
            "{}fds={} pid={} instance={instance}\n",
            version.prefix(),
            sockets.len(),
            std::process::id()
        ),
        Version::V1 => format!(
            "{}fds={} pid={}\n",
            version.prefix(),
            sockets.len(),
            std::process::id()
        ),
    };
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(AsFd::as_fd).collect();
    send_with_fds(stream, header.as_bytes(), &fds)
        .map_err(|e| early(format!("cannot send the sockets: {e}")))?;
    log!(
        Info,
        "sent the listening sockets to a new server",
        to_pid = pid,
        fds = describe(sockets),
        protocol = version.number()
    );
    let late = |why: String| Failure {
        why,
        sent: true,
        version,
    };
    match read_line_limited(stream, &limit) {
        Ok(Some(line)) => match parse_serving(&line, pid, version) {
            Some(peer) => Ok((pid, peer, version)),
            None => Err(late(format!("unexpected confirmation {line:?}"))),
        },
        Ok(None) => Err(late(format!(
            "the new server (pid {pid}) closed before confirming it serves"
        ))),
        Err(e) => Err(late(format!(
            "no confirmation from the new server (pid {pid}): {e}"
        ))),
    }
}

/// Puts a listening socket at `path`, mode 0600. It is bound under a
/// temporary name and renamed over `path`, so `path` always names a live
/// server (the old one until the new one's rename) and is never reachable
/// with a wider mode.
fn publish(path: &Path) -> io::Result<UnixListener> {
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// An end to the old server's patience with one peer: each read may wait
/// only what is left of it, so a peer that drips a byte at a time is
/// dropped on time too.
struct Limit {
    until: Instant,
}

impl Limit {
    fn from_now(limit: Duration) -> Limit {
        Limit {
            until: super::clock::now().at + limit,
        }
    }

    fn arm(&self, stream: &UnixStream) -> io::Result<()> {
        let left = self.until.saturating_duration_since(super::clock::now().at);
        if left.is_zero() {
            return Err(Limit::exceeded());
        }
        stream.set_read_timeout(Some(left))
    }

    fn exceeded() -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete exchange within {EXCHANGE_LIMIT:?}"),
        )
    }
}

/// One line (without its newline), each read bounded by `limit`; `None`
/// if the peer closed first.
fn read_line_limited(stream: &UnixStream, limit: &Limit) -> io::Result<Option<String>> {
    read_line_bytewise(stream, || limit.arm(stream)).map_err(|e| match e.kind() {
        // A read that waited out what was left ends the same way as one
        // that found nothing left: the log says which limit it was.
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Limit::exceeded(),
        _ => e,
    })
}

/// One line, read a byte at a time so that nothing after it (the stream
/// that follows the last line) is taken; `None` if the peer closed first.
fn read_line_alone(stream: &UnixStream) -> io::Result<Option<String>> {
    read_line_bytewise(stream, || Ok(()))
}

fn read_line_bytewise(
    stream: &UnixStream,
    mut before_read: impl FnMut() -> io::Result<()>,
) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        before_read()?;
        match (&*stream).read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() == MAX_LINE => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"))
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

fn set_timeouts(stream: &UnixStream, timeout: Duration) -> io::Result<()> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))
}

struct Offer {
    fds: usize,
    pid: u32,
    from: Counterpart,
}

/// `wsnotify-handover 3 fds=N pid=P instance=I` (2 alike), or in version
/// 1 `wsnotify-handover 1 fds=N pid=P`.
fn parse_offer(line: &str, version: Version) -> Option<Offer> {
    let rest = line.strip_prefix(&version.prefix())?;
    let mut fields = rest.split(' ');
    let fds = fields.next()?.strip_prefix("fds=")?.parse().ok()?;
    let pid = fields.next()?.strip_prefix("pid=")?.parse().ok()?;
    let from = match version {
        Version::V1 => Counterpart::SocketsOnly,
        Version::V2 | Version::V3 => {
            let instance = fields.next()?.strip_prefix("instance=")?;
            if instance.is_empty() {
                return None;
            }
            Counterpart::Linked {
                instance: instance.to_owned(),
            }
        }
    };
    if fields.next().is_some() {
        return None;
    }
    Some(Offer { fds, pid, from })
}

/// `serving pid=P instance=I` from the new server `pid`, or in version 1
/// `serving pid=P`.
fn parse_serving(line: &str, pid: u32, version: Version) -> Option<Counterpart> {
    match version {
        Version::V1 => (line == format!("serving pid={pid}")).then_some(Counterpart::SocketsOnly),
        Version::V2 | Version::V3 => {
            let rest = line.strip_prefix(&format!("serving pid={pid} instance="))?;
            (!rest.is_empty() && !rest.contains(' ')).then(|| Counterpart::Linked {
                instance: rest.to_owned(),
            })
        }
    }
}

/// `wsnotify-handover <version> pid=P`: the version asked in and the new
/// server's pid.
fn parse_request(line: &str) -> Option<(Version, u32)> {
    Version::ALL.into_iter().find_map(|version| {
        let pid = line
            .strip_prefix(&version.prefix())?
            .strip_prefix("pid=")?
            .parse()
            .ok()?;
        Some((version, pid))
    })
}
