//! The stream's state on the link: every channel crosses to a reader of
//! this release, none to one of the release before, whatever the cut.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::{Decoder, Message};
use super::{state_messages, StateError, StateReader};
use crate::app::channel_history::ChannelResume;
use crate::app::history::{History, StreamState};

const TTL: Duration = Duration::from_secs(60);

/// A history with everyone's messages and three channels: one with
/// entries, one followed by a client but with none left, one forgotten.
fn exported() -> StreamState {
    let t0 = Instant::now();
    let mut h = History::new("e".into(), 10, TTL);
    let frame = |n: u64| -> Arc<[u8]> { Arc::from(n.to_string().into_bytes()) };
    h.append(&frame(1), t0);
    h.channel_joined("quiet");
    h.channel_sequence("quiet", frame, t0);
    h.channel_sequence("gone", frame, t0);
    let later = t0 + TTL;
    h.append(&frame(2), later);
    for _ in 0..3 {
        h.channel_sequence("room", frame, later);
    }
    h.export(later)
}

/// The bytes of `messages` read back in pieces of `cut` bytes.
fn read_back(messages: &[Message], cut: usize) -> Result<StreamState, StateError> {
    let mut bytes = Vec::new();
    for m in messages {
        m.encode(&mut bytes);
    }
    let mut decoder = Decoder::default();
    let mut reader = StateReader::default();
    for piece in bytes.chunks(cut) {
        decoder.push(piece);
        if let Some(state) = reader.read(&mut decoder)? {
            assert_eq!(decoder.pending(), 0, "nothing read past the state");
            return Ok(state);
        }
    }
    panic!("the state never completed");
}

#[test]
fn every_channel_crosses_whatever_the_cut() {
    let state = exported();
    assert_eq!(state.channels.floor, 1, "gone#1 forgotten");
    assert_eq!(state.channels.channels.len(), 2);
    let messages = state_messages(&state, true);
    for cut in [1, 5, 13, usize::MAX] {
        assert_eq!(read_back(&messages, cut).unwrap(), state, "cut {cut}");
    }
}

#[test]
fn the_new_process_resumes_every_channel_where_the_old_one_stood() {
    let state = read_back(&state_messages(&exported(), true), 64).unwrap();
    let now = Instant::now();
    let mut new = History::new("fresh".into(), 10, TTL);
    new.adopt(state, now);
    let recovered = |next, replayed| ChannelResume::Recovered { next, replayed };
    // room started above the floor: 2, 3, 4.
    assert_eq!(new.channel_resume("room", 4, "e"), recovered(5, 0));
    assert_eq!(new.channel_resume("room", 2, "e"), recovered(3, 2));
    assert_eq!(new.channel_resume("room", 1, "e"), recovered(2, 3));
    assert_eq!(new.channel_resume("quiet", 1, "e"), recovered(2, 0));
    assert_eq!(new.channel_resume("gone", 0, "e"), ChannelResume::TooOld);
    assert_eq!(
        new.channel_frame("room", 4).unwrap().as_deref(),
        Some(&b"4"[..])
    );
    let room = new.channel_frame("room", 5).unwrap();
    assert_eq!(room, None);
    let numbered = new.channel_sequence("room", |n| Arc::from(n.to_string().into_bytes()), now);
    assert_eq!(numbered.0, 5);
    assert_eq!(
        new.channel_sequence("new", |_| Arc::from(&b""[..]), now).0,
        2
    );
}

#[test]
fn a_reader_of_the_release_before_channels_is_sent_none() {
    let state = exported();
    let messages = state_messages(&state, false);
    assert!(messages
        .iter()
        .all(|m| !matches!(m, Message::Channels { .. } | Message::Channel { .. })));
    let read = read_back(&messages, 7).unwrap();
    assert_eq!((read.epoch.as_str(), read.last), ("e", 2));
    assert_eq!(read.entries, state.entries);
    assert!(read.channels.channels.is_empty());
    let mut new = History::new("fresh".into(), 10, TTL);
    new.adopt(read, Instant::now());
    assert_eq!(new.channel_resume("room", 3, "e"), ChannelResume::TooOld);
}

#[test]
fn a_state_out_of_order_is_refused() {
    let state = exported();
    let messages = state_messages(&state, true);
    // The channels after everyone's head.
    let mut swapped: Vec<Message> = messages[messages.len() - 3..].to_vec();
    swapped.extend_from_slice(&messages[..messages.len() - 3]);
    assert!(matches!(
        read_back(&swapped, 64),
        Err(StateError::Unexpected(_))
    ));
    // More channels than announced, or a second head of them.
    let mut doubled = messages[..1].to_vec();
    doubled.extend_from_slice(&messages);
    assert!(matches!(
        read_back(&doubled, 64),
        Err(StateError::Unexpected(_))
    ));
}
