//! One connection as data: a state machine with no socket and no clock.
//!
//! The shell feeds it the bytes it read and the current tick; it answers
//! with what happened ([`Event`]), keeps what is to be sent in its queue
//! ([`Connection::out`]), and says when it next needs the clock
//! ([`Connection::deadline`]). Its phases: HTTP (requests, keep-alive,
//! pipelining, 100-continue, a parked request, backpressure), WebSocket
//! (messages, control frames, ping and idle timers, the slow-consumer
//! verdict) and closing (the close handshake, waiting for the peer's Close,
//! the linger). [`Connection::enter`] is the one place the phase changes.
//!
//! `C` is what the application attaches to a WebSocket client (its
//! endpoint and id); the connection only carries it.

pub mod batch;
mod closing;
mod event;
mod http;
mod machine;
mod settings;
mod state;
pub mod write_queue;
mod ws;

#[cfg(test)]
mod tests;

pub use batch::Batch;
pub use event::{Closed, Ending, Event, Stale, Verdict};
pub use machine::Connection;
pub use settings::{Settings, Tick, MAX_HTTP_QUEUED, NEVER};
pub use state::Stage;
pub use write_queue::{Chunk, WriteQueue};
pub use ws::NotOpen;
