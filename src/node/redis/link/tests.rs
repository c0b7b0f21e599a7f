//! The link in memory: no socket, no thread, no sleep. Time is one base
//! instant plus offsets; what Redis would answer is handed in as bytes.

use super::*;
use crate::node::redis::{Following, Full};

const CH: &str = "ch";
const MAX_CHANNELS: usize = 4;
const SUBSCRIBED: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
const POSITION: &[u8] = b"*2\r\n$2\r\ne1\r\n:7\r\n";

/// The only clock read of these tests: the base that offsets are added to.
fn base() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn link(url: &str, max_queue: usize, now: Instant) -> RedisLink {
    RedisLink::new(
        url.parse().unwrap(),
        CH.into(),
        max_queue,
        MAX_CHANNELS,
        Rng::from_os(),
        now,
    )
}

fn outputs(link: &mut RedisLink) -> Vec<LinkOutput> {
    std::iter::from_fn(|| link.poll_output()).collect()
}

fn events(link: &mut RedisLink) -> Vec<Event> {
    std::iter::from_fn(|| link.poll_event()).collect()
}

/// What the side's socket would take: all of it.
fn write_all(link: &mut RedisLink, side: Side) -> Vec<u8> {
    let bytes = link.unsent(side).to_vec();
    link.written(side, bytes.len());
    bytes
}

fn receive(link: &mut RedisLink, side: Side, bytes: &[u8], now: Instant) {
    link.handle(LinkInput::Received { side, bytes }, now);
}

/// Publishes `json` through the numbering, its envelope the text itself.
fn numbered(link: &mut RedisLink, json: &str, now: Instant) -> bool {
    link.publish_numbered(json, |seq| format!("{seq} {json}").into_bytes(), now)
}

fn released(seq: u64, json: &str) -> Released {
    Released {
        seq,
        channel: None,
        json: json.into(),
    }
}

fn retry_at(link: &RedisLink, side: Side) -> Instant {
    match link.conns[side.index()].state {
        State::Down { retry_at } => retry_at,
        ref state => panic!("{side:?} is not down: {state:?}"),
    }
}

/// Both sides looked up and connected at `now`, their handshakes unsent.
fn connect_both(link: &mut RedisLink, now: Instant) {
    link.on_timer(now);
    let lookups: Vec<LinkOutput> = Side::BOTH
        .map(|side| LinkOutput::Lookup {
            side,
            host: "127.0.0.1".into(),
            port: 6379,
        })
        .into();
    assert_eq!(outputs(link), lookups);
    for side in Side::BOTH {
        let addrs = Ok(vec![addr(6379)]);
        link.handle(LinkInput::Resolved { side, addrs }, now);
        link.handle(LinkInput::Connected { side }, now);
    }
    let connects: Vec<LinkOutput> = Side::BOTH
        .map(|side| LinkOutput::Connect {
            side,
            addr: addr(6379),
        })
        .into();
    assert_eq!(outputs(link), connects);
}

/// A link with both sides ready at `now`, its events taken.
fn ready_link(max_queue: usize, now: Instant) -> RedisLink {
    let mut link = link("redis://127.0.0.1:6379", max_queue, now);
    connect_both(&mut link, now);
    for side in Side::BOTH {
        write_all(&mut link, side);
    }
    receive(&mut link, Side::Subscriber, SUBSCRIBED, now);
    receive(&mut link, Side::Publisher, POSITION, now);
    events(&mut link);
    assert!(link.sequencing(now));
    link
}

