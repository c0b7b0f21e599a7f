//! Delivering messages to this worker's clients: one frame encoded once and
//! shared by every recipient's queue.

use std::sync::Arc;

use serde_json::json;

use super::conn::Phase;
use super::worker::Worker;
use super::write_queue::Chunk;
use crate::app::hub;
use crate::app::protocol::{self, ClientMessage, Notification, Source};
use crate::app::routes::{Endpoint, Publish};
use crate::log;
use crate::obs::metrics;
use crate::proto::frame::{encode_frame, Opcode};
use crate::proto::http::{Response, Status};

impl Worker {
    /// Queues one data frame (counted in `messages_sent`).
    pub(super) fn send_frame(&mut self, key: usize, frame: Chunk) {
        metrics::add(&self.shared.stats.messages_sent, 1);
        self.send(key, frame);
    }

    pub(super) fn send_json(&mut self, key: usize, json: &str) {
        self.send_frame(
            key,
            Chunk::Owned(encode_frame(Opcode::Text, json.as_bytes())),
        );
    }

    /// Sends `json` to every `/ws` client of this worker and returns how many
    /// it was queued to.
    pub(super) fn broadcast(&mut self, json: &str) -> usize {
        let frame: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
        let recipients: Vec<usize> = self.hub.slots().collect();
        for &key in &recipients {
            self.send(key, Chunk::Shared(Arc::clone(&frame)));
        }
        metrics::add(&self.shared.stats.messages_sent, recipients.len() as u64);
        recipients.len()
    }

    /// The connection slot of a client of this worker, by id.
    fn find_client(&self, id: &str) -> Option<usize> {
        let client = hub::parse_id(id)?;
        if client.instance != self.shared.instance || client.worker != self.id {
            return None;
        }
        self.hub.slot(client.seq)
    }

    fn own_id(&self, key: usize) -> Option<String> {
        match self.conns.get(key).map(|c| &c.phase) {
            Some(Phase::Ws(ws)) if ws.endpoint == Endpoint::Notify => {
                Some(hub::format_id(&self.shared.instance, self.id, ws.seq))
            }
            _ => None,
        }
    }

    pub(super) fn on_client_text(&mut self, key: usize, data: &[u8]) {
        // The receiver has already checked that text frames are UTF-8.
        let text = String::from_utf8_lossy(data);
        let Some(from) = self.own_id(key) else {
            return;
        };
        match protocol::parse_client(&text) {
            Ok(ClientMessage::Chat(message)) => {
                self.broadcast(&protocol::chat(&from, &message));
            }
            Ok(ClientMessage::Direct { to, message }) => match self.find_client(&to) {
                Some(target) => self.send_json(target, &protocol::direct(&from, &message)),
                None => self.send_json(key, &protocol::error(&format!("unknown client \"{to}\""))),
            },
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

    /// Carries out `POST /broadcast` and `POST /notify`.
    pub(super) fn publish(&mut self, publish: Publish) -> Response {
        let target = match &publish.client_id {
            None => None,
            Some(id) => match self.find_client(id) {
                Some(key) => Some(key),
                None => {
                    return Response::error(
                        Status::NOT_FOUND,
                        &format!("client \"{id}\" is not connected"),
                    );
                }
            },
        };
        let mut notification = self.notification(
            Source::Api,
            publish.message,
            publish.category,
            target.is_some(),
        );
        notification.data = publish.data;
        let json = notification.to_json();
        let recipients = match target {
            Some(key) => {
                self.send_json(key, &json);
                1
            }
            None => self.broadcast(&json),
        };
        log!(
            Info,
            "notification published",
            id = notification.id,
            recipients = recipients
        );
        Response::json(
            Status::OK,
            &json!({ "status": "sent", "id": notification.id, "recipients": recipients }),
        )
    }

    pub(super) fn send_periodic(&mut self, count: u64) {
        let active = self.shared.stats.active();
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
