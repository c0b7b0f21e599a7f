//! Carrying out what the application decides: answers to requests,
//! upgrades, joins and leaves, client messages and publications.

use std::fmt::Display;
use std::sync::Arc;

use super::mailbox::{Mail, Report};
use super::worker::Worker;
use crate::app::hub::{self, Client, Endpoint};
use crate::app::messages::{self, Action};
use crate::app::publish::{self, Delivery};
use crate::app::routes::{self, Publish, ResumeFrom, Route};
use crate::app::snapshot::Snapshot;
use crate::log;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};
use crate::proto::http::{Request, Response, Status};
use crate::proto::message::Message;

impl Worker {
    pub(super) fn on_request(&mut self, key: usize, request: Request, body: Vec<u8>) {
        let Some(peer) = self.conns.get(key).and_then(|s| s.conn.peer()) else {
            return;
        };
        let snapshot = Snapshot {
            peer_clients: self.per_ip_clients(peer.ip()),
            ..self.snapshot()
        };
        let route = routes::route(
            &request,
            &body,
            peer.ip(),
            &self.shared.config,
            &self.here(),
            &snapshot,
        );
        match route {
            Route::Respond(response) => self.respond(key, &request, response),
            Route::Refuse(reason, response) => {
                self.shared.stats.handshake_failed(reason);
                self.respond(key, &request, response);
            }
            Route::Metrics => {
                let text = self.shared.stats.render(
                    snapshot.draining,
                    self.shared.uptime_s(),
                    snapshot.history,
                );
                let response =
                    Response::new(Status::OK, "text/plain; version=0.0.4; charset=utf-8", text);
                self.respond(key, &request, response);
            }
            Route::Upgrade {
                endpoint,
                accept,
                resume,
            } => self.upgrade(key, endpoint, &accept, resume),
            Route::Publish(publish) => self.publish(key, request, publish),
        }
    }

    fn respond(&mut self, key: usize, request: &Request, response: Response) {
        if let Some(slot) = self.conns.get(key) {
            log!(
                Debug,
                "http request",
                method = request.method,
                path = request.path,
                status = response.status.0,
                peer = slot.peer_label()
            );
        }
        if let Some(Some(event)) =
            self.drive(key, |conn, now, s| conn.respond(request, response, now, s))
        {
            self.on_event(key, event);
        }
    }

    /// Answers a parked request, then goes on with any pipelined ones.
    pub(super) fn answer_parked(&mut self, key: usize, ticket: u64, response: Response) {
        let answered = self.drive(key, |conn, now, s| {
            conn.answer_parked(ticket, response, now, s)
        });
        if let Some(Ok(limit)) = answered {
            if let Some(event) = limit {
                self.on_event(key, event);
            }
            self.read_later(key);
        }
    }

    fn upgrade(
        &mut self,
        key: usize,
        endpoint: Endpoint,
        accept: &str,
        resume: Option<ResumeFrom>,
    ) {
        let Some(peer) = self.conns.get(key).and_then(|s| s.conn.peer()) else {
            return;
        };
        let client = Client { endpoint, seq: 0 };
        let Some(early_frames) =
            self.drive(key, |conn, now, s| conn.upgrade(accept, client, now, s))
        else {
            return;
        };
        self.per_ip_upgraded(key);
        self.join(key, peer, resume);
        // A client may send its first frames right behind the request.
        if !early_frames.is_empty() {
            self.feed(key, &early_frames);
        }
    }

    /// Registers a new WebSocket client: counted, and on `/ws` given an id,
    /// its welcome and what it missed.
    fn join(&mut self, key: usize, peer: std::net::SocketAddr, resume: Option<ResumeFrom>) {
        // Broadcasts made before this client joined are not for it, and
        // nothing may come before its welcome.
        self.deliver_broadcasts();
        let Some(client) = self.conns.get(key).and_then(|s| s.conn.client().copied()) else {
            return;
        };
        self.shared.stats.connection_opened(self.id);
        self.clients += 1;
        if client.endpoint == Endpoint::Echo {
            log!(
                Debug,
                "echo client connected",
                peer = peer,
                worker = self.id
            );
            return;
        }
        let seq = self.hub.join(key);
        self.shared.notify_client_joined();
        if let Some(client) = self.conns.get_mut(key).and_then(|s| s.conn.client_mut()) {
            client.seq = seq;
        }
        let id = hub::format_id(&self.shared.instance, self.id, seq);
        log!(
            Info,
            "client connected",
            client = id,
            peer = peer,
            worker = self.id
        );
        self.welcome(key, &id, resume);
        self.notify_late_joiner(key);
    }

