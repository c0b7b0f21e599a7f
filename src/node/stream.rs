//! Where this worker stands in the broadcast stream: the offset of the last
//! message for everyone it handed to its clients, how a message gets its
//! number (from the process's sequencer without Redis, from Redis's with
//! it), and what a new client is told and replayed when it joins. With
//! Redis, also which epoch its clients were told, and which of the
//! process's own broadcasts it delivered before Redis numbered them.

use std::sync::Arc;
use std::time::Instant;

use super::mailbox::Mail;
use super::peer::state::{Peer, Role, Sequenced, TooSlow};
use super::peer::wire::{Decoder, Message};
use super::process::Process;
use crate::app::envelope::Tag;
use crate::app::history::{History, Position, Resume};
use crate::app::protocol;
use crate::app::routes::ResumeFrom;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

#[derive(Debug, Default)]
pub struct StreamCursor {
    position: Position,
    /// The oldest generation of the history whose epoch a client of this
    /// worker may still hold (from its welcome or an `epoch` message):
    /// clients are told when one after it starts (`tell`).
    told: u64,
    /// For each worker of the process, by index: the last of its
    /// broadcasts this worker delivered numbered, and the last it
    /// delivered without an offset before Redis numbered it (see
    /// `redis/returns.rs`). Each worker's come back in its order.
    own: Vec<Own>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Own {
    seen: u64,
    released: u64,
}

/// Where a joining client stands in the stream, and what became of its
/// resume.
#[derive(Debug, PartialEq, Eq)]
pub struct Joined {
    pub epoch: String,
    /// The last offset handed out, as the welcome says.
    pub offset: u64,
    pub resume: Option<Resume>,
}

impl StreamCursor {
    pub fn position(&self) -> Position {
        self.position
    }

    /// This worker handed out the message at `at`.
    pub fn advance(&mut self, at: Position) {
        self.position = at;
    }

    /// Numbers a message for everyone here (no Redis), keeps it, and mails
    /// it to every worker of the process, `me` included, under the
    /// sequencer's lock: each worker's mailbox then holds the stream in
    /// offset order. `wake` is called for each other worker that must be
    /// woken to read it. During a hand-over the new process numbers for
    /// both (each message also queued for the old one) and the old one
    /// sends its messages there instead (see `peer.rs`). Returns what
    /// became of the message and whether the link to the peer needs its
    /// shell woken.
    pub fn sequence(
        process: &Process,
        me: usize,
        json: &str,
        now: Instant,
        mut wake: impl FnMut(usize),
    ) -> (Sequenced, bool) {
        let mut stream = process.stream();
        let mut peer = process.peer();
        match peer.role() {
            Role::Follower => match peer.push(&Message::Publish(json.to_owned())) {
                Ok(wake_link) => {
                    metrics::add(&process.stats.handover_sent, 1);
                    return (Sequenced::ToPeer, wake_link);
                }
                Err(TooSlow) => {
                    Self::unlink(&mut stream, &mut peer, process, &[], 0, &mut wake);
                    stream.gap();
                    return (Sequenced::Unnumbered, true);
                }
            },
            Role::Orphan => {
                stream.gap();
                return (Sequenced::Unnumbered, false);
            }
            Role::Alone | Role::Sequencer => {}
        }
        let offset = stream.next_offset();
        let json = protocol::with_offset(json, offset);
        let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
        let at = stream.append(&frame, now);
        for worker in 0..process.config.workers {
            let mail = Mail::Stream {
                frame: Arc::clone(&frame),
                at,
            };
            if process.post(worker, mail) && worker != me {
                wake(worker);
            }
        }
        if peer.role() != Role::Sequencer {
            return (Sequenced::Here, false);
        }
        match peer.push(&Message::Numbered { offset, frame }) {
            Ok(wake_link) => {
                metrics::add(&process.stats.handover_sent, 1);
                (Sequenced::Here, wake_link)
            }
            Err(TooSlow) => {
                Self::unlink(&mut stream, &mut peer, process, &[], 0, &mut wake);
                (Sequenced::Here, true)
            }
        }
    }

