//! The node's steps for writing, once per loop turn: queued answers, the
//! turn's broadcasts, what a write leads to (read on, shut the write side,
//! drop a slow consumer, watch for writability), and the process-wide
//! bound on queued bytes (see `pressure.rs`).

use super::conns::Flushed;
use super::notice::Notices;
use super::queue_bound::over_budget;
use super::transmit::Transmit;
use super::{Node, Output};
use crate::conn::{Stage, Verdict};
use crate::ids::ConnKey;
use crate::obs::metrics::{self, Limit};

impl Node {
    /// Queued answers first (a publisher hears back before the fanout of
    /// what it published), then the turn's broadcasts, then whatever those
    /// could not write at once, and what waits for Redis.
    pub(super) fn write_out<T: Transmit>(&mut self, io: &mut T) {
        self.flush_dirty(io);
        self.deliver(None, io);
        self.flush_dirty(io);
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
        let delivered = self.stream.position().offset;
        self.fanout.catch_up(delivered);
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
