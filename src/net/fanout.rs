//! Delivering messages to this worker's clients: one frame encoded once and
//! shared by every recipient's queue.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use serde_json::json;

use super::conn::Phase;
use super::mailbox::{Mail, Report};
use super::socket_write::{sendmsg, slices_of};
use super::worker::Worker;
use super::write_queue::Chunk;
use crate::app::hub;
use crate::app::protocol::{self, ClientMessage, Notification, Source};
use crate::app::routes::{Endpoint, Publish};
use crate::log;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};
use crate::proto::http::{Request, Response, Status};

impl Worker {
    /// Queues one data frame (counted in `messages_sent`).
    pub(super) fn send_frame(&mut self, key: usize, frame: Chunk) {
        metrics::add(&self.shared.stats.messages_sent, 1);
        self.send(key, frame);
    }

    pub(super) fn send_json(&mut self, key: usize, json: &str) {
        metrics::add(&self.shared.stats.messages_sent, 1);
        self.send_frame_bytes(key, Opcode::Text, json.as_bytes());
    }

    /// Sends `json` to every `/ws` client of the process: encoded once,
    /// queued here, and the same bytes mailed to every other worker. Returns
    /// how many clients of the process it goes to.
    pub(super) fn broadcast(&mut self, json: &str) -> usize {
        let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
        for worker in (0..self.shared.config.workers).filter(|w| *w != self.id) {
            self.shared
                .post(worker, Mail::Broadcast(Arc::clone(&frame)));
        }
        let local = self.broadcast_local(&frame);
        (self.shared.notify_clients() as usize).max(local)
    }

    /// Takes a frame for every `/ws` client of this worker. Delivery waits
    /// for the end of the loop turn (or the next message to one client, or
    /// a client joining), so the broadcasts of one turn reach each client
    /// in one `sendmsg`.
    pub(super) fn broadcast_local(&mut self, frame: &Arc<[u8]>) -> usize {
        self.turn_broadcasts.push(Arc::clone(frame));
        let recipients = self.hub.len();
        metrics::add(&self.shared.stats.messages_sent, recipients as u64);
        recipients
    }

