//! The node's steps for writing, once per loop turn: queued answers, the
//! turn's broadcasts, the next steps of the replays, what a write leads to
//! (read on, shut the write side, drop a slow consumer, watch for
//! writability), and the process-wide bound on queued bytes (see
//! `pressure.rs`).

use super::conns::Flushed;
use super::notice::Notices;
use super::queue_bound::over_budget;
use super::replay::{self, ReplayKey, Replayed};
use super::transmit::Transmit;
use super::{Node, Output};
use crate::app::history::Position;
use crate::conn::{Stage, Verdict};
use crate::ids::ConnKey;
use crate::log;
use crate::obs::metrics::{self, Limit};
use crate::proto::close::CloseCode;

impl Node {
    /// Queued answers first (a publisher hears back before the fanout of
    /// what it published), then the turn's broadcasts, then the replays'
    /// next steps for the clients whose queue is now empty, then whatever
    /// those could not write at once, and what waits for Redis.
    pub(super) fn write_out<T: Transmit>(&mut self, io: &mut T) {
        self.flush_dirty(io);
        self.deliver(None, io);
        self.flush_dirty(io);
        self.pace_replays(io);
        let excess = self.queue_excess();
        let shed = over_budget(&self.conns, excess);
        if !shed.is_empty() {
            for key in shed {
                self.process.stats.limit_hit(Limit::TotalQueue);
                if self.stage(key) != Some(Stage::Ws) {
                    // An HTTP connection that does not read its answers,
                    // or one closing: nothing to say, the socket goes.
                    self.remove(key, &"total queue bound");
                    continue;
                }
                if let Some(Some(Verdict::Dropped(event))) =
                    self.drive(key, |conn, now, s| conn.shed(now, s))
                {
                    self.on_event(key, event);
                }
            }
            self.flush_dirty(io);
        }
        self.release_reads();
        self.write_redis(io);
    }

    /// Writes the turn's broadcasts (and with `notices`, each client's
    /// shutdown notice after them) to every `/ws` client, then closes the
    /// clients whose socket failed.
    pub(super) fn deliver<T: Transmit>(&mut self, notices: Option<&mut Notices>, io: &mut T) {
        let with_notices = notices.is_some();
        let pass = self.fanout.deliver(
            &mut self.conns,
            notices.map(|notices| (notices, &mut self.rng)),
            io,
        );
        let stats = &self.process.stats;
        if with_notices {
            metrics::add(&stats.messages_sent, pass.recipients);
        }
        metrics::add(&stats.bytes_sent, pass.sent as u64);
        for key in self.fanout.take_failed() {
            self.remove(key, &"write error");
        }
    }

    /// One turn's share of the replays (see `Replays`): rounds of steps,
    /// each written at once, while a client's socket took its whole step
    /// and the turn's budget lasts.
    fn pace_replays<T: Transmit>(&mut self, io: &mut T) {
        if self.replays.is_empty() {
            return;
        }
        let mut budget = replay::BYTES_PER_TURN;
        while !self.replays.is_empty() {
            let stepped = self.replay_round(&mut budget);
            if stepped.is_empty() {
                break;
            }
            self.flush_dirty(io);
            let took_all = stepped
                .iter()
                .any(|key| self.conns.get(*key).is_some_and(|c| c.out().is_empty()));
            if !took_all {
                break;
            }
        }
        let everyone = self.process.stream().delivered(self.stream.position());
        let channels = &self.channels;
        self.replays.settle(&self.conns, |stream| match stream {
            Replayed::Everyone => everyone,
            Replayed::Channel(id) => channels.delivered(id),
        });
    }

