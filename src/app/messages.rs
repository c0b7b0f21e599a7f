//! What a WebSocket client's message leads to: echo on `/echo`, the JSON
//! protocol on `/ws` (chat, direct, ping, status). Pure: the answer is an
//! action for the shell to carry out.

use super::channel_name::{self, Kind};
use super::channel_protocol;
use super::channel_refusal::ChannelRefusal;
use super::hub::{self, Client, Endpoint, Here, Location};
use super::protocol::{self, ClientError, ClientMessage};
use super::routes::ResumeFrom;
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
    /// Join a channel whose name is valid and not a `user:` one; the node
    /// checks a `private:` one's claim and the sender's count of channels.
    Subscribe {
        channel: String,
        private: bool,
        resume: Option<ResumeFrom>,
    },
    /// `subscribe` to a `user:` channel: the node answers it if it is the
    /// sender's own (joined at connect), and refuses it otherwise.
    SubscribeUser {
        channel: String,
        resume: Option<ResumeFrom>,
    },
    /// Leave a channel (answered even if it was not joined).
    Unsubscribe { channel: String },
    /// To a channel's subscribers, numbered in it, if the sender joined it.
    ChannelChat { channel: String, json: String },
}

/// Decides what a data message leads to. `snapshot` is asked for only when
/// the answer needs it (a `status_request`): it reads every counter and
/// takes the stream's lock, which a chat must not pay for.
pub fn on_message(
    message: Message,
    from: Client,
    here: &Here,
    now_ms: u64,
    snapshot: impl FnOnce() -> Snapshot,
) -> Option<Action> {
    match (from.endpoint, message) {
        (Endpoint::Echo, Message::Text(text)) => Some(Action::Echo(Opcode::Text, text.into())),
        (Endpoint::Echo, Message::Binary(data)) => Some(Action::Echo(Opcode::Binary, data)),
        (Endpoint::Notify, Message::Text(text)) => {
            Some(on_text(&text, from, here, now_ms, snapshot))
        }
        (Endpoint::Notify, Message::Binary(_)) => Some(Action::Reply(protocol::error(
            "binary messages are not supported; send JSON text",
            now_ms,
        ))),
        _ => None,
    }
}

fn on_text(
    text: &str,
    from: Client,
    here: &Here,
    now: u64,
    snapshot: impl FnOnce() -> Snapshot,
) -> Action {
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
        Ok(ClientMessage::Subscribe { channel, resume }) => match channel_name::kind(&channel) {
            Ok(Kind::User) => Action::SubscribeUser { channel, resume },
            Ok(kind) => Action::Subscribe {
                channel,
                private: kind == Kind::Private,
                resume,
            },
            Err(bad) => refuse(channel, ChannelRefusal::BadName(bad), now),
        },
        Ok(ClientMessage::Unsubscribe { channel }) => match channel_name::kind(&channel) {
            Ok(Kind::User) => refuse(channel, ChannelRefusal::Reserved, now),
            Ok(_) => Action::Unsubscribe { channel },
            Err(bad) => refuse(channel, ChannelRefusal::BadName(bad), now),
        },
        Ok(ClientMessage::ChannelChat { channel, message }) => match channel_name::kind(&channel) {
            Ok(Kind::User) => refuse(channel, ChannelRefusal::ChatOnUser, now),
            Ok(_) => Action::ChannelChat {
                json: channel_protocol::chat(&id, &message, &channel, now),
                channel,
            },
            Err(bad) => refuse(channel, ChannelRefusal::BadName(bad), now),
        },
        Ok(ClientMessage::Ping) => Action::Reply(protocol::pong(now)),
        Ok(ClientMessage::StatusRequest) => {
            Action::Reply(protocol::status(status::fields(&snapshot(), here), now))
        }
        Err(error) => Action::Reject {
            json: protocol::error(&error.to_string(), now),
            error,
        },
    }
}

