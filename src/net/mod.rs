//! The I/O shell: mio event loops that move bytes between sockets and the
//! connection state machines (`crate::conn`), and carry out what the
//! application (`crate::app`) decides. No protocol or application rule
//! lives here.

mod actions;
mod admission;
mod delivery;
mod drain;
mod fd_limit;
pub mod handover;
pub mod listen;
pub mod listen_fds;
pub mod listener_state;
pub mod listeners;
pub mod mailbox;
mod notice;
mod queue_bound;
mod reading;
pub mod redis;
mod redis_conn;
mod redis_liveness;
mod redis_queue;
pub mod redis_resolve;
mod redis_stream;
mod remote;
pub mod shared;
pub mod signals;
mod slot;
mod socket_write;
mod stream;
pub mod supervisor;
pub mod timer_wheel;
pub mod worker;
mod writing;
