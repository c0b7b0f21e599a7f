//! Whole workers in memory: every test drives one or more `Node`s through
//! the harness, with a fake clock and byte-buffer sockets, in milliseconds.

mod clients;
mod drain;
mod harness;
mod http;
mod timers;
mod workers;
