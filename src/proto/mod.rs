//! The protocol core: pure functions and state machines over bytes, with no
//! sockets and no clock, so every rule can be unit-tested.

pub mod close;
pub mod deflate;
pub mod fault;
pub mod frame;
pub mod handshake;
pub mod http;
pub mod message;
pub mod negotiate;
pub mod resp;
pub mod status;
