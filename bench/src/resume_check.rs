//! The bookkeeping of `drain-resume` and `upgrade`: what each client has
//! received across its two connections, and what the resume welcomes said.
//! Pure: the loop feeds it parsed frames.

use serde_json::Value;

use crate::report::Line;

/// What `drain-resume` reads from a frame without the `wsl ` marker.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Welcome(Welcome),
    /// A `shutdown_notice` with its `reconnect_after_ms`.
    Notice(u64),
    Other,
}

#[derive(Debug, Default, PartialEq)]
pub struct Welcome {
    pub client_id: Option<String>,
    pub epoch: Option<String>,
    pub offset: Option<u64>,
    pub recovered: Option<bool>,
    pub replayed: Option<u64>,
    pub reason: Option<String>,
}

pub fn parse_frame(text: &[u8]) -> Result<Frame, String> {
    let v: Value = serde_json::from_slice(text)
        .map_err(|e| format!("a frame that is not JSON ({e}): {:?}", lossy(text)))?;
    match v.get("type").and_then(Value::as_str) {
        Some("welcome") => Ok(Frame::Welcome(Welcome {
            client_id: v.get("client_id").and_then(Value::as_str).map(String::from),
            epoch: v.get("epoch").and_then(Value::as_str).map(String::from),
            offset: v.get("offset").and_then(Value::as_u64),
            recovered: v.get("recovered").and_then(Value::as_bool),
            replayed: v.get("replayed").and_then(Value::as_u64),
            reason: v.get("reason").and_then(Value::as_str).map(String::from),
        })),
        Some("shutdown_notice") => v
            .get("reconnect_after_ms")
            .and_then(Value::as_u64)
            .map(Frame::Notice)
            .ok_or_else(|| format!("a shutdown_notice without a hint: {}", lossy(text))),
        _ => Ok(Frame::Other),
    }
}

fn lossy(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned()
}

/// The integer after `"offset":` in a server frame (the message text of
/// wsload cannot contain that key).
pub fn find_offset(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"offset\":";
    let pos = text.windows(KEY.len()).position(|w| w == KEY)?;
    let rest = &text[pos + KEY.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Default)]
struct Client {
    epoch: Option<String>,
    /// The highest offset seen (the first welcome's to start with).
    offset: u64,
    /// The offset of the last delivery (0: none yet).
    last_offset: u64,
    last_seq: u32,
    /// Bit `seq` is set once message `seq` arrived.
    seen: Vec<u64>,
}

#[derive(Default)]
pub struct Tracker {
    clients: Vec<Client>,
    /// The offset every client saw for message `seq` (0: none yet).
    seq_offset: Vec<u64>,
    /// Distinct messages received, over all clients.
    pub deliveries: u64,
    pub duplicates: u64,
    /// Received after a later message had arrived.
    pub out_of_order: u64,
    /// A message whose offset differs from the one another client saw.
    pub offset_mismatches: u64,
    /// Received with an offset not above the client's previous one.
    pub offset_disorder: u64,
    /// Broadcasts that carried no offset.
    pub without_offset: u64,
    pub recovered: u64,
    pub replayed: u64,
    pub too_old: u64,
    pub unknown_epoch: u64,
    /// Resume welcomes with no `recovered` field or another reason.
    pub not_recovered_other: u64,
}

impl Tracker {
    /// Deliveries short of `expected` (every client, every broadcast).
    pub fn missing(&self, expected: u64) -> u64 {
        expected.saturating_sub(self.deliveries)
    }

    /// Every one of `expected` deliveries made once, in order, with the
    /// offset every other client saw.
    pub fn exact(&self, expected: u64) -> bool {
        self.missing(expected) == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.offset_mismatches == 0
    }

    /// The delivery counts, in a report line.
    pub fn report(&self, line: &mut Line, expected: u64) {
        line.field("expected", expected)
            .field("deliveries", self.deliveries)
            .field("missing", self.missing(expected))
            .field("duplicates", self.duplicates)
            .field("out_of_order", self.out_of_order)
            .field("offset_mismatches", self.offset_mismatches)
            .field("without_offset", self.without_offset);
    }

