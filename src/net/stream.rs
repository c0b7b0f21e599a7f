//! The broadcast stream on this worker: numbering messages for everyone,
//! where a new client stands in the stream, and resumes.

use std::sync::Arc;
use std::time::Instant;

use super::mailbox::Mail;
use super::worker::Worker;
use crate::app::history::Resume;
use crate::app::protocol::{self, Resumed, Stream};
use crate::app::routes::ResumeFrom;
use crate::conn::Chunk;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};

impl Worker {
    /// Sends a message to every `/ws` client, numbered: by the process's
    /// sequencer without Redis, by Redis's script with it (every worker then
    /// delivers it from its subscription). While Redis is out of reach or
    /// stalled it goes to this process's clients at once without an offset
    /// (and to other instances unnumbered, if Redis takes it), and no resume
    /// may be recovered across it. Returns how many clients of the process
    /// it goes to.
    pub(super) fn broadcast_stream(&mut self, json: &str) -> usize {
        let sequencing = match &self.redis {
            None => {
                self.sequence_here(json);
                return self.shared.notify_clients() as usize;
            }
            Some(_) => self.redis_sequencing(),
        };
        if sequencing && self.publish_remote(None, json, true) {
            return self.shared.notify_clients() as usize;
        }
        if !sequencing {
            self.publish_remote(None, json, false);
        }
        self.shared.stream().gap();
        self.broadcast(json)
    }

    /// Numbers the message and mails it to every worker, this one
    /// included, under the sequencer's lock: each worker's mailbox then
    /// holds the stream in offset order. This worker reads its mail at once,
    /// so the message keeps its place among the sender's own (a chat then a
    /// direct message from one read arrive in that order).
    fn sequence_here(&mut self, json: &str) {
        {
            let shared = &self.shared;
            let mut stream = shared.stream();
            let json = protocol::with_offset(json, stream.next_offset());
            let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
            let at = stream.append(&frame, Instant::now());
            for worker in 0..shared.config.workers {
                let mail = Mail::Stream {
                    frame: Arc::clone(&frame),
                    at,
                };
                if worker == self.id {
                    shared.post_to_self(worker, mail);
                } else {
                    shared.post(worker, mail);
                }
            }
        }
        self.read_mail();
    }

    /// A numbered message that came back from Redis. The first worker of
    /// the process to receive it frames and keeps it; the others share
    /// that frame.
    pub(super) fn deliver_numbered(&mut self, epoch: &str, offset: u64, json: &str) {
        let (frame, at) = {
            let mut stream = self.shared.stream();
            match stream.frame(epoch, offset) {
                Some(kept) => kept,
                None => {
                    let json = protocol::with_offset(json, offset);
                    let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
                    let at = stream.record(epoch, offset, &frame, Instant::now());
                    (frame, at)
                }
            }
        };
        self.position = at;
        self.broadcast_local(&frame, Some(offset));
    }

    /// The welcome of client `id`: where it stands in the stream, and, when
    /// it resumes, what it missed right behind it.
    pub(super) fn welcome(&mut self, key: usize, id: &str, resume: Option<ResumeFrom>) {
        let (epoch, offset, outcome) = {
            let mut stream = self.shared.stream();
            let outcome =
                resume.map(|r| stream.resume(r.since, &r.epoch, self.position, Instant::now()));
            let offset = stream.delivered(self.position);
            (stream.epoch().to_owned(), offset, outcome)
        };
        let (resumed, replay, offset) = match outcome {
            None => (None, Vec::new(), offset),
            Some(outcome) => {
                let index = match outcome {
                    Resume::Recovered { .. } => 0,
                    Resume::TooOld => 1,
                    Resume::UnknownEpoch => 2,
                };
                metrics::add(&self.shared.stats.resumes[index], 1);
                match outcome {
                    Resume::Recovered {
                        replay,
                        skip_through,
                    } => {
                        let replayed = replay.len();
                        metrics::add(&self.shared.stats.messages_replayed, replayed as u64);
                        let offset = match skip_through {
                            Some(since) => {
                                self.ahead.insert(key, since);
                                since
                            }
                            None => offset,
                        };
                        (Some(Resumed::Recovered { replayed }), replay, offset)
                    }
                    failed => (Some(Resumed::Failed(failed.label())), Vec::new(), offset),
                }
            }
        };
        let stream = Stream {
            epoch: &epoch,
            offset,
            resumed,
        };
        let welcome = protocol::welcome(id, self.id, stream, self.wall_ms);
        self.send_json(key, &welcome);
        for frame in replay {
            self.send_frame(key, Chunk::Shared(frame));
        }
    }

    /// Clients that resumed ahead of this worker get, outside the turn's
    /// delivery, only what is new to them.
    pub(super) fn feed_ahead(&mut self, frame: &Arc<[u8]>, offset: Option<u64>) {
        let mut fed = 0;
        for (&key, &since) in &self.ahead {
            if offset.is_some_and(|offset| offset <= since) {
                continue;
            }
            if let Some(slot) = self.conns.get_mut(key) {
                slot.conn.out_mut().push(Chunk::Shared(Arc::clone(frame)));
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty.push(key);
                }
                fed += 1;
            }
        }
        metrics::add(&self.shared.stats.messages_sent, fed);
    }

    /// Once this worker has handed out what a client ahead of it had, the
    /// client takes the turn's delivery like the others.
    pub(super) fn catch_up_ahead(&mut self) {
        if !self.ahead.is_empty() {
            let delivered = self.position.offset;
            self.ahead.retain(|_, since| *since > delivered);
        }
    }
}
