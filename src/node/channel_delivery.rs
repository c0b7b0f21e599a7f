//! The node's steps for a channel's messages: numbering one in the
//! channel and mailing it to every worker, and handing one that arrives
//! to this worker's subscribers of the channel, and to them only.

use std::sync::Arc;

use super::channel_sequencing;
use super::{Node, Output};
use crate::conn::Chunk;
use crate::obs::metrics;

impl Node {
    /// Sends `json` to the subscribers of `channel` in the process:
    /// numbered in the channel (`"offset"` added) under the stream's lock,
    /// kept in its history and mailed to every worker, this one included,
    /// under the same lock, so every worker sees the channel's offsets in
    /// order (see `channel_sequencing`). Returns how many subscribers the
    /// process has.
    ///
    /// The one way a channel's message is sent, chat or published. With
    /// Redis the process numbers it too, for now: it reaches this
    /// process's subscribers only.
    pub(super) fn publish_channel(&mut self, channel: &str, json: &str) -> usize {
        let (id, now) = (self.id, self.clock.at());
        let outputs = &mut self.outputs;
        let sent = channel_sequencing::sequence(&self.process, id, channel, json, now, |w| {
            outputs.push_back(Output::Wake(w));
        });
        if sent.wake_link {
            self.outputs.push_back(Output::WakeLink);
        }
        // This worker's own mail is read at once, so the message keeps its
        // place among the sender's own.
        self.read_mail();
        sent.recipients
    }

    /// A message of `channel` for this worker's subscribers of it, each
    /// after what went to everyone before it. One numbered before every
    /// subscriber here joined goes to none; a subscriber whose replay of
    /// the channel is under way gets it from there.
    pub(super) fn deliver_channel(
        &mut self,
        channel: &str,
        offset: Option<u64>,
        frame: &Arc<[u8]>,
    ) {
        let Some(recipients) = self.channels.deliver(channel, offset) else {
            return;
        };
        let mut sent = 0;
        for key in recipients {
            self.fanout.prime(key, &mut self.conns);
            let queued = self
                .conns
                .queue(key, |conn| conn.send(Chunk::Shared(Arc::clone(frame))));
            if let Some(Ok(())) = queued {
                sent += 1;
            }
        }
        let stats = &self.process.stats;
        metrics::add(&stats.messages_sent, sent);
        metrics::add(&stats.channel_deliveries, sent);
    }
}
