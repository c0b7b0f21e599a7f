//! The /ws messages about channels: the answers to `subscribe` and
//! `unsubscribe`, chat on a channel, and the errors that name a channel
//! (the connection stays open after each).

use serde_json::{json, Value};

use super::protocol::{server_message, Resumed};

/// `{"type":"error","error":"...","channel":"C"}`.
pub fn error(channel: &str, text: &str, now_ms: u64) -> String {
    server_message(
        "error",
        json!({ "error": text, "channel": channel }),
        now_ms,
    )
}

/// The answer to `subscribe`: the epoch, the channel's last offset as the
/// client now stands, and what became of its resume, if it asked for one.
pub fn subscribed(
    channel: &str,
    epoch: &str,
    offset: u64,
    resumed: Option<Resumed>,
    now_ms: u64,
) -> String {
    let mut fields = json!({ "channel": channel, "epoch": epoch, "offset": offset });
    if let (Some(resumed), Value::Object(map)) = (resumed, &mut fields) {
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
    server_message("subscribed", fields, now_ms)
}

pub fn unsubscribed(channel: &str, now_ms: u64) -> String {
    server_message("unsubscribed", json!({ "channel": channel }), now_ms)
}

/// Chat to a channel's subscribers, before its offset is added.
pub fn chat(from: &str, message: &str, channel: &str, now_ms: u64) -> String {
    server_message(
        "chat",
        json!({ "from": from, "message": message, "channel": channel }),
        now_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::channel_refusal::ChannelRefusal;
    use crate::app::protocol::with_offset;

    const NOW: u64 = 1_795_277_696_789;

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn subscribed_names_the_channel_epoch_offset_and_resume() {
        let v = parsed(&subscribed("news", "ep", 4, None, NOW));
        assert_eq!(
            (&v["type"], &v["channel"], &v["epoch"], &v["offset"]),
            (
                &"subscribed".into(),
                &"news".into(),
                &"ep".into(),
                &4.into()
            )
        );
        assert!(v.get("recovered").is_none() && v["time"].is_string());
        let resumed = Some(Resumed::Recovered { replayed: 2 });
        let v = parsed(&subscribed("news", "ep", 4, resumed, NOW));
        assert_eq!((&v["recovered"], &v["replayed"]), (&true.into(), &2.into()));
        let failed = Some(Resumed::Failed("too_old"));
        let v = parsed(&subscribed("news", "ep", 4, failed, NOW));
        assert_eq!(
            (&v["recovered"], &v["reason"]),
            (&false.into(), &"too_old".into())
        );
    }

    #[test]
    fn errors_name_the_channel() {
        let text = ChannelRefusal::TooMany(3).to_string();
        let v = parsed(&error("a b", &text, NOW));
        assert_eq!(
            (&v["type"], &v["channel"], &v["error"]),
            (
                &"error".into(),
                &"a b".into(),
                &"at most 3 channels per connection".into()
            )
        );
        let v = parsed(&unsubscribed("news", NOW));
        assert_eq!(
            (&v["type"], &v["channel"]),
            (&"unsubscribed".into(), &"news".into())
        );
    }

    #[test]
    fn channel_chat_carries_the_channel_and_then_its_offset() {
        let v = parsed(&with_offset(&chat("a-0-1", "hi", "room", NOW), 7));
        assert_eq!(
            (&v["type"], &v["from"], &v["channel"], &v["offset"]),
            (&"chat".into(), &"a-0-1".into(), &"room".into(), &7.into())
        );
    }
}
