//! How a message crosses instances on the Redis channel: a one-line header
//! naming the origin instance and the recipient, then the server message
//! JSON exactly as clients receive it, so a receiving instance frames it
//! without parsing or re-encoding it.
//!
//! ```text
//! wsnotify1 <origin-instance> <client-id or *>
//! {"type":"chat",...}
//! ```

use super::hub::Here;
use crate::ids::{ClientId, ConnKey};

/// The first word of every envelope.
pub const MAGIC: &str = "wsnotify1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub origin: &'a str,
    /// `None` for everyone.
    pub to: Option<&'a str>,
    pub json: &'a str,
}

pub fn encode(origin: &str, to: Option<&ClientId>, json: &str) -> Vec<u8> {
    match to {
        Some(to) => format!("{MAGIC} {origin} {to}\n{json}"),
        None => format!("{MAGIC} {origin} *\n{json}"),
    }
    .into_bytes()
}

/// Which worker of the origin instance published a message for everyone
/// through Redis's numbering, and its own count of them: the publishing
/// process recognises its own messages when Redis hands them back (see
/// `node/redis/returns.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub worker: usize,
    pub seq: u64,
}

/// The origin of a numbered message: `INSTANCE:WORKER:SEQ`. An instance of
/// an earlier version reads it as an opaque origin, which it only counts.
pub fn tagged_origin(instance: &str, tag: Tag) -> String {
    format!("{instance}:{}:{}", tag.worker, tag.seq)
}

/// The instance an origin names, and its tag if it has one.
pub fn split_origin(origin: &str) -> (&str, Option<Tag>) {
    let mut parts = origin.splitn(3, ':');
    let instance = parts.next().unwrap_or(origin);
    let tag = match (parts.next(), parts.next()) {
        (Some(worker), Some(seq)) => worker
            .parse()
            .ok()
            .zip(seq.parse().ok())
            .map(|(worker, seq)| Tag { worker, seq }),
        _ => None,
    };
    (instance, tag)
}

/// Reads an envelope; anything else on the channel (another program's
/// message, a corrupt one) is refused with the reason.
pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let (header, json) = text.split_once('\n').ok_or("no header line")?;
    let mut fields = header.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err("not a wsnotify envelope");
    }
    let origin = fields.next().filter(|o| !o.is_empty()).ok_or("no origin")?;
    let to = match fields.next().ok_or("no recipient")? {
        "*" => None,
        id => Some(id),
    };
    if fields.next().is_some() {
        return Err("extra header fields");
    }
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(o)) if o.get("type").is_some_and(|t| t.is_string()) => {}
        _ => return Err("body is not a server message"),
    }
    Ok(Envelope { origin, to, json })
}

/// Who on this worker an envelope from the channel is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    /// This instance's own message, back from the channel: already
    /// delivered here.
    OwnEcho,
    /// Another worker's or instance's client, or one no longer connected.
    Nobody,
    Everyone,
    /// A client of this worker.
    Client(ConnKey),
}

/// Every worker of every other instance gets each message and delivers it
/// to its own clients only.
pub fn recipient(envelope: &Envelope, here: &Here) -> Recipient {
    if envelope.origin == here.instance {
        return Recipient::OwnEcho;
    }
    let Some(id) = envelope.to else {
        return Recipient::Everyone;
    };
    match id.parse::<ClientId>() {
        Ok(client) if client.instance == here.instance && client.worker == here.worker => here
            .hub
            .key(client.seq, here.seqs)
            .map_or(Recipient::Nobody, Recipient::Client),
        _ => Recipient::Nobody,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures::Conns;
    use crate::app::hub::Hub;

    #[test]
    fn recipients_on_this_worker() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(3));
        let conns = Conns(vec![(ConnKey(3), seq)]);
        let here = Here {
            instance: "me",
            worker: 1,
            workers: 2,
            redis: true,
            peer: None,
            hub: &hub,
            seqs: &conns,
        };
        let to = |origin, to| Envelope {
            origin,
            to,
            json: "{}",
        };
        let mine = format!("me-1-{seq}");
        assert_eq!(recipient(&to("me", None), &here), Recipient::OwnEcho);
        assert_eq!(recipient(&to("it", None), &here), Recipient::Everyone);
        assert_eq!(
            recipient(&to("it", Some(&mine)), &here),
            Recipient::Client(ConnKey(3))
        );
        assert_eq!(
            recipient(&to("it", Some("me-0-1")), &here),
            Recipient::Nobody
        );
        assert_eq!(
            recipient(&to("it", Some("me-1-99")), &here),
            Recipient::Nobody
        );
        let forged = format!("me-1-{}", seq + (1 << 32));
        assert_eq!(
            recipient(&to("it", Some(&forged)), &here),
            Recipient::Nobody
        );
        assert_eq!(
            recipient(&to("it", Some("xx-1-1")), &here),
            Recipient::Nobody
        );
    }

    #[test]
    fn round_trip() {
        let json = r#"{"type":"chat","from":"a-0-1","message":"hi\nthere"}"#;
        let bytes = encode("abcd1234", None, json);
        assert_eq!(
            decode(&bytes),
            Ok(Envelope {
                origin: "abcd1234",
                to: None,
                json
            })
        );
        let to: ClientId = "ffff0000-1-7".parse().unwrap();
        let bytes = encode("abcd1234", Some(&to), json);
        assert_eq!(decode(&bytes).unwrap().to, Some("ffff0000-1-7"));
    }

    #[test]
    fn a_tagged_origin_names_its_instance_worker_and_count() {
        let tag = Tag { worker: 2, seq: 41 };
        let origin = tagged_origin("abcd1234", tag);
        let bytes = format!("wsnotify1 {origin} *\n{{\"type\":\"chat\"}}");
        let envelope = decode(bytes.as_bytes()).unwrap();
        assert_eq!(split_origin(envelope.origin), ("abcd1234", Some(tag)));
        assert_eq!(split_origin("abcd1234"), ("abcd1234", None));
        assert_eq!(split_origin("abcd1234:x:1"), ("abcd1234", None));
    }

    #[test]
    fn foreign_and_broken_messages_are_refused() {
        for bad in [
            &b"hello"[..],
            b"wsnotify1 abc *",
            b"other abc *\n{\"type\":\"chat\"}",
            b"wsnotify1  *\n{\"type\":\"chat\"}",
            b"wsnotify1 abc * x\n{\"type\":\"chat\"}",
            b"wsnotify1 abc *\n[1]",
            b"wsnotify1 abc *\n{\"no\":\"type\"}",
            b"\xFF\xFE",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
