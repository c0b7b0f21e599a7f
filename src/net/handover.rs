//! Hand-over between two servers on one host (`--handover PATH`): the
//! running server gives its listening sockets and its stream to the new one
//! over a unix socket, then drains, so the port never stops accepting and
//! no message is lost.
//!
//! The protocol, version 2, starts with an exchange of lines:
//!
//! ```text
//! new → old  wsnotify-handover 2 pid=<new pid>
//! old → new  wsnotify-handover 2 fds=<n> pid=<old pid> instance=<old>   (+ n sockets, SCM_RIGHTS)
//! new → old  serving pid=<new pid> instance=<new>
//! old → new  draining
//! ```
//!
//! then the connection stays open as the link of `node::peer` (its
//! messages in `node::peer::wire`): first the old server's stream (epoch,
//! offsets, history), then, both ways, the messages the two deliver as one
//! until the old server exits. A new server that has its sockets already
//! (socket activation) takes the stream and drops the copies it is sent.
//!
//! Instead of the sockets the old server may answer
//! `wsnotify-handover 2 refused <why>`. Anything unexpected, a peer of
//! another user, or a peer that has not said `serving` within
//! `EXCHANGE_LIMIT` ends the exchange and the old server goes on serving
//! as before. The old server's side runs on a thread of its own, one
//! exchange at a time, so a slow peer holds up no event loop and delays
//! the next hand-over by `EXCHANGE_LIMIT` at most.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::listen_fds::check_listening_tcp;
use super::wakeups::Wakeups;
use crate::app::history::StreamState;
use crate::log;
use crate::node::peer::wire::Decoder;
use crate::node::peer::StateReader;

const MAGIC: &str = "wsnotify-handover";
const VERSION: u32 = 2;
/// How long the old server gives a peer to complete its part, from its
/// connection to its `serving` line.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(2);
/// How long the new server waits for each step of the old one: longer than
/// `EXCHANGE_LIMIT`, since it may wait behind another peer's exchange.
const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_LINE: usize = 256;
/// More sockets than a hand-over ever carries (one per worker at most, or
/// what socket activation passed).
const MAX_FDS: usize = 1024;

/// The running server's sockets, received; the connection stays open until
/// `confirm` tells that server this one serves.
#[derive(Debug)]
pub struct Taken {
    stream: UnixStream,
    pub fds: Vec<OwnedFd>,
    pub previous_pid: u32,
    previous_instance: String,
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

/// A completed exchange on the old server's side, for the supervisor.
pub struct Handed {
    pub stream: UnixStream,
    pub pid: u32,
    pub instance: String,
}

/// Asks the server listening on `path` for its sockets. `None` when no
/// server answers there (nothing at `path`, or a stale socket file left by
/// a server that stopped, which is removed); an error when a server is
/// there but the hand-over fails, or `path` is not a socket.
pub fn take_over(path: &Path) -> Result<Option<Taken>, String> {
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
    set_timeouts(&stream).map_err(|e| fail(e.to_string()))?;
    let me = std::process::id();
    // A failed write is not the end: a server that refuses at once may
    // have closed already, and its answer says why.
    let sent = (&stream).write_all(format!("{MAGIC} {VERSION} pid={me}\n").as_bytes());
    let (line, fds) = read_line_with_fds(&stream).map_err(|e| fail(e.to_string()))?;
    let Some(line) = line else {
        return Err(fail(match sent {
            Ok(()) => "it closed without an answer".into(),
            Err(e) => format!("cannot send the request: {e}"),
        }));
    };
    if let Some(why) = line.strip_prefix(&format!("{MAGIC} {VERSION} refused ")) {
        return Err(fail(format!("it refused: {why}")));
    }
    let offer = parse_offer(&line).ok_or_else(|| fail(format!("unexpected answer {line:?}")))?;
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
        previous_instance: offer.instance,
    }))
}

impl Taken {
    /// Tells the previous server that this one (`instance`) accepts on the
    /// sockets and owns PATH now, so it drains, and takes its stream.
    pub fn confirm(self, instance: &str) -> Result<Continued, String> {
        let from = self.previous_pid;
        let fail = |what: String| format!("the previous server (pid {from}) {what}");
        let me = std::process::id();
        (&self.stream)
            .write_all(format!("serving pid={me} instance={instance}\n").as_bytes())
            .map_err(|e| fail(format!("did not take the confirmation: {e}")))?;
        match read_line_alone(&self.stream) {
            Ok(Some(line)) if line == "draining" => {}
            Ok(other) => return Err(fail(format!("answered {other:?} instead of draining"))),
            Err(e) => return Err(fail(format!("did not confirm its drain: {e}"))),
        }
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
            history_entries = state.entries.len()
        );
        Ok(Continued {
            state,
            stream: self.stream,
            decoder,
            previous_instance: self.previous_instance,
        })
    }
}

