//! Writes to sockets with `send`/`sendmsg` instead of `write`/`writev`.
//!
//! The socket calls go straight to the protocol and skip the file layer
//! (descriptor position locking, the generic iterator path), a visible share
//! of each small write on loopback fanout. `MSG_NOSIGNAL` keeps a peer that
//! went away from raising SIGPIPE.

use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;

pub use crate::conn::write_queue::MAX_IOVECS;

/// Writes to a socket the caller holds open for as long as it borrows it.
pub struct SocketWriter<'a>(pub BorrowedFd<'a>);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: the buffer is valid for its length; the descriptor is
        // borrowed, so it stays open for the call.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        result(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sendmsg(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The slices for up to MAX_IOVECS frames: built once per delivery pass,
/// since every client gets the same frames.
pub fn slices_of(frames: &[Arc<[u8]>]) -> ([IoSlice<'_>; MAX_IOVECS], usize) {
    let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
    for (slot, frame) in slices.iter_mut().zip(frames) {
        *slot = IoSlice::new(frame);
    }
    (slices, frames.len().min(MAX_IOVECS))
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
        let frames: Vec<Arc<[u8]>> = vec![Arc::from(&b"ab"[..]), Arc::from(&b"cde"[..])];
        let (slices, count) = slices_of(&frames);
        assert_eq!(sendmsg(sender.as_fd(), &slices[..count]).unwrap(), 5);
        let mut got = [0u8; 5];
        receiver.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcde");

        sender.set_nonblocking(true).unwrap();
        let big: Vec<Arc<[u8]>> = vec![Arc::from(vec![0u8; 1 << 20])];
        let (slices, count) = slices_of(&big);
        let error = loop {
            match sendmsg(sender.as_fd(), &slices[..count]) {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }
}
