//! Reading: the socket into the scratch buffer, the bytes into the
//! connection, and its events to where they are carried out.

use std::io::{self, Read};

use super::worker::Worker;
use crate::app::publish;
use crate::conn::{Ending, Event, Stage};
use crate::log;
use crate::obs::metrics;

/// Reads per readiness event before other connections get their turn.
const READS_PER_EVENT: usize = 4;

enum Got {
    Bytes(usize),
    /// Nothing to read now.
    Nothing,
    /// The connection ended or is gone.
    Gone,
}

impl Worker {
    pub(super) fn on_readable(&mut self, key: usize) {
        let Some(stage) = self.conns.get(key).map(|s| s.conn.stage()) else {
            return;
        };
        if stage == Stage::Http {
            // Requests held back (parked, or while answers piled up) are
            // taken before anything new is read.
            self.feed(key, &[]);
        }
        for _ in 0..READS_PER_EVENT {
            let Some(slot) = self.conns.get_mut(key) else {
                return;
            };
            if let Err(limit) = slot.conn.wants_input() {
                if let Some(limit) = limit {
                    self.shared.stats.limit_hit(limit);
                }
                return;
            }
            if self.conns.get(key).map(|s| s.conn.stage()) != Some(stage) {
                // Upgraded or closing: the socket may already hold frames or
                // the FIN, which an edge-triggered poll will not announce
                // again, so the new phase reads on.
                self.read_later(key);
                return;
            }
            let n = match self.read_once(key) {
                Got::Gone => return,
                Got::Nothing => {
                    if let Some(Some(event)) = self.drive(key, |conn, _, _| conn.input_quiet()) {
                        self.on_event(key, event);
                    }
                    return;
                }
                Got::Bytes(n) => n,
            };
            let scratch = std::mem::take(&mut self.scratch);
            self.feed(key, &scratch[..n]);
            self.scratch = scratch;
            if stage == Stage::Closing {
                // A closing peer's bytes may change what its end waits for.
                self.mark_dirty(key);
            }
        }
        self.read_later(key);
    }

    /// Reads the socket once into the scratch buffer.
    fn read_once(&mut self, key: usize) -> Got {
        let Some(slot) = self.conns.get_mut(key) else {
            return Got::Gone;
        };
        loop {
            match slot.stream.read(&mut self.scratch) {
                Ok(0) => {
                    if let Some(Some(event)) = self.drive(key, |conn, now, s| conn.peer_eof(now, s))
                    {
                        self.on_event(key, event);
                    }
                    return Got::Gone;
                }
                Ok(n) => {
                    metrics::add(&self.shared.stats.bytes_received, n as u64);
                    return Got::Bytes(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Got::Nothing,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.remove(key, &format!("read error: {e}"));
                    return Got::Gone;
                }
            }
        }
    }

    /// Hands bytes to the connection and carries out each event, in order,
    /// until the bytes are used and no event is left.
    ///
    /// The turn's broadcasts are written before the connection may answer
    /// on its own (a pong, a close), but once per read, not before every
    /// frame: a publisher whose read holds hundreds of chats would
    /// otherwise cost a pass over every client per chat, a turn of seconds
    /// once the server falls behind, with the drain's notices and every
    /// other connection waiting for its end. A pong may then precede this
    /// read's own broadcasts (control frames have no order with data
    /// frames); a Close ends the client's broadcasts, so none follow it.
    /// Answers the application queues still come after them (`queue`).
    pub(super) fn feed(&mut self, key: usize, mut input: &[u8]) {
        self.before_output(key);
        loop {
            let Some((used, event)) = self.drive(key, |conn, now, s| conn.receive(input, now, s))
            else {
                return;
            };
            input = &input[used..];
            match event {
                Some(event) => self.on_event(key, event),
                None => return,
            }
        }
    }

    pub(super) fn on_event(&mut self, key: usize, event: Event<crate::app::hub::Client>) {
        match event {
            Event::Request { request, body } => self.on_request(key, request, body),
            Event::Message(message) => self.on_message(key, message),
            Event::Left { client, why } => {
                if let Some(limit) = why.limit() {
                    self.shared.stats.limit_hit(limit);
                }
                match why {
                    Ending::Fault(error) => log!(
                        Debug,
                        "protocol violation",
                        client = self.label(key, &client),
                        error = error
                    ),
                    Ending::SlowConsumer => {
                        metrics::add(&self.shared.stats.slow_consumers_dropped, 1);
                        log!(
                            Warn,
                            "dropping slow consumer",
                            client = self.label(key, &client)
                        );
                    }
                    _ => {}
                }
                self.leave(key, client, &why);
            }
            Event::Refused(error) => {
                if let Some(limit) = error.limit() {
                    self.shared.stats.limit_hit(limit);
                }
                if let Some(slot) = self.conns.get(key) {
                    log!(Debug, "http error", error = error, peer = slot.peer_label());
                }
            }
            Event::Limit(limit) => self.shared.stats.limit_hit(limit),
            // The worker that should have answered has stopped: it had no
            // clients left, so the client asked for is not connected.
            Event::ParkExpired(ticket) => {
                self.answer_parked(key, ticket, publish::published(false, 0))
            }
            Event::Closed(why) => self.remove(key, &why),
        }
    }
}