    pub fn new(n: usize) -> Tracker {
        Tracker {
            clients: (0..n).map(|_| Client::default()).collect(),
            ..Tracker::default()
        }
    }

    /// The welcome of a client's first connection: where it starts.
    pub fn first_welcome(&mut self, client: usize, w: &Welcome) {
        let c = &mut self.clients[client];
        c.epoch = w.epoch.clone();
        c.offset = w.offset.unwrap_or(0);
    }

    /// The path of the client's resume: `base?since=N&epoch=E`, or `base`
    /// when the server gave no epoch.
    pub fn resume_path(&self, client: usize, base: &str) -> String {
        let c = &self.clients[client];
        match &c.epoch {
            Some(epoch) => format!(
                "{base}{}since={}&epoch={}",
                if base.contains('?') { '&' } else { '?' },
                c.offset,
                query_escape(epoch)
            ),
            None => base.to_string(),
        }
    }

    /// The welcome of the resumed connection.
    pub fn resume_welcome(&mut self, w: &Welcome) {
        match (w.recovered, w.reason.as_deref()) {
            (Some(true), _) => {
                self.recovered += 1;
                self.replayed += w.replayed.unwrap_or(0);
            }
            (Some(false), Some("too_old")) => self.too_old += 1,
            (Some(false), Some("unknown_epoch")) => self.unknown_epoch += 1,
            _ => self.not_recovered_other += 1,
        }
    }

    /// Whether `client` has received message `seq`.
    pub fn has(&self, client: usize, seq: u32) -> bool {
        let (word, bit) = (seq as usize / 64, 1u64 << (seq % 64));
        self.clients[client]
            .seen
            .get(word)
            .is_some_and(|w| w & bit != 0)
    }

    /// Whether any client has received message `seq`.
    pub fn seen_by_any(&self, seq: u32) -> bool {
        (0..self.clients.len()).any(|c| self.has(c, seq))
    }

    /// Per client, how many of the messages `expected` it has not received.
    pub fn missing_per_client(&self, expected: &[u32]) -> Vec<u64> {
        (0..self.clients.len())
            .map(|c| expected.iter().filter(|&&seq| !self.has(c, seq)).count() as u64)
            .collect()
    }

    pub fn not_recovered(&self) -> u64 {
        self.too_old + self.unknown_epoch + self.not_recovered_other
    }

