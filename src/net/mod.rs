//! The I/O shell: mio event loops that move bytes between sockets and the
//! protocol core.

mod admission;
mod closing;
pub mod conn;
mod drain;
mod fanout;
mod fd_limit;
mod http_conn;
pub mod listen;
pub mod mailbox;
pub mod redis;
mod redis_conn;
mod redis_queue;
pub mod redis_resolve;
mod remote;
pub mod signals;
mod socket_write;
pub mod supervisor;
pub mod timer_wheel;
pub mod worker;
pub mod write_queue;
mod ws_conn;
