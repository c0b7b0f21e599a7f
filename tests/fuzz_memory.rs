//! A bounded smoke run of the in-memory fuzz targets on the stable
//! toolchain: their harnesses (`fuzz/harness/memory.rs` for one
//! connection, `fuzz/harness/node.rs` for whole workers) replay their
//! seeds and a few thousand generated inputs each. The fuzzing itself is
//! `cargo +nightly fuzz run connection_memory` and `node_memory`
//! (fuzz/README.md).

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../fuzz/harness/memory.rs"]
mod memory;
#[path = "../fuzz/harness/node.rs"]
mod node;
#[path = "../fuzz/harness/records.rs"]
mod records;
#[path = "../fuzz/harness/wire.rs"]
mod wire;

/// Runs `target` on every seed in `fuzz/seeds/<dir>`; returns how many.
fn replay(dir: &str, target: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(dir);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        target(&std::fs::read(entry.unwrap().path()).unwrap());
        count += 1;
    }
    count
}

#[test]
fn the_connection_seeds_replay() {
    let count = replay("connection", memory::run);
    assert!(count > 10, "only {count} connection seeds");
}

#[test]
fn the_node_seeds_replay() {
    let count = replay("node_memory", node::run);
    assert!(count >= 8, "only {count} node_memory seeds");
}

/// The server bug the node target found (fuzz/README.md, "Findings
/// (`node_memory`)"): a client dropped as a slow consumer before its `101`
/// was written read a Close frame where its `101` was due.
#[test]
fn a_client_dropped_before_its_101_still_reads_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds/node_memory/slow_consumer_before_its_101");
    node::run(&std::fs::read(path).unwrap());
}

/// Generated inputs: every path and flag combination, with payloads that
/// mix frame-record bytes and printable HTTP-ish text.
#[test]
fn generated_connections_hold_the_invariants() {
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

/// Generated scripts: random bytes are scripts too (every byte string
/// decodes); a seed's configuration with a random tail reaches further,
/// since its accepts and upgrades give the later operations clients.
#[test]
fn generated_scripts_hold_the_invariants() {
    let started = Instant::now();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/node_memory");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    let mut rng = records::Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..3000 {
        let len = (rng.next() % 400) as usize;
        let mut input = match i % 2 {
            0 => Vec::new(),
            _ => {
                let seed = &seeds[(rng.next() as usize) % seeds.len()];
                seed[..(rng.next() as usize) % (seed.len() + 1)].to_vec()
            }
        };
        input.extend((0..len).map(|_| rng.next() as u8));
        node::run(&input);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the smoke run is meant to take seconds"
    );
}