/// Listens on `path` for the next server and gives it `sockets` (copies of
/// the ones the workers serve). When a hand-over completes, passes the
/// connection to the supervisor through `handed` (it sends the stream,
/// marks the sockets shared and starts the drain) and gives up `path`,
/// which the new server owns by then.
pub fn offer(
    path: &Path,
    sockets: Vec<OwnedFd>,
    instance: String,
    handed: Sender<Handed>,
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
        .spawn(move || serve(listener, &path, &sockets, &instance, &handed, &wakeups))
        .map_err(|e| format!("cannot start the hand-over thread: {e}"))?;
    Ok(())
}

fn serve(
    mut listener: UnixListener,
    path: &Path,
    sockets: &[OwnedFd],
    instance: &str,
    handed: &Sender<Handed>,
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
        match exchange(&stream, sockets, instance) {
            Err(Failure { why, sent: false }) => {
                log!(Warn, format!("hand-over refused: {why}; still serving"));
                let refusal = format!("{MAGIC} {VERSION} refused {why}\n");
                let _ = (&stream).write_all(refusal.as_bytes());
            }
            Ok((pid, peer)) => {
                log!(
                    Warn,
                    "handed the listening sockets over; passing the stream and draining without accepting",
                    to_pid = pid,
                    fds = describe(sockets)
                );
                let done = Handed {
                    stream,
                    pid,
                    instance: peer,
                };
                if handed.send(done).is_ok() {
                    wakeups.wake_supervisor();
                }
                return;
            }
            Err(Failure { why, sent: true }) => {
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
            }
        }
    }
}

struct Failure {
    why: String,
    /// The sockets were sent before it failed.
    sent: bool,
}

/// The old server's side of one exchange, bounded by `EXCHANGE_LIMIT`; the
/// new server's pid and instance on success.
fn exchange(
    stream: &UnixStream,
    sockets: &[OwnedFd],
    instance: &str,
) -> Result<(u32, String), Failure> {
    let early = |why: String| Failure { why, sent: false };
    let limit = Limit::from_now(EXCHANGE_LIMIT);
    stream
        .set_write_timeout(Some(EXCHANGE_LIMIT))
        .map_err(|e| early(e.to_string()))?;
    let uid = peer_uid(stream).map_err(|e| early(format!("cannot read the peer's uid: {e}")))?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if uid != me {
        return Err(early(format!(
            "peer uid {uid} is not this server's uid {me}"
        )));
    }
    let request = match limit
        .arm(stream)
        .and_then(|()| read_line_limited(stream, &limit))
    {
        Ok(Some(line)) => line,
        Ok(None) => return Err(early("the peer closed without a request".into())),
        Err(e) => return Err(early(format!("no request: {e}"))),
    };
    let pid = parse_request(&request).ok_or_else(|| early(format!("bad request {request:?}")))?;
    let header = format!(
        "{MAGIC} {VERSION} fds={} pid={} instance={instance}\n",
        sockets.len(),
        std::process::id()
    );
    let fds: Vec<BorrowedFd<'_>> = sockets.iter().map(AsFd::as_fd).collect();
    send_with_fds(stream, header.as_bytes(), &fds)
        .map_err(|e| early(format!("cannot send the sockets: {e}")))?;
    log!(
        Info,
        "sent the listening sockets to a new server",
        to_pid = pid,
        fds = describe(sockets)
    );
    let late = |why: String| Failure { why, sent: true };
    match read_line_limited(stream, &limit) {
        Ok(Some(line)) => match parse_serving(&line, pid) {
            Some(peer) => Ok((pid, peer)),
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
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete exchange within {EXCHANGE_LIMIT:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))
    }
}

/// One line (without its newline), each read bounded by `limit`; `None`
/// if the peer closed first.
fn read_line_limited(stream: &UnixStream, limit: &Limit) -> io::Result<Option<String>> {
    read_line_bytewise(stream, || limit.arm(stream))
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

fn set_timeouts(stream: &UnixStream) -> io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))
}

struct Offer {
    fds: usize,
    pid: u32,
    instance: String,
}

