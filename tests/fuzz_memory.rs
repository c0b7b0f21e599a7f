//! A bounded smoke run of the in-memory connection fuzz target on the
//! stable toolchain: its harness (`fuzz/harness/memory.rs`) replays the
//! connection seeds and a few thousand generated inputs. The fuzzing itself
//! is `cargo +nightly fuzz run connection_memory` (fuzz/README.md).

use std::time::{Duration, Instant};

#[path = "../fuzz/harness/memory.rs"]
mod memory;
#[path = "../fuzz/harness/records.rs"]
mod records;

#[test]
fn the_seeds_replay() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/connection");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        memory::run(&bytes);
        count += 1;
    }
    assert!(count > 10, "only {count} seeds in {dir}");
}

/// Generated inputs: every path and flag combination, with payloads that
/// mix frame-record bytes and printable HTTP-ish text.
#[test]
fn generated_inputs_hold_the_invariants() {
    let started = Instant::now();
    let mut rng = records::Rng(0x2545_F491_4F6C_DD1D);
    for _ in 0..4000 {
        let len = 3 + (rng.next() % 700) as usize;
        let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.next() % 4 == 0 {
            let text = b"GET / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc";
            input.truncate(3);
            input.extend_from_slice(text);
        }
        memory::run(&input);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the smoke run is meant to take seconds"
    );
}
