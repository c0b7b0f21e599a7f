//! The connection in memory with a fake clock: every rule of its phases,
//! deterministic and without a socket.

use std::net::{Ipv4Addr, SocketAddr};

use super::*;
use crate::obs::metrics::Limit;
use crate::proto::close::CloseCode;
use crate::proto::deflate::Inflater;
use crate::proto::fault::{FrameError, HttpError};
use crate::proto::frame::{masked, Opcode};
use crate::proto::http::{Response, Status};
use crate::proto::message::Message;

/// The application's data for a client: here, just a number.
type Conn = Connection<u8>;

const SETTINGS: Settings = Settings {
    header: 10,
    idle: Some(50),
    ping: Some(20),
    linger: 30,
    max_message: 1024,
    max_queue: 4096,
};

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn peer() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 4000))
}

fn new_conn(now: Tick) -> Conn {
    Connection::new(peer(), now, &SETTINGS)
}

/// Everything the connection has queued, as the peer would read it.
fn sent(conn: &mut Conn) -> Vec<u8> {
    let mut wire = Vec::new();
    conn.flush_to(&mut wire).unwrap();
    wire
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Feeds `input` whole and collects every event, as the shell does, with
/// `answer` standing in for the application.
fn feed(
    conn: &mut Conn,
    mut input: &[u8],
    now: Tick,
    mut answer: impl FnMut(&mut Conn, &Event<u8>),
) -> Vec<Event<u8>> {
    let mut events = Vec::new();
    loop {
        let (used, event) = conn.receive(input, now, &SETTINGS, &mut Inflater::new());
        input = &input[used..];
        match event {
            Some(event) => {
                answer(conn, &event);
                events.push(event);
            }
            None => return events,
        }
    }
}

/// Answers every request with 200 and its path as the body.
fn ok(conn: &mut Conn, event: &Event<u8>) {
    if let Event::Request { request, .. } = event {
        let response = Response::new(Status::OK, "text/plain", request.path.clone());
        conn.respond(request, response, 0, &SETTINGS);
    }
}

fn upgraded(now: Tick) -> Conn {
    let mut conn = new_conn(now);
    let events = feed(&mut conn, UPGRADE, now, |conn, _| {
        assert!(conn.upgrade("accept", None, 7, now, &SETTINGS).is_empty());
    });
    assert!(matches!(events[..], [Event::Request { .. }]));
    assert!(text(&sent(&mut conn)).starts_with("HTTP/1.1 101 "));
    conn
}

fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked(0x80 | opcode, payload, [1, 2, 3, 4])
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut conn = new_conn(0);
    let events = feed(
        &mut conn,
        b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HT",
        0,
        ok,
    );
    assert_eq!(events.len(), 2);
    let wire = text(&sent(&mut conn));
    let a = wire.find("\r\n\r\n/a").unwrap();
    let b = wire.find("\r\n\r\n/b").unwrap();
    assert!(a < b, "{wire}");
    let events = feed(&mut conn, b"TP/1.1\r\nConnection: close\r\n\r\n", 0, ok);
    assert_eq!(events.len(), 1);
    assert!(text(&sent(&mut conn)).contains("Connection: close\r\n"));
    assert_eq!(conn.stage(), Stage::Closing);
}

#[test]
fn expect_100_continue_comes_before_the_body_only_when_it_is_missing() {
    let mut conn = new_conn(0);
    let head = b"POST /p HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n";
    assert!(feed(&mut conn, head, 0, ok).is_empty());
    assert_eq!(sent(&mut conn), b"HTTP/1.1 100 Continue\r\n\r\n");
    let events = feed(&mut conn, b"body", 0, |_, _| {});
    match &events[..] {
        [Event::Request { request, body }] => {
            assert_eq!(request.path, "/p");
            assert_eq!(body, b"body");
        }
        other => panic!("{other:?}"),
    }

    let mut conn = new_conn(0);
    let whole = b"POST /p HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi";
    assert_eq!(feed(&mut conn, whole, 0, |_, _| {}).len(), 1);
    assert!(sent(&mut conn).is_empty(), "the body is there: no 100");
}

