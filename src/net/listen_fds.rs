//! Socket activation: the sd_listen_fds protocol, by hand. systemd (or any
//! supervisor that speaks it) passes listening sockets from descriptor 3 on
//! and names how many in `LISTEN_FDS`, for the process in `LISTEN_PID`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The first passed descriptor (SD_LISTEN_FDS_START).
const FIRST_FD: RawFd = 3;
/// More than any unit would pass; a larger count is a broken environment.
const MAX_FDS: usize = 1024;

/// Takes the sockets passed by socket activation, if any were passed to this
/// process. The variables are removed either way, so a child would not take
/// them for its own. Must run before any other thread starts: it changes the
/// environment.
///
/// An error is a descriptor that cannot be served (not open, not a
/// listening TCP socket) or a malformed count.
pub fn take() -> Result<Option<Vec<OwnedFd>>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    // Meant for another process (e.g. inherited through a shell): not ours.
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let count: usize = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=MAX_FDS).contains(n))
        .ok_or_else(|| format!("LISTEN_FDS={count:?}: expected a count from 1 to {MAX_FDS}"))?;
    let mut fds = Vec::with_capacity(count);
    for fd in FIRST_FD..FIRST_FD + count as RawFd {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(format!(
                "inherited descriptor {fd} (LISTEN_FDS={count}) is not open"
            ));
        }
        // SAFETY: the descriptor is open, and the protocol hands it to this
        // process alone; nothing else in the process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        set_cloexec(owned.as_raw_fd())
            .map_err(|e| format!("inherited descriptor {fd}: cannot set FD_CLOEXEC: {e}"))?;
        check_listening_tcp(owned.as_fd()).map_err(|why| {
            format!("inherited descriptor {fd} is not a listening TCP socket: {why}")
        })?;
        fds.push(owned);
    }
    Ok(Some(fds))
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Accepts a stream socket of the IPv4 or IPv6 family that is listening;
/// anything else (a file, a UDP or unix socket, a socket nobody called
/// `listen` on) is refused with the reason.
pub fn check_listening_tcp(fd: BorrowedFd<'_>) -> Result<(), String> {
    let raw = fd.as_raw_fd();
    let option = |name| getsockopt_int(raw, name).map_err(|e| format!("not a socket ({e})"));
    let kind = option(libc::SO_TYPE)?;
    if kind != libc::SOCK_STREAM {
        return Err(format!("socket type {kind}, not SOCK_STREAM"));
    }
    let family = option(libc::SO_DOMAIN)?;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(format!("address family {family}, not AF_INET or AF_INET6"));
    }
    if option(libc::SO_ACCEPTCONN)? == 0 {
        return Err("not listening".into());
    }
    Ok(())
}

fn getsockopt_int(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len point at a c_int and its size, as SOL_SOCKET
    // integer options expect.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_listening_tcp_socket_from_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening_tcp(listener.as_fd()), Ok(()));

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_listening_tcp(udp.as_fd())
            .unwrap_err()
            .contains("not SOCK_STREAM"));

        let unbound =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        assert_eq!(
            check_listening_tcp(unbound.as_fd()),
            Err("not listening".into())
        );

        let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(check_listening_tcp(unix.as_fd())
            .unwrap_err()
            .contains("not AF_INET"));

        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(check_listening_tcp(file.as_fd())
            .unwrap_err()
            .starts_with("not a socket"));
    }
}
