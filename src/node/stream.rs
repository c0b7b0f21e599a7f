//! Where this worker stands in the broadcast stream: the offset of the last
//! message for everyone it handed to its clients, how a message gets its
//! number (from the process's sequencer without Redis, from Redis's with
//! it), and what a new client is told and replayed when it joins.

use std::sync::Arc;
use std::time::Instant;

use super::mailbox::Mail;
use super::peer::state::{Peer, Role, Sequenced, TooSlow};
use super::peer::wire::{Decoder, Message};
use super::process::Process;
use crate::app::history::{History, Position, Resume};
use crate::app::protocol;
use crate::app::routes::ResumeFrom;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

#[derive(Debug, Default)]
pub struct StreamCursor {
    position: Position,
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
    /// then what was still queued) is delivered here without an offset.
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
            let Message::Publish(json) = message else {
                continue;
            };
            if end <= written {
                continue;
            }
            gap = true;
            let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
            for worker in 0..process.config.workers {
                if process.post(worker, Mail::Broadcast(Arc::clone(&frame))) {
                    wake(worker);
                }
            }
        }
        if gap {
            stream.gap();
        }
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
    /// missed.
    pub fn join(&self, process: &Process, resume: Option<&ResumeFrom>, now: Instant) -> Joined {
        let mut stream = process.stream();
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
        let joined = cursor.join(&process, None, now);
        assert_eq!(joined.offset, 1, "the second is not handed out yet");
        let resume = ResumeFrom {
            since: 0,
            epoch: joined.epoch.clone(),
        };
        match cursor.join(&process, Some(&resume), now).resume {
            Some(Resume::Recovered { replayed, .. }) => assert_eq!(replayed, 1),
            other => panic!("{other:?}"),
        }
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
