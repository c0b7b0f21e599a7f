//! Writes to sockets with `sendmsg` instead of `writev`.
//!
//! The socket calls go straight to the protocol and skip the file layer
//! (descriptor position locking, the generic iterator path), a visible share
//! of each small write on loopback fanout. `MSG_NOSIGNAL` keeps a peer that
//! went away from raising SIGPIPE.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Sends as much of `buf` as the socket takes in one call: one buffer
/// needs no message header, and the kernel takes the shorter path.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the buffer is valid for its length; the descriptor is
    // borrowed, so it stays open for the call.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    result(n)
}

/// Sends as much of `bufs`, in order, as the socket takes in one call.
pub fn sendmsg(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: msg points at `bufs`, which outlive the call; the descriptor
    // is borrowed, so it stays open for the call.
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    result(n)
}

fn result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    #[test]
    fn frames_arrive_in_order_and_a_full_socket_would_block() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sender = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut receiver, _) = listener.accept().unwrap();
        let slices = [IoSlice::new(b"ab"), IoSlice::new(b"cde")];
        assert_eq!(sendmsg(sender.as_fd(), &slices).unwrap(), 5);
        let mut got = [0u8; 5];
        receiver.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcde");

        sender.set_nonblocking(true).unwrap();
        let big = vec![0u8; 1 << 20];
        let error = loop {
            match sendmsg(sender.as_fd(), &[IoSlice::new(&big)]) {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }
}
