//! The node's steps for WebSocket clients: joining (an id, the welcome,
//! what a resume missed), leaving, and what their messages lead to.

use std::fmt::Display;
use std::net::SocketAddr;

use super::mailbox::{Mail, Report};
use super::replay::ReplayKey;
use super::users::Identity;
use super::Node;
use crate::app::history::Resume;
use crate::app::hub::{Client, Endpoint};
use crate::app::messages::{self, Action};
use crate::app::protocol::{self, Resumed, Stream};
use crate::app::routes::ResumeFrom;
use crate::app::token::Claims;
use crate::ids::ConnKey;
use crate::log;
use crate::obs::metrics;
use crate::proto::close::CloseCode;
use crate::proto::frame::{encode_frame, Opcode};
use crate::proto::message::Message;

impl Node {
    /// Registers a new WebSocket client: counted, and on `/ws` given an id,
    /// its welcome and what it missed.
    pub(super) fn join(&mut self, key: ConnKey, peer: SocketAddr, resume: Option<ResumeFrom>) {
        let Some(client) = self.conns.get(key).and_then(|conn| conn.client().copied()) else {
            return;
        };
        self.process.stats.connection_opened(self.id);
        if client.endpoint == Endpoint::Echo {
            log!(
                Debug,
                "echo client connected",
                conn = key,
                peer = peer,
                worker = self.id
            );
            return;
        }
        // What went to everyone before this client joined is not for it,
        // and nothing may come before its welcome.
        self.fanout.joined(key);
        let seq = self.hub.join(key);
        self.process.notify_client_joined();
        if self.conns.get(key).is_some_and(|conn| conn.deflate()) {
            self.fanout
                .deflate_joined(&self.process.stats.deflate_clients);
        }
        self.drive(key, |conn, _, _| {
            if let Some(client) = conn.client_mut() {
                client.seq = seq;
            }
        });
        let id = self.here().id_of(seq);
        log!(
            Info,
            "client connected",
            client = id,
            peer = peer,
            worker = self.id
        );
        self.join_user_channel(key);
        self.welcome(key, &id.to_string(), resume);
        self.notify_late_joiner(key);
    }

    /// The welcome of client `id`: where it stands in the stream, and, when
    /// it resumes, the start of its replay: what it missed follows the
    /// welcome as it reads (see `Replays`).
    fn welcome(&mut self, key: ConnKey, id: &str, resume: Option<ResumeFrom>) {
        let alone = self.hub.len() == 1;
        let joined = self
            .stream
            .join(&self.process, resume.as_ref(), self.clock.at(), alone);
        let stats = &self.process.stats;
        let mut offset = joined.offset;
        let (resumed, replay) = match joined.resume {
            None => (None, None),
            Some(outcome) => {
                let index = match outcome {
                    Resume::Recovered { .. } => 0,
                    Resume::TooOld => 1,
                    Resume::UnknownEpoch => 2,
                };
                metrics::add(&stats.resumes[index], 1);
                match outcome {
                    Resume::Recovered { cursor, replayed } => {
                        // Ahead of this worker, the client has more than it
                        // handed out: that is where it stands.
                        offset = cursor.next - 1 + replayed;
                        let replay = (cursor.next - 1 != joined.offset).then_some(cursor);
                        let replayed = replayed as usize;
                        (Some(Resumed::Recovered { replayed }), replay)
                    }
                    failed => (Some(Resumed::Failed(failed.label())), None),
                }
            }
        };
        let stream = Stream {
            epoch: &joined.epoch,
            offset,
            resumed,
        };
        let user = self.users.get(key).map(|identity| &*identity.user);
        let welcome = protocol::welcome(id, user, self.id, stream, self.clock.wall_ms());
        self.send_json(key, &welcome);
        if let Some(cursor) = replay {
            self.replays.start(ReplayKey::everyone(key), cursor);
            self.fanout.set_apart(key);
            metrics::add(&self.process.stats.replays_active, 1);
        }
    }

    /// A client upgraded with a valid token: known by its identity until it
    /// leaves, and closed when the token expires.
    pub(super) fn authenticated(&mut self, key: ConnKey, claims: Claims) {
        let identity = Identity {
            expires: claims.expires_s(),
            user: claims.sub.into(),
            // Only `private:` names are ever looked up in it.
            private: claims
                .channels
                .into_iter()
                .filter(|name| name.starts_with("private:"))
                .map(Into::into)
                .collect(),
        };
        self.users.join(key, identity);
        metrics::add(&self.process.stats.authenticated_clients, 1);
    }