#[test]
fn a_handshake_without_credentials_subscribes_and_asks_where_the_stream_stands() {
    let now = base();
    let mut link = link("redis://127.0.0.1:6379", 1024, now);
    assert!(
        link.unsent(Side::Subscriber).is_empty(),
        "nothing before the connect"
    );
    connect_both(&mut link, now);
    assert_eq!(
        write_all(&mut link, Side::Subscriber),
        resp::command(&[b"SUBSCRIBE", b"ch"])
    );
    let asked = String::from_utf8(write_all(&mut link, Side::Publisher)).unwrap();
    assert!(asked.starts_with("*5\r\n$4\r\nEVAL\r\n") && asked.contains("ch:stream"));
    assert!(!link.is_ready(Side::Subscriber) && !link.sequencing(now));

    receive(&mut link, Side::Subscriber, SUBSCRIBED, now);
    assert!(link.is_ready(Side::Subscriber));
    assert_eq!(events(&mut link), [Event::Ready(true)]);
    assert!(!link.sequencing(now), "the publisher is not ready yet");

    receive(&mut link, Side::Publisher, POSITION, now);
    let position = Event::Position {
        epoch: "e1".into(),
        offset: 7,
    };
    assert_eq!(events(&mut link), [position, Event::Ready(true)]);
    assert!(link.is_ready(Side::Publisher) && link.sequencing(now));
    assert_eq!(
        link.next_deadline(),
        None,
        "nothing to time while both serve"
    );
}

#[test]
fn a_handshake_with_credentials_and_a_database_logs_in_and_selects_first() {
    let now = base();
    let mut link = link("redis://alice:secret@127.0.0.1:6379/3", 1024, now);
    connect_both(&mut link, now);
    let expected = [
        resp::command(&[b"AUTH", b"alice", b"secret"]),
        resp::command(&[b"SELECT", b"3"]),
        resp::command(&[b"SUBSCRIBE", b"ch"]),
    ]
    .concat();
    assert_eq!(write_all(&mut link, Side::Subscriber), expected);
    // Replies split anywhere are put together.
    receive(&mut link, Side::Subscriber, b"+OK\r\n+O", now);
    receive(&mut link, Side::Subscriber, b"K\r\n", now);
    assert!(!link.is_ready(Side::Subscriber), "SUBSCRIBE unanswered");
    receive(&mut link, Side::Subscriber, SUBSCRIBED, now);
    assert!(link.is_ready(Side::Subscriber));

    let mut link = self::link("redis://:secret@127.0.0.1:6379", 1024, now);
    connect_both(&mut link, now);
    let expected = [
        resp::command(&[b"AUTH", b"secret"]),
        resp::command(&[b"SUBSCRIBE", b"ch"]),
    ]
    .concat();
    assert_eq!(write_all(&mut link, Side::Subscriber), expected);
}

#[test]
fn refused_credentials_wait_the_longest_backoff_and_say_what_to_check() {
    let now = base();
    let mut link = link("redis://alice:wrong@127.0.0.1:6379", 1024, now);
    connect_both(&mut link, now);
    write_all(&mut link, Side::Subscriber);
    let refusal = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    receive(&mut link, Side::Subscriber, refusal, now);

    assert_eq!(
        outputs(&mut link),
        [LinkOutput::Close {
            side: Side::Subscriber
        }]
    );
    assert!(events(&mut link).is_empty(), "never ready, so never lost");
    let why = link.last_failure.clone().unwrap();
    assert!(
        why.starts_with("Redis refused the handshake (AUTH): WRONGPASS")
            && why.ends_with("(check the user and password in --redis)"),
        "{why}"
    );
    let wait = retry_at(&link, Side::Subscriber) - now;
    assert!(wait >= BACKOFF_MAX / 2 && wait < BACKOFF_MAX, "{wait:?}");
    assert_eq!(failure_level(false, true), LogLevel::Error);
}

