//! The shell and the link together, against a fake Redis on loopback.

use super::*;
use crate::node::redis::Event;
use crate::rand::Rng;
use mio::{Events, Poll, Waker};
use std::sync::{mpsc, Arc};
use std::time::Duration;

const TOKENS: [Token; 2] = [Token(1), Token(2)];
const WAKER: Token = Token(9);

fn loopback(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
}

/// A resolver as slow as DNS on a bad day.
fn slow_loopback(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    std::thread::sleep(Duration::from_millis(500));
    loopback(host, port)
}

/// A fake Redis that answers SUBSCRIBE and the stream position, and sends
/// every later chunk it reads (the publications) to the receiver.
fn fake_redis() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let mut buf = [0u8; 4096];
                let mut first = true;
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    let asked = |word: &[u8]| buf[..n].windows(word.len()).any(|w| w == word);
                    if !first {
                        let _ = tx.send(buf[..n].to_vec());
                    } else if asked(b"SUBSCRIBE") {
                        stream
                            .write_all(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
                            .unwrap();
                    } else if asked(b"EVAL") {
                        stream.write_all(b"*2\r\n$2\r\ne1\r\n:0\r\n").unwrap();
                    }
                    first = false;
                }
            });
        }
    });
    (port, rx)
}

/// The worker's loop, in short, until `done` says so of the events seen.
fn run_until(
    link: &mut RedisLink,
    io: &mut RedisIo,
    poll: &mut Poll,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let mut ready = Events::with_capacity(8);
    let mut scratch = [0u8; 1024];
    let end = Instant::now() + Duration::from_secs(5);
    while !done(&seen) {
        assert!(Instant::now() < end, "not done: {link:?}, {seen:?}");
        poll.poll(&mut ready, Some(Duration::from_millis(50)))
            .unwrap();
        let now = Instant::now();
        for event in ready.iter() {
            io.on_ready(event.token(), &mut scratch, |input| link.handle(input, now));
        }
        if link.next_deadline().is_some_and(|at| at <= now) {
            link.on_timer(now);
        }
        io.settle(link, poll.registry(), now);
        seen.extend(std::iter::from_fn(|| link.poll_event()));
    }
    seen
}

fn both_ready(seen: &[Event]) -> bool {
    seen.iter().filter(|e| **e == Event::Ready(true)).count() == 2
}

fn link_to(host: &str, port: u16) -> RedisLink {
    let url = format!("redis://{host}:{port}").parse().unwrap();
    RedisLink::new(url, "ch".into(), 1024, 16, Rng::from_os(), Instant::now())
}

#[test]
fn the_link_connects_both_sides_through_the_shell_and_publishes() {
    let (port, published) = fake_redis();
    let mut poll = Poll::new().unwrap();
    let mut io = RedisIo::new(TOKENS, loopback, Arc::new(|| {}));
    let mut link = link_to("127.0.0.1", port);

    let seen = run_until(&mut link, &mut io, &mut poll, both_ready);
    let position = Event::Position {
        epoch: "e1".into(),
        offset: 0,
    };
    assert!(seen.contains(&position), "{seen:?}");
    assert!(link.sequencing(Instant::now()));

    assert!(link.publish(b"hi there", Instant::now()));
    io.settle(&mut link, poll.registry(), Instant::now());
    assert!(link.unsent(Side::Publisher).is_empty(), "written at once");
    let chunk = published.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        chunk,
        crate::proto::resp::command(&[b"PUBLISH", b"ch", b"hi there"])
    );
}

#[test]
fn a_slow_lookup_never_blocks_the_loop_and_wakes_it_when_done() {
    let (port, _published) = fake_redis();
    let mut poll = Poll::new().unwrap();
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).unwrap());
    let wake: Wake = Arc::new(move || {
        let _ = waker.wake();
    });
    let mut io = RedisIo::new(TOKENS, slow_loopback, wake);
    let mut link = link_to("redis.test", port);

    let started = Instant::now();
    link.on_timer(started);
    io.settle(&mut link, poll.registry(), started);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(link.next_deadline(), None, "nothing due while looking up");

    let mut ready = Events::with_capacity(8);
    poll.poll(&mut ready, Some(Duration::from_secs(5))).unwrap();
    assert!(ready.iter().any(|e| e.token() == WAKER), "woken");
    io.settle(&mut link, poll.registry(), Instant::now());
    assert!(link.poll_output().is_none());
    assert!(
        link.next_deadline().is_some(),
        "a lookup handed in: a connect under way"
    );

    run_until(&mut link, &mut io, &mut poll, both_ready);
    assert!(link.publish(b"hi", Instant::now()));
}

#[test]
fn a_refused_connect_comes_back_as_a_failure_that_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut poll = Poll::new().unwrap();
    let mut io = RedisIo::new(TOKENS, loopback, Arc::new(|| {}));
    let mut link = link_to("127.0.0.1", port);
    let now = Instant::now();
    link.on_timer(now);

    // The loop written out, to see every failure the shell reports: a
    // connect refused at once, or when its socket is ready.
    let mut failures = Vec::new();
    let mut ready = Events::with_capacity(8);
    let mut scratch = [0u8; 64];
    while failures.len() < 2 {
        assert!(now.elapsed() < Duration::from_secs(5), "{failures:?}");
        io.finished_lookups(|input| link.handle(input, now));
        while let Some(out) = link.poll_output() {
            if let Some((side, why)) = io.carry_out(out, poll.registry()) {
                failures.push(why.clone());
                link.handle(LinkInput::Failed { side, why }, now);
            }
        }
        poll.poll(&mut ready, Some(Duration::from_millis(50)))
            .unwrap();
        for event in ready.iter() {
            io.on_ready(event.token(), &mut scratch, |input| {
                if let LinkInput::Failed { why, .. } = &input {
                    failures.push(why.clone());
                }
                link.handle(input, now);
            });
        }
    }
    assert!(
        failures.iter().all(|f| f.contains("refused")),
        "{failures:?}"
    );
    assert!(
        link.next_deadline() < Some(now + Duration::from_secs(1)),
        "backing off"
    );
    io.settle(&mut link, poll.registry(), now);
    assert!(io.sockets.iter().all(Option::is_none), "closed as asked");
}