#[test]
fn a_parked_request_holds_back_the_pipelined_ones() {
    let mut conn = new_conn(0);
    let events = feed(
        &mut conn,
        b"POST /notify HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n",
        0,
        |conn, event| {
            if let Event::Request { request, .. } = event {
                conn.park(3, request.clone());
            }
        },
    );
    assert_eq!(events.len(), 1, "the second waits for the first's answer");
    let wrong = conn.answer_parked(2, Response::new(Status::OK, "text/plain", ""), 0, &SETTINGS);
    assert_eq!(wrong.unwrap_err(), Stale);
    let answer = Response::new(Status::OK, "text/plain", "first");
    assert!(conn.answer_parked(3, answer, 0, &SETTINGS).is_ok());
    let events = feed(&mut conn, b"", 0, ok);
    assert_eq!(events.len(), 1);
    let wire = text(&sent(&mut conn));
    assert!(wire.find("first").unwrap() < wire.find("/next").unwrap());
}

#[test]
fn a_parked_request_that_waits_too_long_is_reported() {
    let mut conn = new_conn(0);
    feed(
        &mut conn,
        b"POST /notify HTTP/1.1\r\n\r\n",
        0,
        |conn, event| {
            if let Event::Request { request, .. } = event {
                conn.park(1, request.clone());
            }
        },
    );
    assert!(conn.on_deadline(9, &SETTINGS).is_none());
    assert!(matches!(
        conn.on_deadline(10, &SETTINGS),
        Some(Event::ParkExpired(1))
    ));
}

#[test]
fn http_backpressure_stops_reading_until_the_queue_drains() {
    let mut conn = new_conn(0);
    // One answer larger than the client may leave unread.
    let events = feed(&mut conn, b"GET /big HTTP/1.1\r\n\r\n", 0, |conn, event| {
        if let Event::Request { request, .. } = event {
            let big = Response::new(Status::OK, "text/plain", vec![b'x'; MAX_HTTP_QUEUED]);
            conn.respond(request, big, 0, &SETTINGS);
        }
    });
    assert!(matches!(
        events[..],
        [Event::Request { .. }, Event::Limit(Limit::HttpBackpressure)]
    ));
    assert!(matches!(conn.wants_input(), Err(None)), "counted once");
    let events = feed(&mut conn, b"GET /a HTTP/1.1\r\n\r\n", 0, ok);
    assert!(events.is_empty(), "no request is answered while stalled");
    sent(&mut conn);
    assert!(matches!(
        conn.after_flush(0, &SETTINGS),
        Some(Verdict::ResumeReading)
    ));
    assert!(conn.wants_input().is_ok());
    assert_eq!(feed(&mut conn, b"", 0, ok).len(), 1);
}

#[test]
fn head_timeout_and_keep_alive_timeout() {
    let mut conn = new_conn(0);
    feed(&mut conn, b"GET /a HT", 0, ok);
    assert_eq!(conn.deadline(&SETTINGS), 10);
    assert!(conn.on_deadline(9, &SETTINGS).is_none());
    assert!(matches!(
        conn.on_deadline(10, &SETTINGS),
        Some(Event::Refused(HttpError::Timeout))
    ));
    assert!(text(&sent(&mut conn)).starts_with("HTTP/1.1 408 "));
    assert_eq!(conn.stage(), Stage::Closing);

    let mut conn = new_conn(0);
    feed(&mut conn, b"GET /a HTTP/1.1\r\n\r\n", 5, |conn, event| {
        if let Event::Request { request, .. } = event {
            let response = Response::new(Status::OK, "text/plain", "");
            conn.respond(request, response, 5, &SETTINGS);
        }
    });
    sent(&mut conn);
    assert_eq!(conn.deadline(&SETTINGS), 15);
    assert!(matches!(
        conn.on_deadline(15, &SETTINGS),
        Some(Event::Closed(Closed::KeepAliveTimeout))
    ));
}

#[test]
fn bad_requests_are_refused_and_close() {
    let mut conn = new_conn(0);
    let events = feed(
        &mut conn,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        0,
        ok,
    );
    assert!(matches!(
        events[..],
        [Event::Refused(HttpError::ChunkedBody)]
    ));
    let wire = text(&sent(&mut conn));
    assert!(wire.starts_with("HTTP/1.1 411 ") && wire.contains("Connection: close"));
    assert!(matches!(
        conn.after_flush(0, &SETTINGS),
        Some(Verdict::ShutWrite)
    ));
    assert!(conn.after_flush(0, &SETTINGS).is_none(), "shut once");
    assert!(matches!(
        conn.on_deadline(30, &SETTINGS),
        Some(Event::Closed(Closed::LingerExpired))
    ));
}