#[test]
fn the_backoff_doubles_up_to_its_cap_within_the_upper_half_of_each_step() {
    let mut now = base();
    let mut link = link("redis://redis.test:6379", 1024, now);
    for attempt in 0..10 {
        link.on_timer(now);
        for side in Side::BOTH {
            let addrs = Err("Name or service not known".into());
            link.handle(LinkInput::Resolved { side, addrs }, now);
        }
        let step = (ms(100) * 2u32.pow(attempt)).min(BACKOFF_MAX);
        let retries = Side::BOTH.map(|side| retry_at(&link, side));
        for at in retries {
            let wait = at - now;
            assert!(
                wait >= step / 2 && wait < step,
                "{attempt}: {wait:?} for {step:?}"
            );
        }
        assert_eq!(link.next_deadline(), retries.into_iter().min());
        now = retries.into_iter().max().unwrap();
    }
    assert_eq!(
        link.last_failure.as_deref(),
        Some("cannot resolve redis.test: Name or service not known")
    );
    assert_eq!(failure_level(true, false), LogLevel::Debug, "repeats");
    assert_eq!(failure_level(false, false), LogLevel::Warn);
    assert_eq!(backoff(0, false, 0), ms(50));
    assert_eq!(backoff(0, false, 999), ms(50) + ms(100).mul_f64(0.4995));
    assert_eq!(backoff(20, false, 0), BACKOFF_MAX / 2);
}

#[test]
fn a_connect_or_handshake_without_an_answer_is_given_up_after_five_seconds() {
    let now = base();
    let mut link = link("redis://127.0.0.1:6379", 1024, now);
    link.on_timer(now);
    for side in Side::BOTH {
        let addrs = Ok(vec![addr(6379)]);
        link.handle(LinkInput::Resolved { side, addrs }, now);
    }
    // The subscriber connects and is never answered; the publisher's
    // connect never completes.
    link.handle(
        LinkInput::Connected {
            side: Side::Subscriber,
        },
        now + ms(10),
    );
    outputs(&mut link);
    assert_eq!(link.next_deadline(), Some(now + CONNECT_TIMEOUT));

    link.on_timer(now + ms(4999));
    assert!(outputs(&mut link).is_empty());
    link.on_timer(now + CONNECT_TIMEOUT);
    let closes: Vec<LinkOutput> = Side::BOTH.map(|side| LinkOutput::Close { side }).into();
    assert_eq!(outputs(&mut link), closes);
    assert_eq!(link.last_failure.as_deref(), Some("no answer within 5 s"));
    for side in Side::BOTH {
        assert!(retry_at(&link, side) > now + CONNECT_TIMEOUT);
    }
}

#[test]
fn every_address_of_the_host_is_tried_before_any_backoff() {
    let now = base();
    let mut link = link("redis://redis.test:6379", 1024, now);
    link.on_timer(now);
    outputs(&mut link);
    let side = Side::Subscriber;
    let addrs = Ok(vec![addr(1), addr(2)]);
    link.handle(LinkInput::Resolved { side, addrs }, now);
    assert_eq!(
        outputs(&mut link),
        [LinkOutput::Connect {
            side,
            addr: addr(1)
        }]
    );

    let why = "cannot connect to 127.0.0.1:1: Connection refused".to_string();
    link.handle(LinkInput::Failed { side, why }, now + ms(1));
    assert_eq!(
        outputs(&mut link),
        [
            LinkOutput::Close { side },
            LinkOutput::Connect {
                side,
                addr: addr(2)
            }
        ]
    );
    assert_eq!(link.conns[0].attempt, 0, "no backoff yet");
    assert_eq!(link.next_deadline(), Some(now + ms(1) + CONNECT_TIMEOUT));

    let why = "connection failed: Connection refused (os error 111)".to_string();
    link.handle(LinkInput::Failed { side, why }, now + ms(2));
    assert_eq!(outputs(&mut link), [LinkOutput::Close { side }]);
    assert!(retry_at(&link, side) >= now + ms(2) + ms(50));
    assert_eq!(link.conns[0].attempt, 1);
}

#[test]
fn channel_messages_become_events_and_other_replies_do_not() {
    let now = base();
    let mut link = ready_link(1024, now);
    let message = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
    receive(&mut link, Side::Subscriber, &message[..20], now);
    assert!(events(&mut link).is_empty(), "half a message");
    receive(&mut link, Side::Subscriber, &message[20..], now);
    assert_eq!(events(&mut link), [Event::Message(b"hello".to_vec())]);

    let pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    receive(&mut link, Side::Subscriber, pong, now);
    assert!(events(&mut link).is_empty());
    assert!(link.is_ready(Side::Subscriber));
}