    /// Message `seq` (from 1) reached `client`, with its offset if any.
    pub fn delivery(&mut self, client: usize, seq: u32, offset: Option<u64>) {
        let c = &mut self.clients[client];
        let (word, bit) = (seq as usize / 64, 1u64 << (seq % 64));
        if c.seen.len() <= word {
            c.seen.resize(word + 1, 0);
        }
        if c.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        c.seen[word] |= bit;
        self.deliveries += 1;
        if seq < c.last_seq {
            self.out_of_order += 1;
        } else {
            c.last_seq = seq;
        }
        let Some(offset) = offset else {
            self.without_offset += 1;
            return;
        };
        if offset <= c.last_offset {
            self.offset_disorder += 1;
        }
        c.last_offset = offset;
        c.offset = c.offset.max(offset);
        let i = seq as usize;
        if self.seq_offset.len() <= i {
            self.seq_offset.resize(i + 1, 0);
        }
        match self.seq_offset[i] {
            0 => self.seq_offset[i] = offset,
            known if known != offset => self.offset_mismatches += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(text: &str) -> Welcome {
        match parse_frame(text.as_bytes()) {
            Ok(Frame::Welcome(w)) => w,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_welcomes_notices_and_offsets() {
        let w = welcome(r#"{"type":"welcome","client_id":"a","epoch":"e/1","offset":12}"#);
        assert_eq!(w.epoch.as_deref(), Some("e/1"));
        assert_eq!(w.client_id.as_deref(), Some("a"));
        assert_eq!(w.offset, Some(12));
        assert_eq!(w.recovered, None);
        let w = welcome(r#"{"type":"welcome","recovered":false,"reason":"too_old"}"#);
        assert_eq!(
            (w.recovered, w.reason.as_deref()),
            (Some(false), Some("too_old"))
        );
        assert_eq!(
            parse_frame(br#"{"type":"shutdown_notice","reconnect_after_ms":250}"#),
            Ok(Frame::Notice(250))
        );
        assert!(parse_frame(br#"{"type":"shutdown_notice"}"#).is_err());
        assert!(parse_frame(b"nope").is_err());
        assert_eq!(parse_frame(br#"{"type":"pong"}"#), Ok(Frame::Other));
        assert_eq!(
            find_offset(br#"{"message":"wsl 3 x","offset":41,"type":"chat"}"#),
            Some(41)
        );
        assert_eq!(find_offset(br#"{"message":"wsl 3 x"}"#), None);
    }

    #[test]
    fn resume_path_carries_the_last_offset_and_the_epoch() {
        let mut t = Tracker::new(2);
        t.first_welcome(
            0,
            &welcome(r#"{"type":"welcome","epoch":"a b","offset":7}"#),
        );
        assert_eq!(t.resume_path(0, "/ws"), "/ws?since=7&epoch=a%20b");
        t.delivery(0, 1, Some(8));
        t.delivery(0, 2, Some(9));
        assert_eq!(t.resume_path(0, "/ws?x=1"), "/ws?x=1&since=9&epoch=a%20b");
        assert_eq!(t.resume_path(1, "/ws"), "/ws", "no epoch, no resume");
    }

    #[test]
    fn counts_duplicates_disorder_and_offset_disagreements() {
        let mut t = Tracker::new(2);
        for seq in [1, 2, 3, 2, 5, 4, 200] {
            t.delivery(0, seq, Some(u64::from(seq) + 10));
        }
        assert_eq!(t.deliveries, 6);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.out_of_order, 1);
        t.delivery(1, 1, Some(11));
        t.delivery(1, 2, Some(13));
        t.delivery(1, 3, None);
        assert_eq!(t.offset_mismatches, 1);
        assert_eq!(t.without_offset, 1);
        assert_eq!(t.deliveries, 9);
        // Client 0 got 4 (offset 14) after 5 (offset 15).
        assert_eq!(t.offset_disorder, 1);
    }

    #[test]
    fn counts_what_each_client_misses() {
        let mut t = Tracker::new(3);
        for seq in [1, 2, 3] {
            t.delivery(0, seq, Some(u64::from(seq)));
        }
        t.delivery(1, 2, Some(2));
        assert!(t.has(0, 3) && !t.has(1, 3) && !t.has(2, 1));
        assert!(t.seen_by_any(2) && !t.seen_by_any(4) && !t.seen_by_any(700));
        assert_eq!(t.missing_per_client(&[1, 2, 3]), [0, 2, 3]);
        assert_eq!(t.missing_per_client(&[]), [0, 0, 0]);
    }

    #[test]
    fn counts_resume_results() {
        let mut t = Tracker::new(1);
        t.resume_welcome(&welcome(
            r#"{"type":"welcome","recovered":true,"replayed":4}"#,
        ));
        t.resume_welcome(&welcome(
            r#"{"type":"welcome","recovered":false,"reason":"unknown_epoch"}"#,
        ));
        t.resume_welcome(&welcome(
            r#"{"type":"welcome","recovered":false,"reason":"too_old"}"#,
        ));
        t.resume_welcome(&welcome(r#"{"type":"welcome"}"#));
        assert_eq!((t.recovered, t.replayed), (1, 4));
        assert_eq!((t.too_old, t.unknown_epoch, t.not_recovered()), (1, 1, 3));
    }
}
