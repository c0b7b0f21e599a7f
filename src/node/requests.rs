//! The node's steps for HTTP requests: the route's answer, upgrades,
//! publications (answered at once, or once another worker has looked for
//! the client), the periodic notification, and turning away an address
//! over its limit.

use std::net::SocketAddr;
use std::sync::Arc;

use super::mailbox::{Mail, Report};
use super::per_ip::PerIpSlots;
use super::Node;
use crate::app::hub::{Client, Endpoint};
use crate::app::publish::{self, Delivery};
use crate::app::routes::{self, Publish, ResumeFrom, Route};
use crate::app::snapshot::Snapshot;
use crate::app::token::Claims;
use crate::ids::ConnKey;
use crate::log;
use crate::obs::metrics::{self, Limit};
use crate::proto::frame::{encode_frame, Opcode};
use crate::proto::http::{Request, Response, Status};
use crate::proto::negotiate::Agreement;

impl Node {
    pub(super) fn on_request(&mut self, key: ConnKey, request: Request, body: Vec<u8>) {
        let Some(peer) = self.conns.get(key).and_then(|conn| conn.peer()) else {
            return;
        };
        let snapshot = Snapshot {
            peer_clients: PerIpSlots::clients(&self.process.per_ip, peer.ip()),
            ..self.snapshot()
        };
        let config = &self.process.config;
        let route = routes::route(&request, &body, peer.ip(), config, &self.here(), &snapshot);
        match route {
            Route::Respond(response) => self.respond(key, &request, response),
            Route::Refuse(reason, response) => {
                self.process.stats.handshake_failed(reason);
                self.respond(key, &request, response);
            }
            Route::Metrics => {
                let uptime = self.process.uptime(self.clock.at()).as_secs_f64();
                let text = self
                    .process
                    .stats
                    .render(snapshot.draining, uptime, &snapshot.memory);
                let response =
                    Response::new(Status::OK, "text/plain; version=0.0.4; charset=utf-8", text);
                self.respond(key, &request, response);
            }
            Route::Upgrade {
                endpoint,
                accept,
                resume,
                claims,
                deflate,
            } => self.upgrade(key, peer, endpoint, (&accept, deflate), (resume, claims)),
            Route::Publish(publish) => self.publish(key, request, publish),
            Route::Channels => {
                let list = self.process.stream().channel_list();
                self.respond(key, &request, publish::channel_list(&list));
            }
        }
    }

    fn respond(&mut self, key: ConnKey, request: &Request, response: Response) {
        let response = self.last_if_leaving(key, response);
        if let Some(peer) = self.conns.get(key).and_then(|conn| conn.peer()) {
            log!(
                Debug,
                "http request",
                method = request.method,
                path = request.path,
                status = response.status.0,
                peer = peer
            );
        }
        if let Some(Some(event)) =
            self.drive(key, |conn, now, s| conn.respond(request, response, now, s))
        {
            self.on_event(key, event);
        }
    }

    /// Answers a parked request, then goes on with any pipelined ones.
    pub(super) fn answer_parked(&mut self, key: ConnKey, ticket: u64, response: Response) {
        let response = self.last_if_leaving(key, response);
        let answered = self.drive(key, |conn, now, s| {
            conn.answer_parked(ticket, response, now, s)
        });
        if let Some(Ok(limit)) = answered {
            if let Some(event) = limit {
                self.on_event(key, event);
            }
            self.outputs.push_back(super::Output::ReadAgain(key));
        }
    }

    /// While the process drains and another process serves its listening
    /// sockets, an answer is its connection's last (`Connection: close`,
    /// then the connection closes): a keep-alive client (a publisher, a
    /// probe) connects again, and reaches the process that stays. Requests
    /// already read behind it (pipelined) are answered first; the last of
    /// them closes.
    fn last_if_leaving(&self, key: ConnKey, response: Response) -> Response {
        let leaving = self.process.is_draining() && self.process.listener.is_shared();
        let more_read = self
            .conns
            .get(key)
            .is_some_and(|conn| conn.holds_next_request());
        if leaving && !more_read {
            response.closing()
        } else {
            response
        }
    }