#[test]
fn a_position_reply_that_makes_no_sense_fails_the_publisher() {
    let now = base();
    let mut link = link("redis://127.0.0.1:6379", 1024, now);
    connect_both(&mut link, now);
    receive(&mut link, Side::Publisher, b":1\r\n", now);
    assert_eq!(
        outputs(&mut link),
        [LinkOutput::Close {
            side: Side::Publisher
        }]
    );
    assert_eq!(
        link.last_failure.as_deref(),
        Some("unexpected reply to the stream script")
    );
    assert!(events(&mut link).is_empty());
}

#[test]
fn nothing_is_published_while_the_publisher_is_not_ready() {
    let now = base();
    let mut link = link("redis://127.0.0.1:6379", 1024, now);
    assert!(!link.publish(b"hi", now));
    connect_both(&mut link, now);
    assert!(!numbered(&mut link, "hi", now), "still in its handshake");
    let handshake = link.unsent(Side::Publisher).len();
    assert!(!link.sequencing(now));
    assert_eq!(link.unsent(Side::Publisher).len(), handshake);
}

#[test]
fn publications_over_the_cap_are_dropped_until_half_of_it_is_written() {
    let now = base();
    let mut link = ready_link(200, now);
    let payload = [b'x'; 60];
    assert!(link.publish(&payload, now));
    let one = link.unsent(Side::Publisher).len();
    assert!(link.publish(&payload, now));
    assert!(!link.publish(&payload, now), "three would exceed 200");
    assert!(link.overflow.is_active());
    assert!(!link.publish(&payload, now + ms(1)));

    // Relieved once no more than half of the cap waits.
    link.written(Side::Publisher, 2 * one - 101);
    assert!(link.overflow.is_active(), "101 bytes still wait");
    link.written(Side::Publisher, 1);
    assert!(!link.overflow.is_active(), "100 bytes wait");
    assert!(link.publish(&payload, now + ms(2)));
}

#[test]
fn a_busy_worker_does_not_take_its_own_delay_for_a_stalled_redis() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(numbered(&mut link, "hi", now));
    write_all(&mut link, Side::Publisher);
    // Redis answered at once, but the worker was busy writing to its
    // clients: its next turn reads the reply before anything asks.
    let turn = now + STALLED_AFTER + ms(100);
    link.turn_began(turn);
    receive(&mut link, Side::Publisher, b":1\r\n", turn);
    assert!(link.sequencing(turn));
    assert!(link.conns[Side::Publisher.index()].unanswered.is_empty());
}

#[test]
fn a_redis_that_stops_answering_is_stalled_after_the_limit() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(numbered(&mut link, "hi", now));
    write_all(&mut link, Side::Publisher);
    link.turn_began(now + ms(1));
    assert!(link.sequencing(now + ms(1)));
    assert!(link.sequencing(now + ms(1) + STALLED_AFTER - ms(1)));
    assert!(!link.sequencing(now + ms(1) + STALLED_AFTER));
}

#[test]
fn a_long_turn_does_not_make_its_own_publications_overdue() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    // Queued at the start of a turn that then wrote to its clients for
    // longer than the limit: it went out at that turn's end.
    assert!(numbered(&mut link, "hi", now));
    write_all(&mut link, Side::Publisher);
    let next = now + STALLED_AFTER + ms(300);
    link.turn_began(next);
    assert!(link.sequencing(next), "its wait has only begun");
    assert!(!link.sequencing(next + STALLED_AFTER));
}

