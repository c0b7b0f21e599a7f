//! Memory under a broadcast storm: clients that stop reading cannot make
//! the process hold more than `--max-total-queue-bytes` in their queues.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

const CLIENTS: usize = 2_000;
const BROADCASTS: usize = 20_000;
/// Requests written at once on the publisher's connection.
const BATCH: usize = 50;
const TOTAL_QUEUE_MIB: u64 = 32;
/// What the peak RSS may exceed the RSS with every client connected by:
/// the queue bound, plus room for the allocator's slack and the shared
/// frames themselves (see docs/limits.md).
const HEADROOM_MIB: u64 = 2 * TOTAL_QUEUE_MIB;

#[test]
fn clients_that_stop_reading_keep_the_peak_rss_under_the_bound() {
    let bound = (TOTAL_QUEUE_MIB << 20).to_string();
    let server = Server::start(&[
        "--max-connections",
        "2100",
        "--notify-interval",
        "0",
        "--max-total-queue-bytes",
        &bound,
        "--log-level",
        "error",
    ]);
    // Each client reads its welcome, then never reads again.
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut c = raw_ws(&server, "/ws");
            read_frame(&mut c).expect("welcome");
            c
        })
        .collect();
    let connected_kib = server.memory_kib("VmRSS");

    let started = Instant::now();
    let body = format!(r#"{{"message":"{}"}}"#, "x".repeat(80));
    let request = format!(
        "POST /broadcast HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let batch = request.repeat(BATCH);
    for _ in 0..BROADCASTS / BATCH {
        // A connection per batch: keep-alive connections serve a bounded
        // number of requests.
        let mut publisher = TcpStream::connect(server.addr).unwrap();
        publisher
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        publisher.write_all(batch.as_bytes()).unwrap();
        for _ in 0..BATCH {
            assert_eq!(read_response(&mut publisher).0, 200);
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the storm took too long"
        );
    }
    let peak_kib = server.memory_kib("VmHWM");
    let metrics = metrics_text(&server);
    let shed = metric(
        &metrics,
        r#"wsnotify_limit_hits_total{limit="total_queue"}"#,
    );
    println!(
        "{BROADCASTS} broadcasts to {CLIENTS} clients that stopped reading in {:.1} s: \
         RSS {connected_kib} KiB connected, peak {peak_kib} KiB; {shed} clients dropped \
         past --max-total-queue-bytes {TOTAL_QUEUE_MIB} MiB",
        started.elapsed().as_secs_f64()
    );
    assert!(shed > 0.0, "the total bound was never reached");
    assert!(
        peak_kib < connected_kib + (HEADROOM_MIB << 10),
        "peak RSS {peak_kib} KiB is more than {HEADROOM_MIB} MiB over {connected_kib} KiB"
    );
    drop(clients);
}