#[test]
fn frames_sent_behind_the_upgrade_are_handed_back() {
    let mut conn = new_conn(0);
    let mut input = UPGRADE.to_vec();
    input.extend(client_frame(0x1, b"hi"));
    let mut early = Vec::new();
    let events = feed(&mut conn, &input, 0, |conn, _| {
        early = conn.upgrade("accept", None, 7, 0, &SETTINGS);
    });
    assert_eq!(events.len(), 1);
    assert_eq!(conn.client(), Some(&7));
    let events = feed(&mut conn, &early, 0, |_, _| {});
    assert!(matches!(&events[..], [Event::Message(Message::Text(t))] if t == "hi"));
}

#[test]
fn pings_are_answered_and_messages_become_events() {
    let mut conn = upgraded(0);
    let mut input = client_frame(0x9, b"p");
    input.extend(client_frame(0x2, &[1, 2]));
    input.extend(client_frame(0xA, b""));
    let events = feed(&mut conn, &input, 0, |_, _| {});
    assert!(matches!(&events[..], [Event::Message(Message::Binary(b))] if b == &[1, 2]));
    assert_eq!(sent(&mut conn), [0x8A, 0x01, b'p']);
}

#[test]
fn the_client_closes_and_the_connection_ends_when_quiet() {
    let mut conn = upgraded(0);
    let events = feed(
        &mut conn,
        &client_frame(0x8, &close_payload(1000, "bye")),
        3,
        |_, _| {},
    );
    assert!(matches!(
        events[..],
        [Event::Left {
            client: 7,
            why: Ending::PeerClosed
        }]
    ));
    assert_eq!(sent(&mut conn), [0x88, 0x02, 0x03, 0xE8]);
    assert!(matches!(
        conn.after_flush(3, &SETTINGS),
        Some(Verdict::CheckQuiet)
    ));
    assert!(matches!(
        conn.input_quiet(),
        Some(Event::Closed(Closed::Done))
    ));
}

#[test]
fn a_client_that_keeps_sending_after_its_close_is_waited_for() {
    let mut conn = upgraded(0);
    let mut input = client_frame(0x8, b"");
    input.extend(client_frame(0x1, b"late"));
    let events = feed(&mut conn, &input, 0, |_, _| {});
    assert!(matches!(events[..], [Event::Left { .. }]));
    assert_eq!(sent(&mut conn), [0x88, 0x00]);
    assert!(matches!(
        conn.after_flush(0, &SETTINGS),
        Some(Verdict::ShutWrite)
    ));
    assert!(conn.input_quiet().is_none(), "lingers until the FIN");
    assert!(matches!(
        conn.peer_eof(1, &SETTINGS),
        Some(Event::Closed(Closed::PeerClosed))
    ));
}

#[test]
fn our_close_waits_for_the_peers_close_within_the_linger() {
    let mut conn = upgraded(0);
    let left = conn.close(CloseCode::GOING_AWAY, "server shutting down", 4, &SETTINGS);
    assert!(matches!(
        left,
        Some(Event::Left {
            why: Ending::Server("server shutting down"),
            ..
        })
    ));
    let wire = sent(&mut conn);
    assert_eq!(&wire[..4], [0x88, 22, 0x03, 0xE9]);
    assert!(matches!(
        conn.after_flush(4, &SETTINGS),
        Some(Verdict::ShutWrite)
    ));
    assert_eq!(conn.deadline(&SETTINGS), 34);
    // Data frames still in flight are read past; the Close ends the wait.
    let mut input = client_frame(0x1, b"still talking");
    input.extend(client_frame(0x8, &close_payload(1001, "")));
    assert!(feed(&mut conn, &input, 5, |_, _| {}).is_empty());
    assert!(matches!(
        conn.after_flush(5, &SETTINGS),
        Some(Verdict::CheckQuiet)
    ));

    let mut silent = upgraded(0);
    silent.close(CloseCode::GOING_AWAY, "server shutting down", 4, &SETTINGS);
    assert!(silent.on_deadline(33, &SETTINGS).is_none());
    assert!(matches!(
        silent.on_deadline(34, &SETTINGS),
        Some(Event::Closed(Closed::LingerExpired))
    ));
}

