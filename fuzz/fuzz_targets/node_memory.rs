//! Whole workers in memory: one process's `Node`s driven as the mio shell
//! drives them, with a fake clock and byte-buffer sockets, by a script of
//! accepts, sends, slow and failing sockets, clock moves, the drain and
//! loop turns (see `fuzz/harness/node.rs` for the input layout and the
//! invariants).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/node.rs"]
mod node;
// records.rs also serves the connection targets; this one takes only its
// frame encoder.
#[allow(dead_code)]
#[path = "../harness/records.rs"]
mod records;
#[path = "../harness/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| node::run(data));
