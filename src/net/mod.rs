//! The I/O shell: the mio loops that own the sockets, the clock and the
//! threads, and move bytes between the kernel and each worker's `Node`
//! (`crate::node`), which decides everything. Also what a process needs
//! before and around its workers: binding or inheriting the listening
//! sockets, the hand-over, signals, and the supervisor.

mod clock;
mod fd_limit;
pub mod handover;
pub mod listen;
pub mod listen_fds;
pub mod listeners;
mod peer_io;
pub mod redis_io;
pub mod redis_resolve;
pub mod signals;
mod socket_write;
mod sockets;
pub mod supervisor;
pub mod wakeups;
pub mod worker;