#[test]
fn a_failure_drops_what_was_unsent_and_reports_the_loss() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(numbered(&mut link, "hi", now));
    assert!(!link.unsent(Side::Publisher).is_empty());
    let side = Side::Publisher;
    let why = "read failed: Connection reset by peer".to_string();
    link.handle(LinkInput::Failed { side, why }, now + ms(5));

    assert_eq!(outputs(&mut link), [LinkOutput::Close { side }]);
    assert_eq!(events(&mut link), [Event::Ready(false)]);
    assert!(link.unsent(side).is_empty() && link.conns[1].out.pending() == 0);
    assert!(!link.is_ready(side) && !link.sequencing(now + ms(5)));
    assert!(link.conns[1].unanswered.is_empty());
    assert!(retry_at(&link, side) >= now + ms(55));
    assert!(link.is_ready(Side::Subscriber), "the other side serves on");
}

#[test]
fn written_consumes_the_unsent_bytes_in_order() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(link.publish(b"one", now));
    assert!(link.publish(b"two", now));
    let all = [
        resp::command(&[b"PUBLISH", b"ch", b"one"]),
        resp::command(&[b"PUBLISH", b"ch", b"two"]),
    ]
    .concat();
    assert_eq!(link.unsent(Side::Publisher), all);
    link.written(Side::Publisher, 5);
    assert_eq!(link.unsent(Side::Publisher), &all[5..]);
    link.written(Side::Publisher, all.len() - 5);
    assert!(link.unsent(Side::Publisher).is_empty());
}

#[test]
fn what_comes_for_a_side_that_was_given_up_is_ignored() {
    let now = base();
    let mut link = link("redis://127.0.0.1:6379", 1024, now);
    let side = Side::Subscriber;
    let why = "connection closed by Redis".to_string();
    link.handle(LinkInput::Failed { side, why }, now);
    link.handle(LinkInput::Connected { side }, now);
    receive(&mut link, side, SUBSCRIBED, now);
    let addrs = Ok(vec![addr(6379)]);
    link.handle(LinkInput::Resolved { side, addrs }, now);
    assert!(outputs(&mut link).is_empty() && events(&mut link).is_empty());
    assert_eq!(retry_at(&link, side), now);
}

#[test]
fn a_side_that_becomes_ready_forgets_the_failure_it_had_logged() {
    let now = base();
    let mut link = link("redis://127.0.0.1:6379", 1024, now);
    connect_both(&mut link, now);
    let why = "connection closed by Redis".to_string();
    let side = Side::Subscriber;
    link.handle(LinkInput::Failed { side, why }, now);
    assert!(link.last_failure.is_some());
    receive(&mut link, Side::Publisher, POSITION, now);
    assert_eq!(link.last_failure, None, "the next failure is news again");
}

#[test]
fn broadcasts_not_back_in_time_are_released_in_order_and_timed_by_the_link() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(numbered(&mut link, "one", now) && numbered(&mut link, "two", now));
    let sent = String::from_utf8(write_all(&mut link, Side::Publisher)).unwrap();
    assert!(sent.contains("1 one") && sent.contains("2 two"), "{sent}");
    assert_eq!(link.next_deadline(), None, "their wait has not begun");
    let turn = now + ms(1);
    link.turn_began(turn);
    assert_eq!(link.next_deadline(), Some(turn + STALLED_AFTER));
    // Redis answered and published the first; its copy came back.
    receive(&mut link, Side::Publisher, b":1\r\n", turn);
    link.returned(1);
    assert!(!link.stalled(turn + STALLED_AFTER - ms(1)));
    assert!(link.stalled(turn + STALLED_AFTER));
    assert_eq!(link.release(), [released(2, "two")]);
    assert!(!link.stalled(turn + STALLED_AFTER), "nothing waits");
    assert_eq!(link.next_deadline(), None);
}

#[test]
fn a_broadcast_answered_but_not_back_on_the_subscription_is_a_stall() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(numbered(&mut link, "one", now));
    write_all(&mut link, Side::Publisher);
    link.turn_began(now);
    receive(&mut link, Side::Publisher, b":1\r\n", now);
    assert!(link.sequencing(now + STALLED_AFTER - ms(1)));
    assert!(!link.sequencing(now + STALLED_AFTER));
    link.returned(1);
    assert!(link.sequencing(now + STALLED_AFTER));
}