    /// The link to the other process of a hand-over is gone (`peer::lost`,
    /// with the locks held): what this process accepted for everyone and
    /// the peer never got whole (`pending`, of which `written` went out,
    /// then what was still queued) is delivered here without an offset,
    /// and so is what it accepted for a channel.
    pub fn unlink(
        stream: &mut History,
        peer: &mut Peer,
        process: &Process,
        pending: &[u8],
        written: usize,
        wake: &mut impl FnMut(usize),
    ) {
        let queued = peer.lose();
        process.met_peer("", false);
        let mut decoder = Decoder::default();
        decoder.push(pending);
        decoder.push(&queued);
        let total = pending.len() + queued.len();
        let mut gap = false;
        while let Ok(Some(message)) = decoder.next_message() {
            let end = total - decoder.pending();
            if end <= written {
                continue;
            }
            let (channel, json) = match message {
                Message::Publish(json) => (None, json),
                Message::ChannelPublish { channel, json } => (Some(channel), json),
                _ => continue,
            };
            let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
            let channel: Option<Arc<str>> = channel.map(Into::into);
            gap |= channel.is_none();
            for worker in 0..process.config.workers {
                let mail = match &channel {
                    None => Mail::Broadcast(Arc::clone(&frame)),
                    Some(channel) => Mail::Channel {
                        channel: Arc::clone(channel),
                        offset: None,
                        frame: Arc::clone(&frame),
                    },
                };
                if process.post(worker, mail) {
                    wake(worker);
                }
            }
        }
        if gap {
            stream.gap();
        }
    }

    /// An offset Redis numbered that goes to no client here: a hole, or a
    /// broadcast of this process this worker already delivered without
    /// it. No resume from before it is recovered.
    pub fn hole(&mut self, process: &Process, epoch: &str, offset: u64) {
        self.position = process.stream().hole(epoch, offset);
    }

    /// The process's own broadcast `tag` came back numbered: returns
    /// whether this worker already delivered it without an offset.
    pub fn returned(&mut self, tag: Tag) -> bool {
        let own = self.own(tag.worker);
        own.seen = own.seen.max(tag.seq);
        tag.seq <= own.released
    }

    /// The process's own broadcast `tag` is to go out without an offset
    /// (Redis stalled before it came back): returns whether this worker
    /// delivers it, i.e. has not already delivered it numbered.
    pub fn release(&mut self, tag: Tag) -> bool {
        let own = self.own(tag.worker);
        if tag.seq <= own.seen {
            return false;
        }
        own.released = own.released.max(tag.seq);
        true
    }

    fn own(&mut self, worker: usize) -> &mut Own {
        if self.own.len() <= worker {
            self.own.resize(worker + 1, Own::default());
        }
        &mut self.own[worker]
    }

    /// This worker is about to deliver a message of history `generation`:
    /// returns whether its clients must first be told the new epoch (some
    /// may hold an older one). Either way they know it after that.
    pub fn tell(&mut self, generation: u64) -> bool {
        let tell = generation != self.told;
        self.told = generation;
        tell
    }

    /// A message Redis numbered, as it came back on the subscription. The
    /// first worker of the process to receive it frames and keeps it; the
    /// others share that frame.
    pub fn numbered(
        &mut self,
        process: &Process,
        epoch: &str,
        offset: u64,
        json: &str,
        now: Instant,
    ) -> Arc<[u8]> {
        let mut stream = process.stream();
        let (frame, at) = match stream.frame(epoch, offset) {
            Some(kept) => kept,
            None => {
                let json = protocol::with_offset(json, offset);
                let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
                let at = stream.record(epoch, offset, &frame, now);
                (frame, at)
            }
        };
        self.position = at;
        frame
    }