    fn upgrade(
        &mut self,
        key: ConnKey,
        peer: SocketAddr,
        endpoint: Endpoint,
        (accept, deflate): (&str, Option<Agreement>),
        (resume, claims): (Option<ResumeFrom>, Option<Claims>),
    ) {
        let client = Client { endpoint, seq: 0 };
        let Some(early_frames) = self.drive(key, |conn, now, s| {
            conn.upgrade(accept, deflate, client, now, s)
        }) else {
            return;
        };
        self.per_ip.upgraded(&self.process.per_ip, key);
        if let Some(claims) = claims {
            self.authenticated(key, claims);
        }
        self.join(key, peer, resume);
        // A client may send its first frames right behind the request.
        if !early_frames.is_empty() {
            self.receive(key, &early_frames);
        }
    }

    /// Carries out `POST /broadcast` and `POST /notify` for the HTTP
    /// connection `key`. A personal message for another worker's client is
    /// answered when that worker has looked (by mail). The publisher's
    /// answer is queued now and written before the turn's fanout.
    fn publish(&mut self, key: ConnKey, request: Request, publish: Publish) {
        let target = match publish::target(&publish, &self.here()) {
            Ok(target) => target,
            Err(response) => return self.respond(key, &request, response),
        };
        let id = self.next_notification();
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
            Delivery::Send { to, json } => {
                self.send_json(to, &json);
                log!(Info, "personal notification published", id = id);
            }
            Delivery::Forward { to, json } => {
                self.publish_remote(Some(&to), &json);
                log!(Info, "personal notification forwarded", id = id);
            }
            Delivery::Channel { channel, json } => {
                let recipients = self.publish_channel(&channel, &json);
                log!(
                    Info,
                    "channel notification published",
                    id = id,
                    channel = channel,
                    recipients = recipients
                );
                return self.respond(key, &request, publish::sent(id, recipients as u64));
            }
            Delivery::Mail { worker, seq, json } => {
                let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
                mail = Some((worker, seq, frame));
            }
        }
        match (published.answer, mail) {
            (Some(answer), _) => self.respond(key, &request, answer),
            (None, Some((worker, seq, frame))) => {
                let ticket = self.mail.ticket();
                self.drive(key, |conn, _, _| conn.park(ticket, request));
                let report = Report::Publisher {
                    worker: self.id,
                    conn: key,
                    ticket,
                    id,
                };
                self.post(worker, Mail::Deliver { seq, frame, report });
            }
            (None, None) => {}
        }
    }

    /// The periodic notification number `count`, to every client of the
    /// process.
    pub(super) fn periodic(&mut self, count: u64) {
        let id = self.next_notification();
        let json = publish::periodic(count, id, &self.here(), &self.snapshot());
        let recipients = self.broadcast(&json);
        log!(
            Debug,
            "periodic notification",
            id = id,
            recipients = recipients
        );
    }

    /// The id of a new notification, published or periodic, counted.
    fn next_notification(&self) -> u64 {
        metrics::add(&self.process.stats.notifications, 1);
        self.process.next_notification_id()
    }

    /// Counts a new connection against its address. One over the limit of
    /// connections in the HTTP phase is answered 503 at once, without
    /// waiting for its request, and closed.
    pub(super) fn admit_per_ip(&mut self, key: ConnKey, peer: SocketAddr) {
        let counts = &self.process.per_ip;
        if self.per_ip.admit(counts, key, peer.ip()) {
            return;
        }
        self.process.stats.limit_hit(Limit::PerIpHttp);
        log!(
            Debug,
            "connection refused: its address has --max-connections-per-ip connections in the HTTP phase",
            peer = peer.ip(),
            limit = counts.limit()
        );
        let response = Response::error(
            Status::SERVICE_UNAVAILABLE,
            "too many connections from your address",
        )
        .with_header("Retry-After", "5")
        .closing();
        self.drive(key, |conn, now, s| conn.turn_away(response, now, s));
    }
}