#[test]
fn ping_timer_then_idle_timeout() {
    let mut conn = upgraded(0);
    assert_eq!(conn.deadline(&SETTINGS), 20);
    assert!(conn.on_deadline(19, &SETTINGS).is_none());
    assert!(conn.on_deadline(20, &SETTINGS).is_none());
    assert_eq!(sent(&mut conn), [0x89, 0x00]);
    assert_eq!(conn.deadline(&SETTINGS), 40);
    // The client's pong counts as life: idle is measured from it.
    feed(&mut conn, &client_frame(0xA, b""), 25, |_, _| {});
    conn.on_deadline(40, &SETTINGS);
    sent(&mut conn);
    assert_eq!(conn.deadline(&SETTINGS), 60);
    conn.on_deadline(60, &SETTINGS);
    sent(&mut conn);
    assert_eq!(conn.deadline(&SETTINGS), 75);
    let left = conn.on_deadline(75, &SETTINGS);
    assert!(matches!(
        left,
        Some(Event::Left {
            why: Ending::IdleTimeout,
            ..
        })
    ));
    let wire = sent(&mut conn);
    assert_eq!(&wire[..4], [0x88, 14, 0x03, 0xE8]);
    assert_eq!(&wire[4..], b"idle timeout");
}

#[test]
fn bytes_of_an_unfinished_frame_do_not_keep_a_client_alive() {
    let mut conn = upgraded(0);
    let frame = client_frame(0x1, &[b'x'; 100]);
    // Its header at 10, then a byte of the payload every 10 ticks: the
    // frame never completes, and idle counts from the upgrade.
    feed(&mut conn, &frame[..8], 10, |_, _| {});
    for (i, at) in (20..50).step_by(10).enumerate() {
        feed(&mut conn, &frame[8 + i..9 + i], at, |_, _| {});
    }
    assert_eq!(conn.deadline(&SETTINGS), 20);
    conn.on_deadline(20, &SETTINGS);
    sent(&mut conn);
    conn.on_deadline(40, &SETTINGS);
    sent(&mut conn);
    let left = conn.on_deadline(50, &SETTINGS);
    assert!(
        matches!(
            left,
            Some(Event::Left {
                why: Ending::IdleTimeout,
                ..
            })
        ),
        "{left:?}"
    );
}

#[test]
fn a_completed_fragment_counts_as_life() {
    let mut conn = upgraded(0);
    // A non-final text fragment, complete at 45: idle counts from there.
    feed(&mut conn, &client_frame(0x1, b"part"), 45, |_, _| {});
    conn.on_deadline(20, &SETTINGS);
    sent(&mut conn);
    conn.on_deadline(40, &SETTINGS);
    sent(&mut conn);
    assert!(conn.on_deadline(50, &SETTINGS).is_none());
    assert_eq!(conn.deadline(&SETTINGS), 60);
}