/// `wsnotify-handover 2 fds=N pid=P instance=I`
fn parse_offer(line: &str) -> Option<Offer> {
    let rest = line.strip_prefix(&format!("{MAGIC} {VERSION} "))?;
    let mut fields = rest.split(' ');
    let fds = fields.next()?.strip_prefix("fds=")?.parse().ok()?;
    let pid = fields.next()?.strip_prefix("pid=")?.parse().ok()?;
    let instance = fields.next()?.strip_prefix("instance=")?;
    if instance.is_empty() || fields.next().is_some() {
        return None;
    }
    Some(Offer {
        fds,
        pid,
        instance: instance.to_owned(),
    })
}

/// `serving pid=P instance=I` from the new server `pid`: its instance.
fn parse_serving(line: &str, pid: u32) -> Option<String> {
    let rest = line.strip_prefix(&format!("serving pid={pid} instance="))?;
    (!rest.is_empty() && !rest.contains(' ')).then(|| rest.to_owned())
}

/// `wsnotify-handover 2 pid=P`: the new server's pid.
fn parse_request(line: &str) -> Option<u32> {
    line.strip_prefix(&format!("{MAGIC} {VERSION} pid="))?
        .parse()
        .ok()
}

/// The descriptors and what they listen on, for the logs of both sides.
fn describe(fds: &[OwnedFd]) -> String {
    fds.iter()
        .map(|fd| {
            let addr = socket2::SockRef::from(fd)
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map_or_else(|| "?".to_owned(), |a| a.to_string());
            format!("{}={addr}", fd.as_raw_fd())
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len describe a ucred, as SO_PEERCRED expects.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Reads one line (without its newline); `None` if the peer closed first.
/// Descriptors sent with its first bytes come back with it.
fn read_line_with_fds(stream: &UnixStream) -> io::Result<(Option<String>, Vec<OwnedFd>)> {
    let mut buf = [0u8; MAX_LINE];
    let (mut len, fds) = recv_with_fds(stream, &mut buf)?;
    if len == 0 {
        return Ok((None, fds));
    }
    while !buf[..len].contains(&b'\n') {
        if len == MAX_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        match (&*stream).read(&mut buf[len..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => len += n,
        }
    }
    let end = buf[..len].iter().position(|&b| b == b'\n').unwrap_or(len);
    let line = std::str::from_utf8(&buf[..end])
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))?;
    Ok((Some(line.to_owned()), fds))
}

fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let data_len = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(data_len as u32) } as usize;
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the fields set below point at
    // buffers that outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer holds CMSG_SPACE(data_len) bytes, so
        // the first header and its data fit.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len as u32) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                data_len,
            );
        }
    }
    // SAFETY: msg is fully initialized above.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // The descriptors travel with the first byte: the rest may follow plainly.
    let sent = sent as usize;
    if sent < bytes.len() {
        (&*stream).write_all(&bytes[sent..])?;
    }
    Ok(())
}

fn recv_with_fds(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in send_with_fds.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let received = loop {
        // SAFETY: msg points at live buffers of the sizes it states.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with well-formed headers of
    // msg_controllen bytes; each SCM_RIGHTS payload is an array of new
    // descriptors that now belong to this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors passed",
        ));
    }
    Ok((received, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_the_protocol() {
        let offer = parse_offer("wsnotify-handover 2 fds=3 pid=42 instance=ab12").unwrap();
        assert_eq!(
            (offer.fds, offer.pid, offer.instance.as_str()),
            (3, 42, "ab12")
        );
        assert!(parse_offer("wsnotify-handover 1 fds=3 pid=42 instance=ab12").is_none());
        assert!(parse_offer("wsnotify-handover 2 fds=x pid=42 instance=ab12").is_none());
        assert!(parse_offer("wsnotify-handover 2 fds=3 pid=42").is_none());
        assert!(parse_offer("wsnotify-handover 2 fds=3 pid=42 instance=").is_none());
        assert_eq!(parse_request("wsnotify-handover 2 pid=7"), Some(7));
        assert_eq!(parse_request("wsnotify-handover 2 pid=7 extra"), None);
        assert_eq!(parse_request("hello"), None);
        assert_eq!(
            parse_serving("serving pid=7 instance=cd34", 7).as_deref(),
            Some("cd34")
        );
        assert_eq!(parse_serving("serving pid=8 instance=cd34", 7), None);
        assert_eq!(parse_serving("serving pid=7 instance=", 7), None);
    }

    #[test]
    fn descriptors_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        send_with_fds(&a, b"one line\n", &[listener.as_fd()]).unwrap();
        let (line, fds) = read_line_with_fds(&b).unwrap();
        assert_eq!(line.as_deref(), Some("one line"));
        assert_eq!(fds.len(), 1);
        let received = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(received.local_addr().unwrap(), addr);
        drop(a);
        assert_eq!(read_line_with_fds(&b).unwrap().0, None);
    }
}
