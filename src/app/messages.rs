//! What a WebSocket client's message leads to: echo on `/echo`, the JSON
//! protocol on `/ws` (chat, direct, ping, status). Pure: the answer is an
//! action for the shell to carry out.

use super::hub::{self, Client, Endpoint, Here, Location};
use super::protocol::{self, ClientError, ClientMessage};
use super::snapshot::Snapshot;
use super::status;
use crate::ids::{ClientId, ConnKey};
use crate::proto::frame::Opcode;
use crate::proto::message::Message;

#[derive(Debug, PartialEq)]
pub enum Action {
    /// The message back, as it came.
    Echo(Opcode, Vec<u8>),
    /// To the sender.
    Reply(String),
    /// The sender's message broke the `/ws` protocol: `error` for the log,
    /// `json` back to the sender.
    Reject { error: ClientError, json: String },
    /// To every `/ws` client of the process, and of every other instance
    /// through Redis.
    Broadcast(String),
    /// To a client of this worker.
    Send { to: ConnKey, json: String },
    /// To another worker's client; `on_miss` goes back to the sender if it
    /// is not there.
    Mail {
        worker: usize,
        seq: u64,
        json: String,
        on_miss: String,
    },
    /// To another instance's client, through Redis.
    Forward { to: ClientId, json: String },
}

/// Decides what a data message leads to. `snapshot` is asked for only when
/// the answer needs it (never for an echo).
pub fn on_message(
    message: Message,
    from: Client,
    here: &Here,
    snapshot: impl FnOnce() -> Snapshot,
) -> Option<Action> {
    match (from.endpoint, message) {
        (Endpoint::Echo, Message::Text(text)) => Some(Action::Echo(Opcode::Text, text.into())),
        (Endpoint::Echo, Message::Binary(data)) => Some(Action::Echo(Opcode::Binary, data)),
        (Endpoint::Notify, Message::Text(text)) => Some(on_text(&text, from, here, &snapshot())),
        (Endpoint::Notify, Message::Binary(_)) => Some(Action::Reply(protocol::error(
            "binary messages are not supported; send JSON text",
            snapshot().now_ms,
        ))),
        _ => None,
    }
}

fn on_text(text: &str, from: Client, here: &Here, snapshot: &Snapshot) -> Action {
    let now = snapshot.now_ms;
    let id = here.id_of(from.seq).to_string();
    match protocol::parse_client(text) {
        Ok(ClientMessage::Chat(message)) => Action::Broadcast(protocol::chat(&id, &message, now)),
        Ok(ClientMessage::Direct { to, message }) => {
            let unknown = || protocol::error(&format!("unknown client \"{to}\""), now);
            let json = protocol::direct(&id, &message, now);
            let location = to.parse().ok().and_then(|to| hub::locate(&to, here));
            match location {
                Some(Location::Here(to)) => Action::Send { to, json },
                Some(Location::Worker { worker, seq }) => Action::Mail {
                    worker,
                    seq,
                    json,
                    on_miss: unknown(),
                },
                Some(Location::Elsewhere(to)) => Action::Forward { to, json },
                None => Action::Reply(unknown()),
            }
        }
        Ok(ClientMessage::Ping) => Action::Reply(protocol::pong(now)),
        Ok(ClientMessage::StatusRequest) => {
            Action::Reply(protocol::status(status::fields(snapshot, here), now))
        }
        Err(error) => Action::Reject {
            json: protocol::error(&error.to_string(), now),
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures;
    use crate::app::hub::Hub;
    use serde_json::Value;

    fn snapshot() -> Snapshot {
        Snapshot {
            now_ms: 1_795_277_696_789,
            active: 3,
            notify_clients: 2,
            connections_total: 5,
            messages_sent: 8,
            messages_received: 13,
            uptime_s: 21,
            pid: 34,
            ..fixtures::snapshot()
        }
    }

    fn json(action: &Action) -> Value {
        match action {
            Action::Reply(json) | Action::Broadcast(json) | Action::Send { json, .. } => {
                serde_json::from_str(json).unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    const ME: Client = Client {
        endpoint: Endpoint::Notify,
        seq: 4,
    };

    fn answer(text: &str, hub: &Hub, redis: bool) -> Action {
        let here = Here {
            workers: 2,
            redis,
            ..fixtures::here(hub)
        };
        on_message(Message::Text(text.into()), ME, &here, snapshot).unwrap()
    }

    #[test]
    fn echo_returns_the_message_without_a_snapshot() {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let echo = Client {
            endpoint: Endpoint::Echo,
            seq: 0,
        };
        let action = on_message(Message::Binary(vec![1, 2]), echo, &here, || {
            panic!("an echo needs no snapshot")
        });
        assert_eq!(action, Some(Action::Echo(Opcode::Binary, vec![1, 2])));
    }

    #[test]
    fn chat_is_broadcast_with_the_senders_id_and_the_turns_time() {
        let hub = Hub::default();
        let v = json(&answer("hello", &hub, false));
        assert_eq!(v["type"], "chat");
        assert_eq!(v["from"], "ab-0-4");
        assert_eq!(v["message"], "hello");
        assert_eq!(v["time"], "2026-11-21T16:14:56.789Z");
    }

    #[test]
    fn direct_messages_go_where_the_id_says() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(9));
        let to_local = format!(r#"{{"type":"direct","to":"ab-0-{seq}","message":"m"}}"#);
        assert!(matches!(
            answer(&to_local, &hub, false),
            Action::Send { to: ConnKey(9), .. }
        ));
        match answer(
            r#"{"type":"direct","to":"ab-1-7","message":"m"}"#,
            &hub,
            false,
        ) {
            Action::Mail {
                worker: 1,
                seq: 7,
                on_miss,
                ..
            } => assert!(on_miss.contains("unknown client")),
            other => panic!("{other:?}"),
        }
        let remote = r#"{"type":"direct","to":"cd-0-1","message":"m"}"#;
        assert!(matches!(answer(remote, &hub, true), Action::Forward { .. }));
        let v = json(&answer(remote, &hub, false));
        assert_eq!(v["type"], "error");
    }

    #[test]
    fn ping_status_and_bad_messages_answer_the_sender() {
        let hub = Hub::default();
        assert_eq!(
            json(&answer(r#"{"type":"ping"}"#, &hub, false))["type"],
            "pong"
        );
        let v = json(&answer(r#"{"type":"status_request"}"#, &hub, false));
        assert_eq!(v["type"], "status");
        assert_eq!(v["connections"], 3);
        assert_eq!(v["messages_received"], 13);
        match answer(r#"{"type":"nope"}"#, &hub, false) {
            Action::Reject { error, json } => {
                assert_eq!(error, ClientError::UnknownType("nope".into()));
                assert!(json.contains("\"error\""));
            }
            other => panic!("{other:?}"),
        }
    }
}