#[test]
fn a_slow_consumer_is_dropped_with_1008_unless_a_frame_is_half_written() {
    let mut conn = upgraded(0);
    // The limit counts the queue's entries as well as its bytes: the
    // first chunk gives the queue its room for entries, the second fills it
    // up to the limit.
    conn.send(Chunk::Owned(vec![0; 1])).unwrap();
    let held = conn.out().held();
    conn.send(Chunk::Owned(vec![0; SETTINGS.max_queue - held]))
        .unwrap();
    assert_eq!(conn.out().held(), SETTINGS.max_queue);
    assert!(
        conn.after_flush(0, &SETTINGS).is_none(),
        "at the limit is fine"
    );
    conn.send(Chunk::Owned(vec![0; 1])).unwrap();
    match conn.after_flush(0, &SETTINGS) {
        Some(Verdict::Dropped(Event::Left {
            why: Ending::SlowConsumer,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    let wire = sent(&mut conn);
    assert_eq!(
        &wire[..4],
        [0x88, 15, 0x03, 0xF0],
        "only the 1008 Close is left"
    );

    let mut conn = upgraded(0);
    conn.send(Chunk::Owned(vec![0; SETTINGS.max_queue + 1]))
        .unwrap();
    let mut half = HalfWriter(10);
    conn.flush_to(&mut half).unwrap();
    conn.send(Chunk::Owned(vec![0; 10])).unwrap();
    assert!(matches!(
        conn.after_flush(0, &SETTINGS),
        Some(Verdict::Dropped(_))
    ));
    assert_eq!(
        conn.out().pending(),
        SETTINGS.max_queue + 1 - 10,
        "the half-written frame is finished, nothing follows it"
    );
}

/// Takes this many bytes, then would block.
struct HalfWriter(usize);

impl std::io::Write for HalfWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_protocol_fault_closes_with_its_code() {
    let mut conn = upgraded(0);
    let unmasked = [0x81, 0x01, b'x'];
    let events = feed(&mut conn, &unmasked, 0, |_, _| {});
    assert!(matches!(
        events[..],
        [Event::Left {
            why: Ending::Fault(FrameError::Unmasked),
            ..
        }]
    ));
    let wire = sent(&mut conn);
    assert_eq!(&wire[..4], [0x88, 16, 0x03, 0xEA]);
    assert_eq!(&wire[4..], b"protocol error");
}

#[test]
fn a_peer_that_half_closes_still_gets_what_is_queued() {
    let mut conn = upgraded(0);
    conn.send(Chunk::Static(b"welcome")).unwrap();
    assert!(matches!(
        conn.peer_eof(0, &SETTINGS),
        Some(Event::Left {
            why: Ending::PeerGone,
            ..
        })
    ));
    assert_eq!(sent(&mut conn), b"welcome");
    assert!(matches!(
        conn.after_flush(0, &SETTINGS),
        Some(Verdict::CheckQuiet)
    ));

    let mut quiet = upgraded(0);
    assert!(matches!(
        quiet.peer_eof(0, &SETTINGS),
        Some(Event::Closed(Closed::PeerGone))
    ));
}

#[test]
fn a_slow_consumer_dropped_before_its_101_was_written_still_gets_it() {
    let mut conn = new_conn(0);
    feed(&mut conn, UPGRADE, 0, |conn, _| {
        conn.upgrade("accept", None, 7, 0, &SETTINGS);
    });
    conn.send_frame(Opcode::Text, b"welcome").unwrap();
    conn.send(Chunk::Owned(vec![b'x'; SETTINGS.max_queue]))
        .unwrap();
    assert!(matches!(
        conn.after_flush(0, &SETTINGS),
        Some(Verdict::Dropped(_))
    ));
    let wire = sent(&mut conn);
    assert!(text(&wire).starts_with("HTTP/1.1 101 "), "{}", text(&wire));
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // The welcome went into the 101's buffer; the rest is the 1008 Close.
    assert_eq!(&wire[end..end + 9], b"\x81\x07welcome");
    assert_eq!(&wire[end + 9..end + 13], [0x88, 15, 0x03, 0xF0]);
}

#[test]
fn only_a_websocket_client_takes_messages() {
    let mut conn = new_conn(0);
    assert_eq!(conn.send(Chunk::Static(b"x")), Err(NotOpen));
    assert_eq!(conn.send_frame(Opcode::Text, b"x"), Err(NotOpen));
    let frames = crate::conn::Batch::new(&[std::sync::Arc::from(&b"x"[..])]);
    assert!(conn
        .send_shared(&frames, 0, || panic!("not offered to the socket"))
        .is_err());
    assert!(conn.out().is_empty());

    let mut conn = upgraded(0);
    conn.send_frame(Opcode::Text, b"hi").unwrap();
    assert_eq!(sent(&mut conn), b"\x81\x02hi");
    conn.close(CloseCode::GOING_AWAY, "bye", 0, &SETTINGS);
    sent(&mut conn);
    assert_eq!(
        conn.send(Chunk::Static(b"late")),
        Err(NotOpen),
        "nothing after a Close"
    );
}

#[test]
fn shared_frames_go_to_the_socket_first_and_only_the_rest_is_queued() {
    let frames = crate::conn::Batch::new(&[
        std::sync::Arc::from(&b"abcd"[..]),
        std::sync::Arc::from(&b"efgh"[..]),
        std::sync::Arc::from(&b"ij"[..]),
    ]);
    let mut conn = upgraded(0);
    assert_eq!(
        conn.send_shared(&frames, 0, || Ok(10)).unwrap().unwrap(),
        10
    );
    assert!(conn.out().is_empty(), "all taken: nothing queued");
    assert_eq!(conn.send_shared(&frames, 0, || Ok(5)).unwrap().unwrap(), 5);
    assert_eq!(sent(&mut conn), b"fghij");
    conn.send(Chunk::Static(b"own")).unwrap();
    conn.send_shared(&frames, 1, || panic!("queued bytes come first"))
        .unwrap()
        .unwrap();
    assert_eq!(sent(&mut conn), b"ownefghij", "from the second frame on");
    let gone = conn.send_shared(&frames, 0, || Err(std::io::ErrorKind::BrokenPipe.into()));
    assert!(gone.unwrap().is_err());
    assert!(conn.out().is_empty(), "nothing queued for a failed socket");
}

mod deflate {
    use super::*;
    use crate::proto::deflate::Deflater;
    use crate::proto::http::{parse_head, Head};
    use crate::proto::negotiate::{negotiate, Agreement};

    fn agreement() -> Agreement {
        let head = b"GET /ws HTTP/1.1\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n";
        let Head::Complete { request, .. } = parse_head(head) else {
            panic!("incomplete head");
        };
        negotiate(&request).unwrap()
    }

    fn upgraded_with(deflate: Option<Agreement>) -> (Conn, String) {
        let mut conn = new_conn(0);
        feed(&mut conn, UPGRADE, 0, |conn, _| {
            conn.upgrade("accept", deflate, 7, 0, &SETTINGS);
        });
        let answer = text(&sent(&mut conn));
        (conn, answer)
    }

    #[test]
    fn the_101_names_the_agreement_and_the_connection_knows_it() {
        let (conn, answer) = upgraded_with(Some(agreement()));
        assert!(answer.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ), "{answer}");
        assert!(conn.deflate());
        let (conn, answer) = upgraded_with(None);
        assert!(!answer.contains("Sec-WebSocket-Extensions"), "{answer}");
        assert!(!conn.deflate());
        assert!(!new_conn(0).deflate());
    }

    #[test]
    fn a_compressed_message_arrives_inflated_and_a_closed_connection_forgets_deflate() {
        let (mut conn, _) = upgraded_with(Some(agreement()));
        let compressed = Deflater::new().compress(b"hello, compressed");
        let frame = masked(0xC1, &compressed, [1, 2, 3, 4]);
        let events = feed(&mut conn, &frame, 1, |_, _| {});
        assert!(
            matches!(&events[..], [Event::Message(Message::Text(t))] if t == "hello, compressed"),
            "{events:?}"
        );
        conn.close(CloseCode::NORMAL, "bye", 2, &SETTINGS);
        assert!(!conn.deflate());
    }

    #[test]
    fn rsv1_without_the_agreement_closes_1002() {
        let (mut conn, _) = upgraded_with(None);
        let frame = masked(0xC1, &Deflater::new().compress(b"x"), [1, 2, 3, 4]);
        let events = feed(&mut conn, &frame, 1, |_, _| {});
        assert!(
            matches!(
                &events[..],
                [Event::Left {
                    why: Ending::Fault(FrameError::ReservedBits),
                    ..
                }]
            ),
            "{events:?}"
        );
        let close = sent(&mut conn);
        assert_eq!((close[0], &close[2..4]), (0x88, &[0x03, 0xEA][..]));
    }

    #[test]
    fn a_compressed_echo_is_one_frame_with_rsv1() {
        let (mut conn, _) = upgraded_with(Some(agreement()));
        let compressed = Deflater::new().compress(b"echo me");
        conn.send_compressed(Opcode::Text, &compressed).unwrap();
        let wire = sent(&mut conn);
        assert_eq!(wire[0], 0xC1);
        assert_eq!(usize::from(wire[1]), compressed.len());
        assert_eq!(
            Inflater::new().inflate(&wire[2..], 100).unwrap(),
            b"echo me"
        );
    }
}