#[test]
fn what_waits_to_come_back_counts_against_the_cap() {
    let now = base();
    let mut link = ready_link(1000, now);
    let json = "x".repeat(400);
    assert!(numbered(&mut link, &json, now));
    write_all(&mut link, Side::Publisher);
    // Written, but kept until it comes back: 400 bytes and more.
    assert!(
        !numbered(&mut link, &json, now),
        "over 1000 with the command"
    );
    link.returned(1);
    assert!(numbered(&mut link, &json, now));
}

#[test]
fn losing_a_side_releases_nothing_by_itself_but_stops_the_numbering() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(numbered(&mut link, "one", now));
    let why = "read failed".to_string();
    let side = Side::Subscriber;
    link.handle(LinkInput::Failed { side, why }, now);
    assert_eq!(events(&mut link), [Event::Ready(false)]);
    assert!(link.stalled(now), "the worker releases it on that event");
    assert_eq!(link.release(), [released(1, "one")]);
}

#[test]
fn a_hole_is_sent_once_at_a_time_after_what_it_covers_and_owed_again_if_lost() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    let hole = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .matches("hole origin")
            .count()
    };
    link.send_hole(0, "origin");
    assert_eq!(hole(link.unsent(Side::Publisher)), 0, "none owed");
    link.owe_hole(0);
    assert!(link.publish(b"unnumbered", now));
    link.send_hole(0, "origin");
    let sent = write_all(&mut link, Side::Publisher);
    assert_eq!(hole(&sent), 1);
    let at = |needle: &str| String::from_utf8_lossy(&sent).find(needle).unwrap();
    assert!(at("unnumbered") < at("hole origin"), "after what it covers");
    // Owed again while the first waits for its reply: sent after it.
    link.owe_hole(0);
    link.send_hole(0, "origin");
    assert!(link.unsent(Side::Publisher).is_empty());
    receive(&mut link, Side::Publisher, b":1\r\n:2\r\n", now);
    link.send_hole(0, "origin");
    assert_eq!(hole(&write_all(&mut link, Side::Publisher)), 1);
    // Lost with the connection before its reply: owed again.
    let why = "reset".to_string();
    let side = Side::Publisher;
    link.handle(LinkInput::Failed { side, why }, now);
    assert!(link.hole_owed.is_some());
    // A new epoch makes it moot.
    link.send_hole(1, "origin");
    assert!(link.hole_owed.is_none());
}

/// What Redis pushes on a subscription: `kind` of `topic`, then `last`.
fn pushed(kind: &str, topic: &str, last: &[u8]) -> Vec<u8> {
    let bulk = |b: &[u8]| {
        let mut out = format!("${}\r\n", b.len()).into_bytes();
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        out
    };
    let mut out = b"*3\r\n".to_vec();
    out.extend(bulk(kind.as_bytes()));
    out.extend(bulk(topic.as_bytes()));
    out.extend_from_slice(last);
    out
}

fn confirm(link: &mut RedisLink, kind: &str, topic: &str, now: Instant) {
    receive(link, Side::Subscriber, &pushed(kind, topic, b":1\r\n"), now);
}

fn channel_message(link: &mut RedisLink, topic: &str, payload: &[u8], now: Instant) {
    let mut bulk = format!("${}\r\n", payload.len()).into_bytes();
    bulk.extend_from_slice(payload);
    bulk.extend_from_slice(b"\r\n");
    receive(
        link,
        Side::Subscriber,
        &pushed("message", topic, &bulk),
        now,
    );
}