    /// One round of replay steps; returns the clients that got one. A
    /// client whose replay reached what this worker handed out takes the
    /// live stream from now on; one whose replay the history can no longer
    /// serve is closed with 4002, so it resumes from what it has and hears
    /// the truth (`too_old`).
    fn replay_round(&mut self, budget: &mut usize) -> Vec<ConnKey> {
        let (process, at) = (&self.process, self.stream.position());
        let bounds = replay::Bounds {
            max_queue: self.process.config.max_queue_bytes,
            worker_share: self.queue_budget,
        };
        let channels = &self.channels;
        let pass = self.replays.pass(
            &mut self.conns,
            bounds,
            budget,
            |stream, cursor, step, out| {
                let history = process.stream();
                match stream {
                    Replayed::Everyone => {
                        history.replay(cursor, at, step.max_bytes, step.max_frames, out)
                    }
                    Replayed::Channel(id) => {
                        let step = (step.max_bytes, step.max_frames);
                        channels.replay(&history, id, cursor, step, out)
                    }
                }
            },
        );
        let stats = &self.process.stats;
        metrics::add(&stats.messages_sent, pass.queued);
        metrics::add(&stats.messages_replayed, pass.written);
        self.end_replays(pass.finished, pass.lost);
        pass.stepped
    }

    /// The worker's place in the stream moved from `before` into another
    /// numbering (a new epoch): a client whose replay had everything of
    /// the old one takes the new one like the others (told the epoch
    /// first); one that still needed a message of the old one is closed
    /// with 4002 now, before it could be told the new epoch and take what
    /// it missed for a gap-free stream.
    pub(super) fn replays_renumbered(&mut self, before: Position) {
        let generation = self.stream.position().generation;
        let (caught_up, lost) = self.replays.renumbered(before, generation);
        self.end_replays(caught_up, lost);
    }

    /// Replays that ended: their clients take the live stream from now on
    /// (`finished`) or are closed with 4002 (`lost`).
    fn end_replays(&mut self, finished: Vec<ReplayKey>, lost: Vec<ReplayKey>) {
        metrics::sub(
            &self.process.stats.replays_active,
            (finished.len() + lost.len()) as u64,
        );
        for key in finished {
            match key.stream {
                Replayed::Everyone => self.fanout.rejoin(key.conn),
                Replayed::Channel(id) => self.channels.set_replaying(key.conn, id, false),
            }
        }
        for ReplayKey { conn: key, .. } in lost {
            metrics::add(&self.process.stats.replays_lost, 1);
            log!(
                Info,
                "closing a resuming client: the history no longer holds what its replay needs",
                conn = key,
                worker = self.id
            );
            let closed = self.drive(key, |conn, now, s| {
                conn.close(CloseCode::REPLAY_LOST, "replay lost", now, s)
            });
            if let Some(Some(event)) = closed {
                self.on_event(key, event);
            }
        }
    }

    /// Flushes every connection marked since the last flush. Those marked
    /// while flushing wait for the next call.
    fn flush_dirty<T: Transmit>(&mut self, io: &mut T) {
        let mut dirty = self.conns.take_dirty();
        for key in dirty.drain(..) {
            self.flush(key, io);
        }
        self.conns.recycle(dirty);
    }

    fn flush<T: Transmit>(&mut self, key: ConnKey, io: &mut T) {
        match self.conns.flush(key, self.clock.tick(), io) {
            Flushed::Gone => return,
            Flushed::Failed(e) => return self.remove(key, &format!("write error: {e}")),
            Flushed::Sent { sent, verdict } => {
                metrics::add(&self.process.stats.bytes_sent, sent as u64);
                match verdict {
                    Some(Verdict::ResumeReading | Verdict::CheckQuiet) => {
                        self.outputs.push_back(Output::ReadAgain(key))
                    }
                    Some(Verdict::ShutWrite) => self.outputs.push_back(Output::ShutWrite(key)),
                    Some(Verdict::Dropped(event)) => self.on_event(key, event),
                    None => {}
                }
            }
        }
        if let Some(on) = self.conns.update_interest(key) {
            self.outputs.push_back(Output::Writable { key, on });
        }
    }
}
