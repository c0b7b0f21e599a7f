//! The drain's notices while publishers flood the server with chats. In a
//! file of its own: the flood keeps the machine busy for seconds, and cargo
//! runs test files one after another, so it does not skew the timing of
//! the other drain tests.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use support::*;

/// Reads every client until each has seen `needle` or `timeout` passes;
/// returns how many saw it. One thread, non-blocking sockets: the clients
/// must keep up with a flood of broadcasts, which a thread per client on a
/// small machine would not.
fn count_seen(streams: &mut [TcpStream], needle: &[u8], timeout: Duration) -> usize {
    let mut seen = vec![false; streams.len()];
    // A client the server closed before the needle: nothing more to read.
    let mut ended = vec![false; streams.len()];
    // The last bytes of each client's previous read, so a needle split
    // across two reads is still found.
    let mut tails: Vec<Vec<u8>> = vec![Vec::new(); streams.len()];
    let mut buf = vec![0u8; 64 * 1024];
    let until = Instant::now() + timeout;
    let waiting = |seen: &[bool], ended: &[bool], i: usize| !seen[i] && !ended[i];
    while (0..streams.len()).any(|i| waiting(&seen, &ended, i)) && Instant::now() < until {
        let mut idle = true;
        for (i, stream) in streams.iter_mut().enumerate() {
            if !waiting(&seen, &ended, i) {
                continue;
            }
            let n = match std::io::Read::read(stream, &mut buf) {
                Ok(0) => {
                    ended[i] = true;
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("client {i}: {e}"),
            };
            idle = false;
            let tail = &mut tails[i];
            tail.extend_from_slice(&buf[..n]);
            seen[i] = tail.windows(needle.len()).any(|w| w == needle);
            let keep = tail.len().saturating_sub(needle.len());
            tail.drain(..keep);
        }
        if idle {
            // Until one of the clients still waiting has bytes to read.
            let mut fds: Vec<libc::pollfd> = streams
                .iter()
                .enumerate()
                .filter(|(i, _)| waiting(&seen, &ended, *i))
                .map(|(_, stream)| libc::pollfd {
                    fd: stream.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let left = until.saturating_duration_since(Instant::now());
            // SAFETY: `fds` is a live array of `fds.len()` pollfd entries.
            unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    left.as_millis().min(i32::MAX as u128) as i32,
                )
            };
        }
    }
    seen.iter().filter(|s| **s).count()
}

/// Publishers whose reads each hold thousands of chats while the signal
/// arrives: the notices must not wait for a pass over every client per
/// chat (before the fix one read of a publisher cost that, and the drain's
/// notices, written between loop turns, came tens of seconds late).
#[test]
fn notices_go_out_while_publishers_flood_chats() {
    const CLIENTS: usize = 200;
    const PUBLISHERS: usize = 3;
    const BURST: usize = 7_000;
    let mut server = Server::start(&[
        "--notify-interval",
        "0",
        "--drain-timeout",
        "30s",
        "--max-queue-bytes",
        "67108864",
        // The flood is the point here, not the process-wide bound on
        // queued bytes (tests/storm.rs).
        "--max-total-queue-bytes",
        "4294967296",
    ]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| raw_ws(&server, "/ws")).collect();
    let mut publishers: Vec<TcpStream> = (0..PUBLISHERS).map(|_| raw_ws(&server, "/ws")).collect();
    // The publishers get every broadcast too: read and dropped, so the
    // server never takes them for slow consumers.
    let drains: Vec<_> = publishers
        .iter()
        .map(|p| {
            let mut p = p.try_clone().unwrap();
            p.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(std::io::Read::read(&mut p, &mut buf), Ok(n) if n > 0) {}
            })
        })
        .collect();
    for client in &mut clients {
        // The welcome: the client has joined.
        read_frame(client).expect("welcome");
        client.set_nonblocking(true).unwrap();
    }
    let chat = client_frame(0x81, br#"{"type":"chat","message":"x"}"#);
    // A steady trickle first, then a burst per publisher (four 64 KiB reads
    // of chats each), and the signal right behind it.
    for _ in 0..20 {
        publishers[0].write_all(&chat).unwrap();
        // Pacing, not a wait: a chat every 25 ms is the trickle.
        std::thread::sleep(Duration::from_millis(25));
    }
    let burst = chat.repeat(BURST);
    for publisher in &mut publishers {
        publisher.write_all(&burst).unwrap();
    }
    server.signal(SIGTERM);
    // A timeout, not a latency bound: the notice takes milliseconds.
    let notified = count_seen(
        &mut clients,
        b"\"shutdown_notice\"",
        Duration::from_secs(10),
    );
    println!("{notified} of {CLIENTS} clients got their notice");
    assert_eq!(notified, CLIENTS);
    drop(clients);
    for publisher in &publishers {
        // Also ends the reading clones.
        let _ = publisher.shutdown(std::net::Shutdown::Both);
    }
    assert_eq!(
        server
            .wait_exit(Duration::from_secs(10))
            .expect("exit")
            .code(),
        Some(0)
    );
    for drain in drains {
        drain.join().unwrap();
    }
}