/// A message about `channel` refused: the error names the channel.
pub fn refuse(channel: String, refusal: ChannelRefusal, now_ms: u64) -> Action {
    Action::Reject {
        json: channel_protocol::error(&channel, &refusal.to_string(), now_ms),
        error: ClientError::Channel { channel, refusal },
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

    fn answer(text: &str, hub: &Hub, conns: &fixtures::Conns, redis: bool) -> Action {
        let here = Here {
            workers: 2,
            redis,
            seqs: conns,
            ..fixtures::here(hub)
        };
        on_message(
            Message::Text(text.into()),
            ME,
            &here,
            snapshot().now_ms,
            snapshot,
        )
        .unwrap()
    }

    #[test]
    fn echo_returns_the_message_without_a_snapshot() {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let echo = Client {
            endpoint: Endpoint::Echo,
            seq: 0,
        };
        let action = on_message(Message::Binary(vec![1, 2]), echo, &here, 0, || {
            panic!("an echo needs no snapshot")
        });
        assert_eq!(action, Some(Action::Echo(Opcode::Binary, vec![1, 2])));
    }

    #[test]
    fn a_chat_takes_no_snapshot() {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let action = on_message(Message::Text("hi".into()), ME, &here, 7, || {
            panic!("a chat needs the time only")
        });
        assert!(matches!(action, Some(Action::Broadcast(_))), "{action:?}");
    }

    #[test]
    fn chat_is_broadcast_with_the_senders_id_and_the_turns_time() {
        let hub = Hub::default();
        let conns = fixtures::Conns::default();
        let v = json(&answer("hello", &hub, &conns, false));
        assert_eq!(v["type"], "chat");
        assert_eq!(v["from"], "ab-0-4");
        assert_eq!(v["message"], "hello");
        assert_eq!(v["time"], "2026-11-21T16:14:56.789Z");
    }

    #[test]
    fn direct_messages_go_where_the_id_says() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(9));
        let conns = fixtures::Conns(vec![(ConnKey(9), seq)]);
        let to_local = format!(r#"{{"type":"direct","to":"ab-0-{seq}","message":"m"}}"#);
        assert!(matches!(
            answer(&to_local, &hub, &conns, false),
            Action::Send { to: ConnKey(9), .. }
        ));
        let stale = format!(
            r#"{{"type":"direct","to":"ab-0-{}","message":"m"}}"#,
            seq + (1 << 32)
        );
        assert_eq!(json(&answer(&stale, &hub, &conns, false))["type"], "error");
        match answer(
            r#"{"type":"direct","to":"ab-1-7","message":"m"}"#,
            &hub,
            &conns,
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
        assert!(matches!(
            answer(remote, &hub, &conns, true),
            Action::Forward { .. }
        ));
        let v = json(&answer(remote, &hub, &conns, false));
        assert_eq!(v["type"], "error");
    }

    #[test]
    fn ping_status_and_bad_messages_answer_the_sender() {
        let hub = Hub::default();
        let conns = fixtures::Conns::default();
        assert_eq!(
            json(&answer(r#"{"type":"ping"}"#, &hub, &conns, false))["type"],
            "pong"
        );
        let v = json(&answer(r#"{"type":"status_request"}"#, &hub, &conns, false));
        assert_eq!(v["type"], "status");
        assert_eq!(v["connections"], 3);
        assert_eq!(v["messages_received"], 13);
        match answer(r#"{"type":"nope"}"#, &hub, &conns, false) {
            Action::Reject { error, json } => {
                assert_eq!(error, ClientError::UnknownType("nope".into()));
                assert!(json.contains("\"error\""));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod channel_tests {
    use super::*;
    use crate::app::channel_name::BadName;
    use crate::app::fixtures;
    use crate::app::hub::Hub;

    const ME: Client = Client {
        endpoint: Endpoint::Notify,
        seq: 4,
    };

    fn answer(text: &str) -> Action {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let now_ms = fixtures::snapshot().now_ms;
        on_message(
            Message::Text(text.into()),
            ME,
            &here,
            now_ms,
            fixtures::snapshot,
        )
        .unwrap()
    }

    fn refusal(action: Action) -> (String, ChannelRefusal) {
        match action {
            Action::Reject {
                error: ClientError::Channel { channel, refusal },
                json,
            } => {
                let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert_eq!(
                    (&v["type"], &v["channel"]),
                    (&"error".into(), &channel.as_str().into())
                );
                (channel, refusal)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscribe_checks_the_name_and_leaves_user_channels_to_the_node() {
        assert_eq!(
            answer(r#"{"type":"subscribe","channel":"news"}"#),
            Action::Subscribe {
                channel: "news".into(),
                private: false,
                resume: None
            }
        );
        assert_eq!(
            answer(r#"{"type":"subscribe","channel":"private:t","since":3,"epoch":"e"}"#),
            Action::Subscribe {
                channel: "private:t".into(),
                private: true,
                resume: Some(ResumeFrom {
                    since: 3,
                    epoch: "e".into()
                })
            }
        );
        assert_eq!(
            refusal(answer(r#"{"type":"subscribe","channel":"a b"}"#)),
            ("a b".into(), ChannelRefusal::BadName(BadName::BadCharacter))
        );
        // Only the node knows whose connection this is: its own user
        // channel is answered there, anyone else's refused.
        assert_eq!(
            answer(r#"{"type":"subscribe","channel":"user:7 8","since":2,"epoch":"e"}"#),
            Action::SubscribeUser {
                channel: "user:7 8".into(),
                resume: Some(ResumeFrom {
                    since: 2,
                    epoch: "e".into()
                })
            }
        );
        assert_eq!(
            refusal(answer(r#"{"type":"unsubscribe","channel":"user:7"}"#)).1,
            ChannelRefusal::Reserved
        );
        assert_eq!(
            answer(r#"{"type":"unsubscribe","channel":"news"}"#),
            Action::Unsubscribe {
                channel: "news".into()
            }
        );
    }

    #[test]
    fn a_bad_resume_or_a_missing_channel_is_an_error() {
        for text in [
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","channel":5}"#,
            r#"{"type":"subscribe","channel":"a","since":-1,"epoch":"e"}"#,
            r#"{"type":"subscribe","channel":"a","since":1}"#,
            r#"{"type":"subscribe","channel":"a","epoch":"e"}"#,
            r#"{"type":"subscribe","channel":"a","since":1,"epoch":""}"#,
            r#"{"type":"unsubscribe"}"#,
            r#"{"type":"chat","channel":1,"message":"m"}"#,
        ] {
            assert!(matches!(answer(text), Action::Reject { .. }), "{text}");
        }
    }

    #[test]
    fn chat_on_a_channel_names_it_and_not_on_user_channels() {
        match answer(r#"{"type":"chat","channel":"room","message":"hi"}"#) {
            Action::ChannelChat { channel, json } => {
                assert_eq!(channel, "room");
                let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert_eq!(
                    (&v["channel"], &v["from"]),
                    (&"room".into(), &"ab-0-4".into())
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            refusal(answer(
                r#"{"type":"chat","channel":"user:x","message":"hi"}"#
            ))
            .1,
            ChannelRefusal::ChatOnUser
        );
    }
}
