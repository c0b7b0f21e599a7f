//! The channel streams as `History` holds them: numbering, resume, the
//! bounds shared with everyone's entries, the floor, the hand-over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ChannelResume, CHANNEL_COST, CHANNEL_ENTRY_COST};
use crate::app::history::{History, Lost, ENTRY_COST};
use crate::proto::shared_frame::SharedFrame;

const TTL: Duration = Duration::from_secs(60);

fn history(capacity: usize) -> History {
    History::new("e".into(), capacity, TTL)
}

/// A frame that names its channel and offset.
fn framed(channel: &str) -> impl FnOnce(u64) -> SharedFrame + '_ {
    move |offset| Arc::<[u8]>::from(format!("{channel}#{offset}").into_bytes()).into()
}

fn publish(h: &mut History, channel: &str, now: Instant) -> u64 {
    h.channel_sequence(channel, framed(channel), now).0
}

fn text(frame: &SharedFrame) -> String {
    String::from_utf8(frame.plain().to_vec()).unwrap()
}

/// What a recovered resume of `channel` after `since` replays, checked
/// against its count.
fn replay(h: &History, channel: &str, since: u64) -> Vec<String> {
    let ChannelResume::Recovered { next, replayed } = h.channel_resume(channel, since, "e") else {
        panic!(
            "{channel} after {since}: {:?}",
            h.channel_resume(channel, since, "e")
        );
    };
    let mut frames = Vec::new();
    let mut at = next;
    while let Some(frame) = h.channel_frame(channel, at).expect("kept") {
        frames.push(text(&frame));
        at += 1;
    }
    assert_eq!(frames.len() as u64, replayed, "{channel} after {since}");
    frames
}

fn recovered(next: u64, replayed: u64) -> ChannelResume {
    ChannelResume::Recovered { next, replayed }
}

#[test]
fn each_channel_numbers_its_own_messages_from_one() {
    let now = Instant::now();
    let mut h = history(10);
    let (offset, frame) = h.channel_sequence("a", framed("a"), now);
    assert_eq!((offset, text(&frame)), (1, "a#1".to_owned()));
    assert_eq!(publish(&mut h, "a", now), 2);
    assert_eq!(publish(&mut h, "b", now), 1);
    h.append(&Arc::<[u8]>::from(&b"everyone"[..]).into(), now);
    assert_eq!(publish(&mut h, "a", now), 3);
    assert_eq!(
        (h.last(), h.channel_last("a"), h.channel_last("b")),
        (1, 3, 1)
    );
    assert_eq!(h.channel_last("never"), 0);
    assert_eq!(h.len(), 5, "everyone's and the channels' entries");
    let channel_bytes = 3 * (3 + CHANNEL_ENTRY_COST) + "a".len() + CHANNEL_COST;
    let b_bytes = 3 + CHANNEL_ENTRY_COST + "b".len() + CHANNEL_COST;
    assert_eq!(h.bytes(), 8 + ENTRY_COST + channel_bytes + b_bytes);
}

