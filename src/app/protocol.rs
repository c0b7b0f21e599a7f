//! The JSON messages of the /ws protocol, in both directions.

use std::fmt;

use serde_json::{json, Map, Value};

use super::channel_name::USER_PREFIX;
use super::channel_refusal::ChannelRefusal;
use super::routes::ResumeFrom;
use crate::obs::clock::rfc3339_millis;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Chat(String),
    Direct {
        to: String,
        message: String,
    },
    Ping,
    StatusRequest,
    /// Join `channel`; with `resume`, replay what the client missed of it.
    Subscribe {
        channel: String,
        resume: Option<ResumeFrom>,
    },
    Unsubscribe {
        channel: String,
    },
    /// Chat to the subscribers of `channel`.
    ChannelChat {
        channel: String,
        message: String,
    },
}

/// Why a client's JSON object is not a message the server takes; the text
/// goes back to the client in an `error` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    MissingType,
    TypeNotAString,
    UnknownType(String),
    MissingField(&'static str),
    NotAString(&'static str),
    /// `since`/`epoch` of a subscribe that cannot be a resume.
    BadResume(&'static str),
    /// A message about a channel refused: answered with the channel named.
    Channel {
        channel: String,
        refusal: ChannelRefusal,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::MissingType => f.write_str("missing \"type\""),
            ClientError::TypeNotAString => f.write_str("\"type\" must be a string"),
            ClientError::UnknownType(kind) => write!(f, "unknown message type \"{kind}\""),
            ClientError::MissingField(field) => write!(f, "missing \"{field}\""),
            ClientError::NotAString(field) => write!(f, "\"{field}\" must be a string"),
            ClientError::BadResume(why) => f.write_str(why),
            ClientError::Channel { refusal, .. } => refusal.fmt(f),
        }
    }
}

/// Reads a client's text message. Text that is not a JSON object is a chat
/// message as it stands, so `websocat` users can just type; a JSON object
/// must say what it is.
pub fn parse_client(text: &str) -> Result<ClientMessage, ClientError> {
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        _ => return Ok(ClientMessage::Chat(text.to_owned())),
    };
    let string = |field: &'static str| match object.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ClientError::NotAString(field)),
        None => Err(ClientError::MissingField(field)),
    };
    match object.get("type") {
        Some(Value::String(kind)) => match kind.as_str() {
            "chat" if object.contains_key("channel") => Ok(ClientMessage::ChannelChat {
                channel: string("channel")?,
                message: string("message")?,
            }),
            "chat" => Ok(ClientMessage::Chat(string("message")?)),
            "direct" => Ok(ClientMessage::Direct {
                to: string("to")?,
                message: string("message")?,
            }),
            "ping" => Ok(ClientMessage::Ping),
            "status_request" => Ok(ClientMessage::StatusRequest),
            "subscribe" => Ok(ClientMessage::Subscribe {
                channel: string("channel")?,
                resume: resume_from(&object)?,
            }),
            "unsubscribe" => Ok(ClientMessage::Unsubscribe {
                channel: string("channel")?,
            }),
            other => Err(ClientError::UnknownType(truncate(other, 64).to_owned())),
        },
        Some(_) => Err(ClientError::TypeNotAString),
        None => Err(ClientError::MissingType),
    }
}