#[test]
fn a_channel_is_followed_from_its_confirmation_until_it_is_left() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    link.subscribe_channel("news").unwrap();
    link.subscribe_channel("news").unwrap();
    assert_eq!(
        write_all(&mut link, Side::Subscriber),
        resp::command(&[b"SUBSCRIBE", b"ch:ch:news"]),
        "once for the worker"
    );
    channel_message(&mut link, "ch:ch:news", b"early", now);
    assert!(events(&mut link).is_empty(), "not followed yet");
    confirm(&mut link, "subscribe", "ch:ch:news", now);
    channel_message(&mut link, "ch:ch:news", b"e1 1 m", now);
    channel_message(&mut link, "ch", b"for everyone", now);
    assert_eq!(
        events(&mut link),
        [
            Event::Following(Following::Started("news".into())),
            Event::ChannelMessage {
                channel: "news".into(),
                payload: b"e1 1 m".to_vec()
            },
            Event::Message(b"for everyone".to_vec()),
        ]
    );
    assert!(link.follows("news"));
    link.unsubscribe_channel("news");
    assert_eq!(
        write_all(&mut link, Side::Subscriber),
        resp::command(&[b"UNSUBSCRIBE", b"ch:ch:news"])
    );
    confirm(&mut link, "unsubscribe", "ch:ch:news", now);
    channel_message(&mut link, "ch:ch:news", b"e1 2 late", now);
    assert_eq!(
        events(&mut link),
        [Event::Following(Following::Stopped("news".into()))]
    );
    assert_eq!(link.channels_wanted(), 0);
}

#[test]
fn after_a_reconnect_the_subscription_follows_its_channels_again() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    link.subscribe_channel("a").unwrap();
    write_all(&mut link, Side::Subscriber);
    confirm(&mut link, "subscribe", "ch:ch:a", now);
    events(&mut link);
    let why = "read failed".to_string();
    let side = Side::Subscriber;
    link.handle(LinkInput::Failed { side, why }, now);
    assert_eq!(
        events(&mut link),
        [
            Event::Following(Following::Stopped("a".into())),
            Event::Ready(false)
        ]
    );
    link.subscribe_channel("b").unwrap();
    link.unsubscribe_channel("a");
    link.subscribe_channel("a").unwrap();
    assert!(link.unsent(side).is_empty(), "nothing while down");
    link.on_timer(retry_at(&link, side));
    outputs(&mut link);
    let addrs = Ok(vec![addr(6379)]);
    link.handle(LinkInput::Resolved { side, addrs }, now);
    link.handle(LinkInput::Connected { side }, now);
    write_all(&mut link, side);
    receive(&mut link, side, SUBSCRIBED, now);
    let again = String::from_utf8(write_all(&mut link, side)).unwrap();
    assert!(
        again.starts_with("*3\r\n$9\r\nSUBSCRIBE\r\n") && again.contains("ch:ch:a"),
        "{again}"
    );
    assert!(again.contains("ch:ch:b"));
}

#[test]
fn a_worker_follows_no_more_channels_than_its_clients_can_join() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    for n in 0..MAX_CHANNELS {
        link.subscribe_channel(&format!("c{n}")).unwrap();
    }
    assert_eq!(link.subscribe_channel("one-more"), Err(Full));
    assert_eq!(link.channels_wanted(), MAX_CHANNELS);
}

fn channel_numbered(link: &mut RedisLink, channel: &str, json: &str, now: Instant) -> bool {
    let envelope = |seq| format!("{seq} {json}").into_bytes();
    link.publish_channel_numbered(&channel.into(), json, envelope, now)
}