#[test]
fn a_resume_is_recovered_only_if_every_later_message_is_kept() {
    let now = Instant::now();
    let mut h = history(3);
    for _ in 0..5 {
        publish(&mut h, "a", now);
    }
    assert_eq!(replay(&h, "a", 2), ["a#3", "a#4", "a#5"]);
    assert_eq!(replay(&h, "a", 4), ["a#5"]);
    assert_eq!(h.channel_resume("a", 5, "e"), recovered(6, 0));
    assert_eq!(h.channel_resume("a", 1, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_frame("a", 2), Err(Lost));
    assert_eq!(h.channel_frame("a", 6), Ok(None));
    assert_eq!(h.channel_resume("a", 4, "f"), ChannelResume::UnknownEpoch);
    assert_eq!(h.channel_resume("a", 4, "f").label(), "unknown_epoch");

    let mut off = history(0);
    for _ in 0..3 {
        publish(&mut off, "a", now);
    }
    off.channel_joined("a");
    assert_eq!((off.channel_last("a"), off.len(), off.bytes()), (3, 0, 0));
    assert_eq!(off.channel_resume("a", 3, "e"), ChannelResume::TooOld);
    assert_eq!(off.channel_resume("a", 3, "e").label(), "too_old");
}

#[test]
fn beyond_the_last_offset_only_a_followed_channel_is_recovered() {
    let now = Instant::now();
    let mut h = history(10);
    publish(&mut h, "a", now);
    // Followed: what the client saw is still to come here, and is skipped.
    assert_eq!(h.channel_resume("a", 7, "e"), recovered(8, 0));
    // Not known: nothing of it was numbered (the floor is 0), so a client
    // at 0 misses nothing; one ahead of that saw what this process cannot
    // account for.
    assert_eq!(h.channel_resume("b", 0, "e"), recovered(1, 0));
    assert_eq!(h.channel_resume("b", 3, "e"), ChannelResume::TooOld);
    // Joined only: the same answers, whichever comes first, the join or
    // the resume.
    h.channel_joined("b");
    assert_eq!(h.channel_resume("b", 0, "e"), recovered(1, 0));
    assert_eq!(h.channel_resume("b", 3, "e"), ChannelResume::TooOld);
    assert_eq!(publish(&mut h, "b", now), 1);
    assert_eq!(h.channel_resume("b", 3, "e"), recovered(4, 0));
}

#[test]
fn a_message_numbered_elsewhere_is_kept_and_a_jump_is_a_gap() {
    let now = Instant::now();
    let mut h = history(10);
    let frame = |n: u64| -> Arc<[u8]> { Arc::from(format!("r#{n}").into_bytes()) };
    // The first this process sees of it: nothing before it is known.
    assert!(h.channel_record("r", 5, &frame(5).into(), now));
    assert_eq!(h.channel_resume("r", 3, "e"), ChannelResume::TooOld);
    assert_eq!(replay(&h, "r", 4), ["r#5"]);
    assert!(h.channel_record("r", 6, &frame(6).into(), now));
    assert!(
        !h.channel_record("r", 6, &frame(6).into(), now),
        "seen already"
    );
    assert!(
        !h.channel_record("r", 2, &frame(2).into(), now),
        "passed already"
    );
    assert!(
        !h.channel_record("zero", 0, &frame(0).into(), now),
        "numbers nothing"
    );
    assert_eq!(h.channel_streams().known(), 1);
    assert_eq!(replay(&h, "r", 4), ["r#5", "r#6"]);
    assert!(h.channel_record("r", 9, &frame(9).into(), now));
    assert_eq!(h.channel_resume("r", 6, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("r", 7, "e"), ChannelResume::TooOld);
    assert_eq!(replay(&h, "r", 8), ["r#9"]);
    assert_eq!(h.channel_frame("r", 6), Err(Lost));
    assert_eq!((h.channel_last("r"), h.len()), (9, 1));
    // Followed from its first record: a client ahead waits for the rest.
    assert_eq!(h.channel_resume("r", 12, "e"), recovered(13, 0));
    // A channel only joined takes whatever the sequencer numbered next.
    h.channel_joined("j");
    assert!(h.channel_record("j", 1, &frame(1).into(), now));
    assert_eq!(replay(&h, "j", 0), ["r#1"]);
}

#[test]
fn each_channel_keeps_its_last_history_size_messages() {
    let now = Instant::now();
    let mut h = history(2);
    for _ in 0..5 {
        publish(&mut h, "a", now);
        publish(&mut h, "b", now);
    }
    assert_eq!(h.len(), 4);
    assert_eq!(replay(&h, "a", 3), ["a#4", "a#5"]);
    assert_eq!(replay(&h, "b", 3), ["b#4", "b#5"]);
    assert_eq!(h.channel_resume("b", 2, "e"), ChannelResume::TooOld);
    // The places of the entries that left are not kept for long.
    assert!(h.channel_streams().places() <= 2 * h.len() + 64);
}

#[test]
fn channel_entries_leave_at_the_ttl_and_the_channel_with_them() {
    let t0 = Instant::now();
    let mut h = history(10);
    publish(&mut h, "a", t0);
    h.channel_joined("b");
    publish(&mut h, "b", t0 + TTL / 2);
    assert_eq!(h.next_expiry(), Some(t0 + TTL));
    h.expire(t0 + TTL);
    assert_eq!(h.channel_streams().known(), 1, "a went with its entry");
    assert_eq!(h.next_expiry(), Some(t0 + TTL / 2 + TTL));
    assert_eq!(h.channel_resume("a", 0, "e"), ChannelResume::TooOld);
    h.expire(t0 + 2 * TTL);
    assert_eq!((h.len(), h.next_expiry()), (0, None));
    // b is followed by a client: still known, at its offset.
    assert_eq!(h.channel_resume("b", 1, "e"), recovered(2, 0));
    assert_eq!(h.channel_resume("b", 0, "e"), ChannelResume::TooOld);
    assert_eq!(h.bytes(), 0, "a followed channel is its subscribers' cost");
}

#[test]
fn the_byte_bound_takes_the_oldest_entries_of_everyone_and_every_channel() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let cost = 3 + CHANNEL_ENTRY_COST;
    let everyone = 200 + ENTRY_COST;
    let bound = 2 * cost + everyone + 2 * (1 + CHANNEL_COST);
    let mut h = history(100).with_max_bytes(bound);
    publish(&mut h, "a", at(0));
    h.append(&SharedFrame::from(vec![b'e'; 200]), at(1));
    publish(&mut h, "b", at(2));
    assert_eq!(h.bytes(), bound);
    publish(&mut h, "a", at(3));
    // a#1 was the oldest of all.
    assert_eq!(h.channel_resume("a", 0, "e"), ChannelResume::TooOld);
    assert_eq!(replay(&h, "a", 1), ["a#2"]);
    assert!(h.bytes() <= bound);
    publish(&mut h, "b", at(4));
    // Then everyone's first, older than b#1.
    assert!(h.frame("e", 1).is_none());
    assert_eq!(replay(&h, "b", 0), ["b#1", "b#2"]);
    assert!(h.bytes() <= bound);
}

#[test]
fn subscribers_are_counted_across_workers_and_the_idle_channel_forgotten() {
    let now = Instant::now();
    let mut h = history(10);
    h.channel_joined("b");
    h.channel_joined("a");
    h.channel_joined("a");
    h.channel_left("nobody");
    h.channel_left("b");
    h.channel_left("b");
    assert_eq!((h.channel_count(), h.subscription_count()), (1, 2));
    assert_eq!(h.channel_subscribers("a"), 2);
    assert_eq!(h.channel_streams().known(), 1, "b had no entry");
    publish(&mut h, "c", now);
    h.channel_joined("c");
    publish(&mut h, "a", now);
    publish(&mut h, "a", now);
    assert_eq!(
        h.channel_list(),
        [(Arc::from("a"), 2, 2), (Arc::from("c"), 1, 1)]
    );
    h.channel_left("a");
    h.channel_left("a");
    assert_eq!((h.channel_count(), h.subscription_count()), (1, 1));
    assert_eq!(h.channel_subscribers("a"), 0);
    assert_eq!(h.channel_streams().known(), 2, "a keeps its entries");
    assert_eq!(h.bytes(), 3 * (3 + CHANNEL_ENTRY_COST) + 1 + CHANNEL_COST);
}

/// Every way a channel can be forgotten, and a client that resumes it
/// with a `since` from before: never a recovery that skips a message.
#[test]
fn a_forgotten_channel_never_numbers_an_offset_twice() {
    let t0 = Instant::now();
    let mut h = history(10);
    for _ in 0..3 {
        publish(&mut h, "a", t0);
    }
    h.expire(t0 + TTL);
    assert_eq!(h.channel_streams().floor(), 3);
    // Known to a client as a#1..a#3; it comes back numbered after them.
    assert_eq!(h.channel_last("a"), 3, "where it would start");
    assert_eq!(h.channel_resume("a", 2, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_frame("a", 3), Err(Lost));
    assert_eq!(h.channel_frame("a", 4), Ok(None));
    let now = t0 + TTL;
    assert_eq!(publish(&mut h, "a", now), 4);
    assert_eq!(replay(&h, "a", 3), ["a#4"]);

    // Another channel forgotten higher raises the floor for every channel:
    // a stale `since` of one forgotten lower is too old.
    assert_eq!(
        publish(&mut h, "b", now),
        4,
        "a new channel starts above the floor"
    );
    for _ in 0..8 {
        publish(&mut h, "b", now);
    }
    h.expire(now + TTL);
    assert_eq!(h.channel_streams().floor(), 12);
    assert_eq!(h.channel_resume("a", 4, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("a", 7, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("a", 12, "e"), recovered(13, 0));
    let later = now + TTL;
    assert_eq!(publish(&mut h, "a", later), 13);
    assert_eq!(replay(&h, "a", 12), ["a#13"]);

    // Forgotten by the last subscriber leaving, resume off: offsets go on.
    let mut off = history(0);
    off.channel_joined("c");
    assert_eq!(publish(&mut off, "c", t0), 1);
    off.channel_left("c");
    assert_eq!(off.channel_streams().known(), 0);
    assert_eq!(publish(&mut off, "c", t0), 2);
    assert_eq!(publish(&mut off, "d", t0), 3, "d starts above c's past");

    // Forgotten by the byte bound.
    let mut tight = history(10).with_max_bytes(3 * (3 + CHANNEL_ENTRY_COST + 1 + CHANNEL_COST));
    for channel in ["x", "y", "z", "w", "x"] {
        publish(&mut tight, channel, t0);
        assert!(tight.bytes() <= 3 * (3 + CHANNEL_ENTRY_COST + 1 + CHANNEL_COST));
    }
    assert_eq!(tight.channel_streams().floor(), 1);
    assert_eq!(
        tight.channel_last("x"),
        2,
        "x#1 was forgotten, x#2 follows it"
    );
    assert_eq!(tight.channel_resume("x", 0, "e"), ChannelResume::TooOld);
    assert_eq!(replay(&tight, "x", 1), ["x#2"]);
}

/// Many channels, many messages, big frames, some followed: the entries
/// and their bytes stay within `--max-history-bytes`, the channels within
/// the followed ones plus those with an entry, the order's places within
/// twice the entries.
#[test]
fn no_traffic_grows_the_history_past_its_bounds() {
    let t0 = Instant::now();
    let bound = 1 << 20;
    let mut h = history(1000).with_max_bytes(bound);
    let mut followed = 0;
    for i in 0..20_000u64 {
        let now = t0 + Duration::from_millis(i);
        let channel = format!("ch{}", (i * 7919) % 5000);
        if i % 10 == 0 {
            h.channel_joined(&channel);
            followed += 1;
        }
        if i % 50 == 0 {
            h.channel_left(&channel);
        }
        let size = if i % 100 == 0 {
            60_000
        } else {
            100 + (i % 900) as usize
        };
        h.channel_sequence(&channel, |n| SharedFrame::from(vec![n as u8; size]), now);
        if i % 3 == 0 {
            h.append(&SharedFrame::from(vec![0u8; size]), now);
        }
        let streams = h.channel_streams();
        assert!(h.bytes() <= bound, "{} bytes after {i}", h.bytes());
        assert!(streams.known() <= h.channel_count() + streams.len());
        assert!(streams.places() <= 2 * streams.len() + 64);
    }
    assert!(h.channel_count() <= followed);
    assert!(h.bytes() > bound / 2, "the bound is used, not emptied");
}

#[test]
fn a_new_epoch_starts_every_channel_again() {
    let now = Instant::now();
    let mut h = history(10);
    h.channel_joined("a");
    publish(&mut h, "a", now);
    publish(&mut h, "b", now);
    h.sync("f", 40);
    assert_eq!(
        (h.channel_last("a"), h.channel_last("b"), h.len()),
        (0, 0, 0)
    );
    assert_eq!((h.channel_count(), h.subscription_count()), (1, 1));
    assert_eq!(h.bytes(), 0);
    assert_eq!(h.channel_resume("a", 1, "e"), ChannelResume::UnknownEpoch);
    assert_eq!(h.channel_resume("a", 0, "f"), recovered(1, 0));
    assert_eq!(publish(&mut h, "a", now), 1);
}

#[test]
fn a_hand_over_continues_every_channel() {
    let t0 = Instant::now();
    let mut old = history(10);
    old.channel_joined("early");
    for _ in 0..3 {
        publish(&mut old, "busy", t0);
    }
    old.channel_joined("quiet");
    publish(&mut old, "quiet", t0);
    publish(&mut old, "gone", t0);
    publish(&mut old, "late", t0 + TTL / 2);
    // Every entry of t0 left by age: busy and gone with them; quiet is
    // followed by a client there.
    let state = old.export(t0 + TTL);
    assert_eq!(state.channels.floor, 3);
    let names: Vec<_> = state.channels.channels.iter().map(|c| &*c.name).collect();
    assert_eq!(names, ["early", "late", "quiet"]);

    let now = Instant::now();
    let mut new = History::new("fresh".into(), 10, TTL);
    new.channel_joined("here");
    new.adopt(state.clone(), now);
    assert_eq!(new.epoch(), "e");
    assert_eq!(new.channel_last("late"), 1);
    assert_eq!(new.channel_last("quiet"), 1);
    assert_eq!(new.channel_last("busy"), 3, "forgotten there: the floor");
    assert_eq!(replay(&new, "late", 0), ["late#1"]);
    assert_eq!(new.next_expiry(), Some(now + TTL / 2), "late's age crossed");
    // The old process's clients of quiet come over and resume it; those
    // of early were told it stood at 0, below the floor since.
    assert_eq!(new.channel_resume("quiet", 1, "e"), recovered(2, 0));
    assert_eq!(new.channel_resume("early", 0, "e"), recovered(1, 0));
    assert_eq!(new.channel_resume("busy", 0, "e"), ChannelResume::TooOld);
    assert_eq!((new.channel_count(), new.subscription_count()), (1, 1));
    assert_eq!(publish(&mut new, "quiet", now), 2);
    assert_eq!(publish(&mut new, "busy", now), 4, "above the old floor");
    assert_eq!(publish(&mut new, "other", now), 4);

    // Nobody came for a quiet channel: it is forgotten after the TTL.
    let mut idle = history(10);
    idle.adopt(state, now);
    assert_eq!(idle.channel_resume("quiet", 1, "e"), recovered(2, 0));
    assert!(idle.bytes() > 0);
    idle.expire(now + TTL);
    assert_eq!(idle.channel_streams().known(), 0);
    assert_eq!(idle.channel_streams().floor(), 3);
    assert_eq!(idle.bytes(), 0);
}

#[test]
fn an_adopted_history_keeps_the_new_bounds() {
    let now = Instant::now();
    let mut old = history(10);
    for _ in 0..8 {
        publish(&mut old, "a", now);
    }
    let state = old.export(now);
    let mut small = history(3);
    small.adopt(state.clone(), now);
    assert_eq!(small.channel_resume("a", 4, "e"), ChannelResume::TooOld);
    assert_eq!(replay(&small, "a", 5), ["a#6", "a#7", "a#8"]);
    let mut off = history(0);
    off.adopt(state, now);
    assert_eq!((off.channel_last("a"), off.len()), (8, 0));
    assert_eq!(off.channel_streams().known(), 0);
    assert_eq!(publish(&mut off, "a", now), 9);
}

/// A history whose channels Redis numbers, with a subscriber of `channel`.
fn shared(channel: &str) -> History {
    let mut h = history(10).with_channels_numbered_elsewhere();
    h.channel_joined(channel);
    h
}

fn record(h: &mut History, channel: &str, offset: u64, now: Instant) -> bool {
    let frame = SharedFrame::from(format!("{channel}#{offset}").into_bytes());
    h.channel_record(channel, offset, &frame, now)
}

#[test]
fn with_redis_a_channel_not_followed_recovers_nothing_not_even_at_its_last_offset() {
    let now = Instant::now();
    let mut h = shared("c");
    assert_eq!(h.channel_resume("c", 0, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("c", 5, "e"), ChannelResume::TooOld);
    let a: Arc<str> = "c".into();
    h.channel_follow_started(&a);
    assert_eq!(
        h.channel_resume("c", 0, "e"),
        ChannelResume::TooOld,
        "followed, but from where is not known yet"
    );
    h.channel_follow_from("c", "e", 7);
    assert_eq!(h.channel_resume("c", 6, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("c", 7, "e"), recovered(8, 0));
    assert_eq!(
        h.channel_resume("c", 9, "e"),
        recovered(10, 0),
        "on its way"
    );
    assert!(!record(&mut h, "c", 7, now), "numbered before: not kept");
    assert!(record(&mut h, "c", 8, now));
    assert_eq!(replay(&h, "c", 7), ["c#8"]);
}

#[test]
fn with_redis_a_channel_no_worker_follows_any_more_recovers_nothing_until_followed_again() {
    let now = Instant::now();
    let mut h = shared("c");
    let c: Arc<str> = "c".into();
    h.channel_follow_started(&c);
    h.channel_follow_started(&c);
    record(&mut h, "c", 1, now);
    record(&mut h, "c", 2, now);
    h.channel_follow_stopped("c");
    assert_eq!(replay(&h, "c", 0).len(), 2, "another worker still follows");
    h.channel_follow_stopped("c");
    assert_eq!(h.channel_resume("c", 0, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("c", 2, "e"), ChannelResume::TooOld);
    h.channel_follow_from("c", "e", 9);
    assert_eq!(
        h.channel_resume("c", 9, "e"),
        ChannelResume::TooOld,
        "not followed"
    );
    h.channel_follow_started(&c);
    record(&mut h, "c", 5, now);
    assert_eq!(
        h.channel_resume("c", 3, "e"),
        ChannelResume::TooOld,
        "3 to 4 missed"
    );
    assert_eq!(h.channel_resume("c", 4, "e"), recovered(5, 1));
}

#[test]
fn with_redis_a_gap_in_a_channel_stops_recovery_across_it() {
    let now = Instant::now();
    let mut h = shared("c");
    h.channel_follow_started(&"c".into());
    record(&mut h, "c", 1, now);
    h.channel_gap("c");
    assert_eq!(h.channel_resume("c", 1, "e"), ChannelResume::TooOld);
    record(&mut h, "c", 3, now);
    assert_eq!(h.channel_resume("c", 1, "e"), ChannelResume::TooOld);
    assert_eq!(h.channel_resume("c", 2, "e"), recovered(3, 1));
    h.channel_follow_from("c", "other", 9);
    assert_eq!(
        h.channel_last("c"),
        3,
        "another epoch's position is no news"
    );
}

/// A hand-over from a process with far more quiet channels than the new
/// one's bytes allow: the positions go first, the messages stay.
#[test]
fn a_crowd_of_quiet_channels_taken_over_does_not_push_out_the_messages() {
    let t0 = Instant::now();
    let mut old = history(10);
    for i in 0..1000 {
        old.channel_joined(&format!("quiet{i:04}"));
    }
    publish(&mut old, "room", t0);
    old.append(&SharedFrame::from(&b"e#1"[..]), t0);
    let state = old.export(t0);
    assert_eq!(state.channels.channels.len(), 1001);

    let bound = 100 * (CHANNEL_COST + 8) + 2 * (3 + CHANNEL_ENTRY_COST + 4 + CHANNEL_COST);
    let mut new = history(10).with_max_bytes(bound);
    new.adopt(state, t0);
    assert!(new.bytes() <= bound, "{} of {bound}", new.bytes());
    assert_eq!(replay(&new, "room", 0), ["room#1"]);
    assert!(new.frame("e", 1).is_some());
    let known = new.channel_streams().known();
    assert!((50..=101).contains(&known), "{known} channels kept");
}

/// `--max-channels`: a flood of fresh channels, published to and joined,
/// never holds more than the bound; the vacant ones make room, the one
/// left longest ago first, and a subscribed one never does.
#[test]
fn the_channels_held_stay_within_max_channels() {
    let t0 = Instant::now();
    let mut h = history(10).with_max_channels(4);
    for name in ["s1", "s2"] {
        assert!(h.channel_make_room(name));
        h.channel_joined(name);
    }
    publish(&mut h, "old", t0);
    publish(&mut h, "newer", t0);
    publish(&mut h, "s1", t0);
    assert_eq!(h.channels_held(), 4);
    assert!(h.channel_make_room("s2"), "a channel held needs no room");
    assert!(h.channel_make_room("fresh"));
    assert_eq!(h.channels_held(), 3, "the oldest vacant channel went");
    assert_eq!(h.channel_resume("old", 0, "e"), ChannelResume::TooOld);
    assert_eq!(replay(&h, "newer", 0), ["newer#1"]);
    publish(&mut h, "fresh", t0);
    assert_eq!(
        publish(&mut h, "old", t0),
        2,
        "numbered above the floor it left"
    );
    h.channel_joined("fresh");
    h.channel_joined("old");
    assert!(
        !h.channel_make_room("another"),
        "every channel has a subscriber"
    );
    assert_eq!(h.channels_held(), 4);
    h.channel_left("s1");
    assert!(
        h.channel_make_room("another"),
        "s1 is vacant, kept for its message"
    );
    assert_eq!(h.channel_resume("s1", 0, "e"), ChannelResume::TooOld);
    for i in 0..10_000u64 {
        let channel = format!("f{i}");
        if h.channel_make_room(&channel) {
            publish(&mut h, &channel, t0 + Duration::from_millis(i));
            if i % 3 == 0 {
                h.channel_joined(&channel);
                h.channel_left(&channel);
            }
        }
        assert!(
            h.channels_held() <= 4,
            "{} held after {i}",
            h.channels_held()
        );
        assert!(h.channel_streams().vacant_places() <= 2 * 4 + 64);
    }
}

#[test]
fn the_map_holds_a_name_and_a_pointer_a_channel() {
    // The map's spare room is up to as many slots again as channels: a
    // slot holding the record itself cost 96 bytes, not 24.
    assert_eq!(
        std::mem::size_of::<(Arc<str>, Box<super::Channel>)>(),
        3 * std::mem::size_of::<usize>()
    );
    #[cfg(target_pointer_width = "64")]
    assert_eq!(CHANNEL_COST, 192, "as docs/limits.md says");
}
