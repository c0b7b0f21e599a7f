//! Whole connections in memory: the server's connection state machine and
//! application, driven as the worker drives them, with a fake clock (see
//! `fuzz/harness/memory.rs` for the input layout and the invariants). The
//! loopback target `connection` checks the same against the real worker.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/memory.rs"]
mod memory;
#[path = "../harness/records.rs"]
mod records;
// wire.rs also hands node_memory what the client read; this target only
// needs its checks.
#[allow(dead_code)]
#[path = "../harness/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| memory::run(data));