#[test]
fn a_channel_message_is_numbered_in_its_channel_and_kept_until_answered() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(channel_numbered(&mut link, "room", "one", now));
    assert!(numbered(&mut link, "all", now));
    assert!(channel_numbered(&mut link, "room", "two", now));
    let sent = String::from_utf8(write_all(&mut link, Side::Publisher)).unwrap();
    assert!(sent.contains("ch:ch:room") && sent.contains("\r\nch:room\r\n"));
    assert!(sent.contains("1 one") && sent.contains("2 all") && sent.contains("3 two"));
    link.turn_began(now);
    assert_eq!(link.next_deadline(), Some(now + STALLED_AFTER));
    receive(&mut link, Side::Publisher, b":1\r\n", now);
    assert!(link.stalled(now + STALLED_AFTER), "two more unanswered");
    let released = link.release();
    let order: Vec<(u64, Option<&str>)> = released
        .iter()
        .map(|r| (r.seq, r.channel.as_deref()))
        .collect();
    assert_eq!(order, [(2, None), (3, Some("room"))], "answered: not kept");
    assert!(!link.stalled(now + STALLED_AFTER));
}

#[test]
fn a_channel_message_answered_waits_no_more() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(channel_numbered(&mut link, "room", "one", now));
    write_all(&mut link, Side::Publisher);
    link.turn_began(now);
    receive(&mut link, Side::Publisher, b":1\r\n", now);
    assert!(!link.stalled(now + STALLED_AFTER * 2));
    assert!(link.release().is_empty());
}

#[test]
fn channel_messages_kept_count_against_the_cap_and_a_lost_side_releases_them() {
    let now = base();
    let mut link = ready_link(1000, now);
    let json = "x".repeat(400);
    assert!(channel_numbered(&mut link, "room", &json, now));
    write_all(&mut link, Side::Publisher);
    assert!(
        !channel_numbered(&mut link, "room", &json, now),
        "over the cap"
    );
    let why = "read failed".to_string();
    let side = Side::Publisher;
    link.handle(LinkInput::Failed { side, why }, now);
    assert!(link.stalled(now));
    let released = link.release();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].channel.as_deref(), Some("room"));
}

#[test]
fn a_channel_hole_is_owed_per_channel_and_sent_once_at_a_time() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    link.owe_channel_hole(&"a".into(), 0);
    link.owe_channel_hole(&"b".into(), 0);
    link.owe_channel_hole(&"old".into(), 1);
    assert!(link.channel_holes_due());
    assert_eq!(
        link.send_channel_holes(0, "me"),
        2,
        "not the old generation's"
    );
    let sent = String::from_utf8(write_all(&mut link, Side::Publisher)).unwrap();
    assert!(sent.contains("ch:ch:a") && sent.contains("ch:ch:b") && sent.contains("hole me"));
    link.owe_channel_hole(&"a".into(), 0);
    assert_eq!(link.send_channel_holes(0, "me"), 0, "a's last one waits");
    let why = "read failed".to_string();
    link.handle(
        LinkInput::Failed {
            side: Side::Publisher,
            why,
        },
        now,
    );
    assert_eq!(link.channel_holes_owed.len(), 2, "owed again");
}

#[test]
fn where_a_channel_stands_is_asked_of_the_publishing_side() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(link.ask_channel_position(&"room".into()));
    let sent = String::from_utf8(write_all(&mut link, Side::Publisher)).unwrap();
    assert!(sent.contains("\r\nch:room\r\n"), "{sent}");
    receive(&mut link, Side::Publisher, POSITION, now);
    assert_eq!(
        events(&mut link),
        [Event::ChannelPosition {
            channel: "room".into(),
            epoch: "e1".into(),
            offset: 7
        }]
    );
}

#[test]
fn a_channel_message_redis_refuses_to_number_is_released_at_once() {
    let now = base();
    let mut link = ready_link(1 << 20, now);
    assert!(channel_numbered(&mut link, "room", "one", now));
    write_all(&mut link, Side::Publisher);
    let later = now + ms(3);
    receive(
        &mut link,
        Side::Publisher,
        b"-NOPERM no permissions\r\n",
        later,
    );
    assert_eq!(link.next_deadline(), Some(later));
    assert!(link.stalled(later) && link.sequencing(later));
    let released = link.release();
    assert_eq!(released.len(), 1);
    assert!(!link.stalled(later) && link.next_deadline().is_none());
}