/// `since` and `epoch` of a subscribe: both or neither, as on `/ws`.
fn resume_from(object: &Map<String, Value>) -> Result<Option<ResumeFrom>, ClientError> {
    let since = match object.get("since") {
        None | Some(Value::Null) => None,
        Some(since) => Some(since.as_u64().ok_or(ClientError::BadResume(
            "\"since\" must be a non-negative integer",
        ))?),
    };
    let epoch = match object.get("epoch") {
        None | Some(Value::Null) => None,
        Some(Value::String(epoch)) if !epoch.is_empty() => Some(epoch.clone()),
        Some(_) => {
            return Err(ClientError::BadResume(
                "\"epoch\" must be a non-empty string",
            ))
        }
    };
    match (since, epoch) {
        (None, None) => Ok(None),
        (Some(since), Some(epoch)) => Ok(Some(ResumeFrom { since, epoch })),
        (Some(_), None) => Err(ClientError::BadResume(
            "\"epoch\" is required with \"since\"",
        )),
        (None, Some(_)) => Err(ClientError::BadResume(
            "\"since\" is required with \"epoch\"",
        )),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A server message: `type`, `time` (the wall clock the shell read for
/// this loop turn, in ms since the Unix epoch) and the fields (serde_json
/// orders the keys alphabetically; clients look them up by name).
pub(super) fn server_message(kind: &str, fields: Value, now_ms: u64) -> String {
    let mut object = Map::new();
    object.insert("type".into(), kind.into());
    object.insert("time".into(), rfc3339_millis(now_ms).into());
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object).to_string()
}

/// Where the broadcast stream stands for a new client, and what became of
/// its resume, if it asked for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream<'a> {
    pub epoch: &'a str,
    pub offset: u64,
    pub resumed: Option<Resumed>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    Recovered {
        replayed: usize,
    },
    /// Not recovered, and why (`too_old`, `unknown_epoch`).
    Failed(&'static str),
}

/// The first message of client `client_id`; `user` is the `sub` of its
/// token, if it connected with one.
pub fn welcome(
    client_id: &str,
    user: Option<&str>,
    worker: usize,
    stream: Stream,
    now_ms: u64,
) -> String {
    let mut fields = json!({
        "client_id": client_id,
        "server": "wsnotify",
        "version": crate::config::VERSION,
        "worker": worker,
        "epoch": stream.epoch,
        "offset": stream.offset,
    });
    if let (Some(user), Value::Object(map)) = (user, &mut fields) {
        map.insert("user".into(), user.into());
    }
    if let (Some(resumed), Value::Object(map)) = (stream.resumed, &mut fields) {
        match resumed {
            Resumed::Recovered { replayed } => {
                map.insert("recovered".into(), true.into());
                map.insert("replayed".into(), replayed.into());
            }
            Resumed::Failed(reason) => {
                map.insert("recovered".into(), false.into());
                map.insert("reason".into(), reason.into());
            }
        }
    }
    server_message("welcome", fields, now_ms)
}

/// A message for everyone with its place in the stream: `"offset"` added
/// as the last field of the JSON object, without parsing it again.
pub fn with_offset(json: &str, offset: u64) -> String {
    let body = json.strip_suffix('}').unwrap_or(json);
    let comma = if body.ends_with('{') { "" } else { "," };
    format!("{body}{comma}\"offset\":{offset}}}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Periodic,
    Api,
}

/// A notification, periodic or published.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: u64,
    pub message: String,
    pub category: String,
    pub source: Source,
    pub personal: bool,
    /// To a channel's subscribers (`user:ID`: to a user's connections).
    pub channel: Option<String>,
    pub instance: String,
    pub data: Option<Value>,
}

impl Notification {
    fn scope(&self) -> &'static str {
        match &self.channel {
            Some(channel) if channel.starts_with(USER_PREFIX) => "user",
            Some(_) => "channel",
            None if self.personal => "personal",
            None => "broadcast",
        }
    }

    pub fn to_json(&self, now_ms: u64) -> String {
        let mut fields = json!({
            "id": self.id,
            "message": self.message,
            "category": self.category,
            "source": match self.source { Source::Periodic => "periodic", Source::Api => "api" },
            "scope": self.scope(),
            "instance": self.instance,
        });
        if let (Some(channel), Value::Object(map)) = (&self.channel, &mut fields) {
            map.insert("channel".into(), channel.as_str().into());
        }
        if let (Some(data), Value::Object(map)) = (&self.data, &mut fields) {
            map.insert("data".into(), data.clone());
        }
        server_message("notification", fields, now_ms)
    }
}

pub fn chat(from: &str, message: &str, now_ms: u64) -> String {
    server_message("chat", json!({ "from": from, "message": message }), now_ms)
}

pub fn direct(from: &str, message: &str, now_ms: u64) -> String {
    server_message(
        "direct",
        json!({ "from": from, "message": message }),
        now_ms,
    )
}

/// The numbering of the stream restarted (Redis lost it): from here on
/// offsets count in `epoch`, the next one after `offset`.
pub fn epoch(epoch: &str, offset: u64, now_ms: u64) -> String {
    server_message("epoch", json!({ "epoch": epoch, "offset": offset }), now_ms)
}

pub fn pong(now_ms: u64) -> String {
    server_message("pong", json!({}), now_ms)
}

pub fn status(fields: Value, now_ms: u64) -> String {
    server_message("status", fields, now_ms)
}

pub fn shutdown_notice(drain_timeout_s: u64, reconnect_after_ms: u64, now_ms: u64) -> String {
    server_message(
        "shutdown_notice",
        json!({
            "message": "server is shutting down; please reconnect",
            "drain_timeout_s": drain_timeout_s,
            "reconnect": true,
            "reconnect_after_ms": reconnect_after_ms,
        }),
        now_ms,
    )
}

pub fn error(text: &str, now_ms: u64) -> String {
    server_message("error", json!({ "error": text }), now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-21T16:14:56.789Z
    const NOW: u64 = 1_795_277_696_789;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_epoch_message_names_the_epoch_and_the_offset_before_its_first() {
        let m = parsed(&epoch("5c0f2e9a6b1d4e83", 0, NOW));
        assert_eq!(
            (&m["type"], &m["epoch"], &m["offset"]),
            (&"epoch".into(), &"5c0f2e9a6b1d4e83".into(), &0.into())
        );
        assert!(m["time"].is_string());
    }

    #[test]
    fn non_objects_are_chat_as_typed() {
        for text in ["hi", "\"hi\"", "42", "[1]", "", "{broken"] {
            assert_eq!(
                parse_client(text),
                Ok(ClientMessage::Chat(text.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn typed_messages() {
        assert_eq!(
            parse_client(r#"{"type":"chat","message":"yo"}"#),
            Ok(ClientMessage::Chat("yo".into()))
        );
        assert_eq!(
            parse_client(r#"{"type":"direct","to":"a-0-1","message":"psst"}"#),
            Ok(ClientMessage::Direct {
                to: "a-0-1".into(),
                message: "psst".into()
            })
        );
        assert_eq!(parse_client(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse_client(r#"{"type":"status_request"}"#),
            Ok(ClientMessage::StatusRequest)
        );
    }

    #[test]
    fn bad_objects_are_errors() {
        for text in [
            r#"{}"#,
            r#"{"type":5}"#,
            r#"{"type":"nope"}"#,
            r#"{"type":"chat"}"#,
            r#"{"type":"chat","message":1}"#,
            r#"{"type":"direct","message":"x"}"#,
            r#"{"type":"direct","to":"x"}"#,
        ] {
            assert!(parse_client(text).is_err(), "{text}");
        }
    }

    #[test]
    fn server_messages_have_type_and_time() {
        let stream = Stream {
            epoch: "ep",
            offset: 3,
            resumed: None,
        };
        let v = parsed(&welcome("abc-0-1", None, 0, stream, NOW));
        assert_eq!(v["type"], "welcome");
        assert!(v.get("user").is_none(), "anonymous");
        assert_eq!(
            (v["epoch"].as_str(), v["offset"].as_u64()),
            (Some("ep"), Some(3))
        );
        assert!(v.get("recovered").is_none());
        assert_eq!(v["client_id"], "abc-0-1");
        assert_eq!(v["server"], "wsnotify");
        assert_eq!(v["worker"], 0);
        assert_eq!(v["time"], "2026-11-21T16:14:56.789Z");
        for text in [
            chat("a", "b", NOW),
            direct("a", "b", NOW),
            pong(NOW),
            error("e", NOW),
            shutdown_notice(5, 10, NOW),
        ] {
            let v = parsed(&text);
            assert!(v["type"].is_string() && v["time"].is_string(), "{text}");
        }
    }

    #[test]
    fn notification_fields() {
        let mut n = Notification {
            id: 7,
            message: "m".into(),
            category: "info".into(),
            source: Source::Api,
            personal: true,
            channel: None,
            instance: "i".into(),
            data: None,
        };
        let v = parsed(&n.to_json(NOW));
        assert_eq!(v["type"], "notification");
        assert_eq!(v["id"], 7);
        assert_eq!(v["source"], "api");
        assert_eq!(v["scope"], "personal");
        assert!(v.get("data").is_none());
        n.data = Some(json!({"k": [1, 2]}));
        n.source = Source::Periodic;
        n.personal = false;
        let v = parsed(&n.to_json(NOW));
        assert_eq!(v["data"]["k"][1], 2);
        assert_eq!(v["source"], "periodic");
        assert_eq!(v["scope"], "broadcast");
        assert!(v.get("channel").is_none());
        n.channel = Some("news".into());
        let v = parsed(&n.to_json(NOW));
        assert_eq!(
            (&v["scope"], &v["channel"]),
            (&"channel".into(), &"news".into())
        );
        n.channel = Some("user:ann".into());
        let v = parsed(&n.to_json(NOW));
        assert_eq!(
            (&v["scope"], &v["channel"]),
            (&"user".into(), &"user:ann".into())
        );
    }

    #[test]
    fn welcome_after_a_resume() {
        let mut stream = Stream {
            epoch: "ep",
            offset: 9,
            resumed: Some(Resumed::Recovered { replayed: 4 }),
        };
        let v = parsed(&welcome("a-0-1", Some("alice"), 0, stream, NOW));
        assert_eq!(v["user"], "alice");
        assert_eq!(
            (v["recovered"].as_bool(), v["replayed"].as_u64()),
            (Some(true), Some(4))
        );
        stream.resumed = Some(Resumed::Failed("too_old"));
        let v = parsed(&welcome("a-0-1", None, 0, stream, NOW));
        assert_eq!(v["recovered"], false);
        assert_eq!(v["reason"], "too_old");
        assert!(v.get("replayed").is_none());
    }

    #[test]
    fn offset_is_added_to_the_object() {
        let v = parsed(&with_offset(&chat("a", "}", NOW), 12));
        assert_eq!(
            (v["offset"].as_u64(), v["message"].as_str()),
            (Some(12), Some("}"))
        );
        assert_eq!(with_offset("{}", 1), r#"{"offset":1}"#);
    }
}