    /// Writes this turn's broadcasts to every `/ws` client: straight from the
    /// shared frames to the socket when its queue is empty (nothing is
    /// allocated or queued per client), and only what the socket did not
    /// take is queued.
    pub(super) fn deliver_broadcasts(&mut self) {
        if self.turn_broadcasts.is_empty() {
            return;
        }
        let mut frames = std::mem::take(&mut self.turn_broadcasts);
        let total: usize = frames.iter().map(|f| f.len()).sum();
        let (slices, count) = slices_of(&frames);
        let slices = &slices[..count];
        let mut sent = 0;
        // Slab order, not the hub's hash order: the connections (and the
        // kernel's sockets, allocated in the same order) are visited the
        // way they lie in memory, which made 10,000-client fanout 1.4 times
        // faster. A client is in from its join (seq 0 until then).
        for (key, conn) in self.conns.iter_mut() {
            if !matches!(&conn.phase, Phase::Ws(ws) if ws.endpoint == Endpoint::Notify && ws.seq != 0)
            {
                continue;
            }
            if conn.out.is_empty() {
                match sendmsg(conn.stream.as_raw_fd(), slices) {
                    Ok(n) if n == total => {
                        sent += n;
                        continue;
                    }
                    Ok(n) => {
                        sent += n;
                        conn.out.push_unsent(&frames, n);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        conn.out.push_unsent(&frames, 0)
                    }
                    Err(_) => {
                        self.failed.push(key);
                        continue;
                    }
                }
            } else {
                for frame in &frames {
                    conn.out.push(Chunk::Shared(Arc::clone(frame)));
                }
            }
            // The flush that follows registers for writability or drops a
            // slow consumer.
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
        metrics::add(&self.shared.stats.bytes_sent, sent as u64);
        let mut failed = std::mem::take(&mut self.failed);
        for key in failed.drain(..) {
            self.close(key, "write error");
        }
        self.failed = failed;
        frames.clear();
        self.turn_broadcasts = frames;
    }

    /// Where a client id lives, if it names a client of this instance.
    fn locate(&self, id: &str) -> Option<Location> {
        let client = hub::parse_id(id)?;
        if client.instance != self.shared.instance {
            // Another instance's client is reached through Redis, if at all.
            return self.redis_enabled().then_some(Location::Elsewhere);
        }
        if client.worker >= self.shared.config.workers {
            return None;
        }
        if client.worker != self.id {
            return Some(Location::Worker(client.worker, client.seq));
        }
        self.hub.slot(client.seq).map(Location::Here)
    }

    /// Carries out mail from other workers.
    pub(super) fn read_mail(&mut self) {
        let mut mail = std::mem::take(&mut self.mail);
        self.shared.take_mail(self.id, &mut mail);
        for item in mail.drain(..) {
            match item {
                Mail::Broadcast(frame) => {
                    self.broadcast_local(&frame);
                }
                Mail::Deliver { seq, frame, report } => {
                    let target = self.hub.slot(seq);
                    if let Some(key) = target {
                        self.send_frame(key, Chunk::Shared(frame));
                    }
                    match report {
                        Report::Nothing => {}
                        Report::SenderOnMiss { worker, seq, error } if target.is_none() => {
                            let report = Report::Nothing;
                            self.shared.post(
                                worker,
                                Mail::Deliver {
                                    seq,
                                    frame: error,
                                    report,
                                },
                            );
                        }
                        Report::SenderOnMiss { .. } => {}
                        Report::Publisher {
                            worker,
                            conn,
                            ticket,
                            id,
                        } => {
                            let found = target.is_some();
                            self.shared.post(
                                worker,
                                Mail::Delivered {
                                    conn,
                                    ticket,
                                    found,
                                    id,
                                },
                            );
                        }
                    }
                }
                Mail::Delivered {
                    conn,
                    ticket,
                    found,
                    id,
                } => {
                    self.finish_publish(conn, ticket, published(found, id));
                }
            }
        }
        self.mail = mail;
    }

    fn own_id(&self, key: usize) -> Option<String> {
        match self.conns.get(key).map(|c| &c.phase) {
            Some(Phase::Ws(ws)) if ws.endpoint == Endpoint::Notify => {
                Some(hub::format_id(&self.shared.instance, self.id, ws.seq))
            }
            _ => None,
        }
    }

    pub(super) fn on_client_text(&mut self, key: usize, text: &str) {
        let Some(from) = self.own_id(key) else {
            return;
        };
        match protocol::parse_client(text) {
            Ok(ClientMessage::Chat(message)) => {
                let json = protocol::chat(&from, &message);
                self.broadcast(&json);
                self.publish_remote(None, &json);
            }
            Ok(ClientMessage::Direct { to, message }) => {
                let unknown = || protocol::error(&format!("unknown client \"{to}\""));
                match self.locate(&to) {
                    Some(Location::Here(target)) => {
                        self.send_json(target, &protocol::direct(&from, &message))
                    }
                    Some(Location::Worker(worker, seq)) => {
                        let own_seq = hub::parse_id(&from).map_or(0, |c| c.seq);
                        let frame = encode_frame(
                            Opcode::Text,
                            protocol::direct(&from, &message).as_bytes(),
                        )
                        .into();
                        let error = encode_frame(Opcode::Text, unknown().as_bytes()).into();
                        let report = Report::SenderOnMiss {
                            worker: self.id,
                            seq: own_seq,
                            error,
                        };
                        self.shared
                            .post(worker, Mail::Deliver { seq, frame, report });
                    }
                    Some(Location::Elsewhere) => {
                        self.publish_remote(Some(&to), &protocol::direct(&from, &message));
                    }
                    None => self.send_json(key, &unknown()),
                }
            }
            Ok(ClientMessage::Ping) => self.send_json(key, &protocol::pong()),
            Ok(ClientMessage::StatusRequest) => {
                self.send_json(key, &protocol::status(self.shared.status_json()));
            }
            Err(error) => {
                log!(Debug, "bad client message", client = from, error = error);
                self.send_json(key, &protocol::error(&error));
            }
        }
    }

    fn notification(
        &self,
        source: Source,
        message: String,
        category: String,
        personal: bool,
    ) -> Notification {
        metrics::add(&self.shared.stats.notifications, 1);
        Notification {
            id: self.shared.next_notification_id(),
            message,
            category,
            source,
            personal,
            instance: self.shared.instance.clone(),
            data: None,
        }
    }

    /// Carries out `POST /broadcast` and `POST /notify` for the HTTP
    /// connection `conn`. A personal message for another worker's client is
    /// answered when that worker has looked (by mail).
    pub(super) fn publish(&mut self, conn: usize, request: Request, publish: Publish) {
        let target = match &publish.client_id {
            None => None,
            Some(id) => match self.locate(id) {
                Some(location) => Some(location),
                None => return self.respond(conn, &request, not_connected(id)),
            },
        };
        let publish_to = publish.client_id.clone();
        let mut notification = self.notification(
            Source::Api,
            publish.message,
            publish.category,
            target.is_some(),
        );
        notification.data = publish.data;
        let id = notification.id;
        let json = notification.to_json();
        match target {
            None => {
                let recipients = self.broadcast(&json);
                self.publish_remote(None, &json);
                log!(
                    Info,
                    "notification published",
                    id = id,
                    recipients = recipients
                );
                self.respond(conn, &request, sent(id, recipients));
            }
            Some(Location::Here(key)) => {
                self.send_json(key, &json);
                log!(Info, "personal notification published", id = id);
                self.respond(conn, &request, sent(id, 1));
            }
            Some(Location::Elsewhere) => {
                if let Some(to) = &publish_to {
                    self.publish_remote(Some(to), &json);
                }
                log!(Info, "personal notification forwarded", id = id);
                let body = json!({ "status": "forwarded", "id": id });
                self.respond(conn, &request, Response::json(Status::ACCEPTED, &body));
            }
            Some(Location::Worker(worker, seq)) => {
                let ticket = self.park(conn, request);
                let frame = encode_frame(Opcode::Text, json.as_bytes()).into();
                let report = Report::Publisher {
                    worker: self.id,
                    conn,
                    ticket,
                    id,
                };
                self.shared
                    .post(worker, Mail::Deliver { seq, frame, report });
            }
        }
    }

    pub(super) fn send_periodic(&mut self, count: u64) {
        let active = self.shared.notify_clients();
        let message = format!("Periodic notification #{count} - active clients: {active}");
        let notification = self.notification(Source::Periodic, message, "info".into(), false);
        let recipients = self.broadcast(&notification.to_json());
        log!(
            Debug,
            "periodic notification",
            id = notification.id,
            recipients = recipients
        );
    }
}

/// Where a client is: a slot of this worker, or another worker's client.
enum Location {
    /// A client of another instance: forwarded over Redis.
    Elsewhere,
    Here(usize),
    Worker(usize, u64),
}

fn sent(id: u64, recipients: usize) -> Response {
    Response::json(
        Status::OK,
        &json!({ "status": "sent", "id": id, "recipients": recipients }),
    )
}

fn not_connected(id: &str) -> Response {
    Response::error(
        Status::NOT_FOUND,
        &format!("client \"{id}\" is not connected"),
    )
}

/// The answer to a personal publish once the client's worker has looked.
pub(super) fn published(found: bool, id: u64) -> Response {
    if found {
        sent(id, 1)
    } else {
        Response::error(Status::NOT_FOUND, "client is not connected")
    }
}
