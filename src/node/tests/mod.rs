//! Whole workers in memory: every test drives one or more `Node`s through
//! the harness, with a fake clock and byte-buffer sockets, in milliseconds.

mod channels;
mod clients;
mod compression;
mod drain;
mod handover;
pub mod harness;
mod http;
mod redis;
mod redis_channels;
mod resume;
mod timers;
mod tokens;
mod workers;