    /// A client left the WebSocket phase: it no longer counts and gets no
    /// more messages.
    pub(super) fn leave(&mut self, key: usize, client: Client, why: &dyn Display) {
        self.shared.stats.connection_closed(self.id);
        self.clients -= 1;
        if client.endpoint == Endpoint::Echo {
            log!(
                Debug,
                "echo client disconnected",
                peer = self.peer_label(key),
                reason = why
            );
            return;
        }
        self.hub.leave(client.seq);
        self.ahead.remove(&key);
        self.shared.notify_client_left();
        log!(
            Info,
            "client disconnected",
            client = self.label(key, &client),
            peer = self.peer_label(key),
            reason = why,
            remaining = self.shared.stats.active()
        );
    }

    /// The peer's address for logs. Only built when a line is written: a
    /// WebSocket connection no longer holds it, so it costs a system call
    /// (getpeername), once per client leaving, 10,000 of them at a drain's
    /// deadline.
    fn peer_label(&self, key: usize) -> String {
        self.conns
            .get(key)
            .map_or_else(|| "-".to_owned(), |s| s.peer_label())
    }

    /// The client id for logs, or the peer address for echo connections.
    pub(super) fn label(&self, key: usize, client: &Client) -> String {
        match client.endpoint {
            Endpoint::Notify => hub::format_id(&self.shared.instance, self.id, client.seq),
            Endpoint::Echo => self
                .conns
                .get(key)
                .map_or_else(String::new, |s| s.peer_label()),
        }
    }

    pub(super) fn on_message(&mut self, key: usize, message: Message) {
        let Some(from) = self.conns.get(key).and_then(|s| s.conn.client().copied()) else {
            return;
        };
        metrics::add(&self.shared.stats.messages_received, 1);
        let here = self.here();
        let Some(action) = messages::on_message(message, from, &here, || self.snapshot()) else {
            return;
        };
        match action {
            Action::Echo(opcode, data) => {
                metrics::add(&self.shared.stats.messages_sent, 1);
                if let Some(out) = self.queue(key) {
                    out.push_frame(opcode, &data);
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
            Action::Send { slot, json } => self.send_json(slot, &json),
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
                self.shared
                    .post(worker, Mail::Deliver { seq, frame, report });
            }
            Action::Forward { to, json } => {
                self.publish_remote(Some(&to), &json, false);
            }
        }
    }

    /// Carries out `POST /broadcast` and `POST /notify` for the HTTP
    /// connection `key`. A personal message for another worker's client is
    /// answered when that worker has looked (by mail).
    fn publish(&mut self, key: usize, request: Request, publish: Publish) {
        let target = match publish::target(&publish, &self.here()) {
            Ok(target) => target,
            Err(response) => return self.respond(key, &request, response),
        };
        let id = self.shared.next_notification_id();
        metrics::add(&self.shared.stats.notifications, 1);
        let snapshot = self.snapshot();
        let published = publish::publish(publish, target, id, &self.here(), &snapshot);
        let mut mail = None;
        match published.delivery {
            Delivery::Broadcast(json) => {
                let recipients = self.broadcast_stream(&json);
                log!(
                    Info,
                    "notification published",
                    id = id,
                    recipients = recipients
                );
            }
            Delivery::Send { slot, json } => {
                self.send_json(slot, &json);
                log!(Info, "personal notification published", id = id);
            }
            Delivery::Forward { to, json } => {
                self.publish_remote(Some(&to), &json, false);
                log!(Info, "personal notification forwarded", id = id);
            }
            Delivery::Mail { worker, seq, json } => {
                let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
                mail = Some((worker, seq, frame));
            }
        }
        match (published.answer, mail) {
            (Some(answer), _) => {
                self.respond(key, &request, answer);
                // The recipient count is known: the publisher is answered
                // now, not after this turn's fanout, which a WebSocket
                // client's next read would otherwise write first.
                self.flush(key);
            }
            (None, Some((worker, seq, frame))) => {
                self.next_ticket += 1;
                let ticket = self.next_ticket;
                self.drive(key, |conn, _, _| conn.park(ticket, request));
                let report = Report::Publisher {
                    worker: self.id,
                    conn: key,
                    ticket,
                    id,
                };
                self.shared
                    .post(worker, Mail::Deliver { seq, frame, report });
            }
            (None, None) => {}
        }
    }

    pub(super) fn periodic(&mut self, now: std::time::Instant) {
        let Some(every) = self.shared.config.notify_interval else {
            return;
        };
        self.next_periodic = Some(now + every);
        self.periodic_count += 1;
        let id = self.shared.next_notification_id();
        metrics::add(&self.shared.stats.notifications, 1);
        let json = publish::periodic(self.periodic_count, id, &self.here(), &self.snapshot());
        let recipients = self.broadcast(&json);
        log!(
            Debug,
            "periodic notification",
            id = id,
            recipients = recipients
        );
    }
}