    /// Closes with 4001 "token expired" every client whose token's `exp`
    /// has come: on a timer, so a quiet client is closed on time too, not
    /// at its next message.
    pub(super) fn close_expired(&mut self) {
        for key in self.users.take_expired(self.clock.wall_ms()) {
            let Some(client) = self.conns.get(key).and_then(|conn| conn.client().copied()) else {
                continue;
            };
            metrics::add(&self.process.stats.tokens_expired, 1);
            log!(
                Info,
                "closing a client: its token expired",
                client = self.label(key, &client)
            );
            // What went to everyone before goes first.
            self.fanout.prime(key, &mut self.conns);
            let closed = self.drive(key, |conn, now, s| {
                conn.close(CloseCode::TOKEN_EXPIRED, "token expired", now, s)
            });
            if let Some(Some(event)) = closed {
                self.on_event(key, event);
            }
        }
    }

    /// A client left the WebSocket phase: it no longer counts and gets no
    /// more messages. Its peer address is on its `client connected` line:
    /// a WebSocket connection does not keep it.
    pub(super) fn leave(&mut self, key: ConnKey, client: Client, why: &dyn Display) {
        self.process.stats.connection_closed(self.id);
        self.fanout.left(key);
        let replays = self.replays.stop_all(key);
        metrics::sub(&self.process.stats.replays_active, replays as u64);
        self.leave_channels(key);
        if client.endpoint == Endpoint::Echo {
            log!(Debug, "echo client disconnected", conn = key, reason = why);
            return;
        }
        self.hub.leave(client.seq, key);
        if self.users.leave(key).is_some() {
            metrics::sub(&self.process.stats.authenticated_clients, 1);
        }
        self.process.notify_client_left();
        log!(
            Info,
            "client disconnected",
            client = self.here().id_of(client.seq),
            reason = why,
            remaining = self.process.stats.active()
        );
    }

    /// The client for logs: its id, or the connection of an echo client.
    pub(super) fn label(&self, key: ConnKey, client: &Client) -> String {
        match client.endpoint {
            Endpoint::Notify => self.here().id_of(client.seq).to_string(),
            Endpoint::Echo => format!("conn {key}"),
        }
    }

    pub(super) fn on_message(&mut self, key: ConnKey, message: Message) {
        let Some(from) = self.conns.get(key).and_then(|conn| conn.client().copied()) else {
            return;
        };
        metrics::add(&self.process.stats.messages_received, 1);
        let here = self.here();
        let now_ms = self.clock.wall_ms();
        let Some(action) = messages::on_message(message, from, &here, now_ms, || self.snapshot())
        else {
            return;
        };
        match action {
            Action::Echo(opcode, data) => {
                metrics::add(&self.process.stats.messages_sent, 1);
                if self.conns.get(key).is_some_and(|conn| conn.deflate()) {
                    let compressed = self.deflater.compress(&data);
                    self.conns
                        .queue(key, |conn| conn.send_compressed(opcode, &compressed));
                } else {
                    self.conns.queue(key, |conn| conn.send_frame(opcode, &data));
                }
            }
            Action::Reply(json) => self.send_json(key, &json),
            Action::Reject { error, json } => {
                log!(
                    Debug,
                    "bad client message",
                    client = self.label(key, &from),
                    error = error
                );
                self.send_json(key, &json);
            }
            Action::Broadcast(json) => {
                self.broadcast_stream(&json);
            }
            Action::Send { to, json } => self.send_json(to, &json),
            Action::Mail {
                worker,
                seq,
                json,
                on_miss,
            } => {
                let frame = encode_frame(Opcode::Text, json.as_bytes()).into();
                let error = encode_frame(Opcode::Text, on_miss.as_bytes()).into();
                let report = Report::SenderOnMiss {
                    worker: self.id,
                    seq: from.seq,
                    error,
                };
                self.post(worker, Mail::Deliver { seq, frame, report });
            }
            Action::Forward { to, json } => {
                self.publish_remote(Some(&to), &json);
            }
            Action::Subscribe {
                channel,
                private,
                resume,
            } => self.subscribe(key, channel, private, resume),
            Action::SubscribeUser { channel, resume } => self.subscribe_user(key, channel, resume),
            Action::Unsubscribe { channel } => self.unsubscribe(key, channel),
            Action::ChannelChat { channel, json } => self.chat_on_channel(key, channel, &json),
        }
    }
}