    /// Where a client joining now stands, and, when it resumes, what it
    /// missed. `alone`: no other client of this worker is connected, so
    /// none holds an older epoch than the one this one is told.
    pub fn join(
        &mut self,
        process: &Process,
        resume: Option<&ResumeFrom>,
        now: Instant,
        alone: bool,
    ) -> Joined {
        let mut stream = process.stream();
        if alone {
            self.told = stream.generation();
        }
        let resume = resume.map(|r| stream.resume(r.since, &r.epoch, self.position, now));
        Joined {
            epoch: stream.epoch().to_owned(),
            offset: stream.delivered(self.position),
            resume,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rand::Rng;

    fn process(workers: usize) -> Process {
        let config = Config {
            workers,
            ..Config::default()
        };
        Process::new(config, Instant::now(), &mut Rng::seeded(7))
    }

    #[test]
    fn every_worker_gets_the_stream_in_offset_order_and_others_are_woken() {
        let process = process(3);
        let now = Instant::now();
        let mut woken = Vec::new();
        StreamCursor::sequence(&process, 1, r#"{"type":"chat"}"#, now, |w| woken.push(w));
        StreamCursor::sequence(&process, 1, r#"{"type":"chat"}"#, now, |w| woken.push(w));
        assert_eq!(woken, [0, 2], "woken once per batch, the sender never");
        for worker in 0..3 {
            let mail = process.take_mail(worker);
            let offsets: Vec<u64> = mail
                .iter()
                .map(|m| match m {
                    Mail::Stream { at, .. } => at.offset,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(offsets, [1, 2], "worker {worker}");
        }
    }

    #[test]
    fn a_joining_client_is_told_what_this_worker_handed_out() {
        let process = process(1);
        let now = Instant::now();
        let mut cursor = StreamCursor::default();
        StreamCursor::sequence(&process, 0, "{}", now, |_| {});
        StreamCursor::sequence(&process, 0, "{}", now, |_| {});
        let mail = process.take_mail(0);
        let Mail::Stream { at, .. } = &mail[0] else {
            panic!()
        };
        cursor.advance(*at);
        let joined = cursor.join(&process, None, now, true);
        assert_eq!(joined.offset, 1, "the second is not handed out yet");
        let resume = ResumeFrom {
            since: 0,
            epoch: joined.epoch.clone(),
        };
        match cursor.join(&process, Some(&resume), now, true).resume {
            Some(Resume::Recovered { replayed, .. }) => assert_eq!(replayed, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_own_broadcast_is_delivered_once_numbered_or_released() {
        let mut cursor = StreamCursor::default();
        let tag = |seq| Tag { worker: 1, seq };
        // Seen numbered first: its release is skipped.
        assert!(!cursor.returned(tag(1)));
        assert!(!cursor.release(tag(1)));
        // Released first: its numbered copy is skipped, what follows is not.
        assert!(cursor.release(tag(2)) && cursor.release(tag(3)));
        assert!(cursor.returned(tag(2)) && cursor.returned(tag(3)));
        assert!(!cursor.returned(tag(4)));
        assert!(!cursor.returned(Tag { worker: 0, seq: 3 }), "per worker");
    }

    #[test]
    fn clients_are_told_a_new_epoch_once_unless_they_all_joined_in_it() {
        let process = process(1);
        let now = Instant::now();
        let mut cursor = StreamCursor::default();
        cursor.join(&process, None, now, true);
        assert!(!cursor.tell(0), "welcomed in it");
        process.stream().sync("redis", 5);
        assert!(cursor.tell(1) && !cursor.tell(1));
        process.stream().sync("flushed", 0);
        cursor.join(&process, None, now, true);
        assert!(!cursor.tell(2), "the only client was welcomed in it");
        process.stream().sync("again", 0);
        cursor.join(&process, None, now, false);
        assert!(cursor.tell(3), "another client may hold the older one");
    }

    #[test]
    fn a_message_numbered_by_redis_is_framed_once_per_process() {
        let process = process(2);
        let now = Instant::now();
        let (mut a, mut b) = (StreamCursor::default(), StreamCursor::default());
        let first = a.numbered(&process, "e1", 1, r#"{"type":"chat"}"#, now);
        let second = b.numbered(&process, "e1", 1, r#"{"type":"chat"}"#, now);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(a.position(), b.position());
        assert!(String::from_utf8_lossy(&first).ends_with(r#""offset":1}"#));
    }
}
