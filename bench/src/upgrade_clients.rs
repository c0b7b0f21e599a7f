//! The clients of `upgrade`, as /client.js behaves: each starts on the old
//! server, takes its `shutdown_notice`, and at the hint (or at once) closes
//! that connection and resumes on the same port, where the new server now
//! accepts, with `?since=<last offset>&epoch=<epoch>`. Every broadcast it
//! receives on either connection is recorded (`Tracker`); nothing is
//! dropped as a duplicate, so duplicates are counted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use mio::event::Event;
use mio::Token;

use crate::args::Reconnect;
use crate::fanout::find_seq;
use crate::net::{Handler, Tx};
use crate::publish_http::{self, HttpPublisher};
use crate::resume_check::{find_offset, parse_frame, Frame, Tracker, Welcome};

const NONE: u32 = u32::MAX;

pub struct Clients {
    pub tracker: Tracker,
    reconnect: Reconnect,
    /// Per connection id: its client, or NONE.
    conn_client: Vec<u32>,
    /// Per connection id: its welcome has arrived.
    conn_welcomed: Vec<bool>,
    /// Per client: its current connection.
    pub current: Vec<usize>,
    /// Per client: it has left the old server.
    pub moved: Vec<bool>,
    noticed: Vec<bool>,
    /// Clients due to move: (when, in µs of the loop's clock; client).
    pub moves: BinaryHeap<Reverse<(u64, u32)>>,
    /// Messages published so far (a higher one is an error).
    pub published: u32,
    /// The final marker, once published.
    pub marker: Option<u32>,
    /// Clients that have received the marker.
    pub marker_seen: usize,
    pub welcomed_old: usize,
    /// The instance of the first welcome (the old server's).
    pub old_instance: Option<String>,
    pub resumed: usize,
    /// Resumes welcomed by the old server's instance (it had stopped
    /// accepting: none expected).
    pub resumed_on_old: usize,
    pub notices: usize,
    pub hint_max_ms: u64,
    pub last_resume_us: u64,
    pub http: Option<HttpPublisher>,
    pub errors: u64,
}

/// The instance part of a client id (`INSTANCE-WORKER-SEQ`).
fn instance_of(w: &Welcome) -> Option<&str> {
    w.client_id.as_deref()?.split('-').next()
}

impl Clients {
    pub fn new(n: usize, reconnect: Reconnect) -> Clients {
        let mut c = Clients {
            tracker: Tracker::new(n),
            reconnect,
            conn_client: Vec::new(),
            conn_welcomed: Vec::new(),
            current: vec![usize::MAX; n],
            moved: vec![false; n],
            noticed: vec![false; n],
            moves: BinaryHeap::new(),
            published: 0,
            marker: None,
            marker_seen: 0,
            welcomed_old: 0,
            old_instance: None,
            resumed: 0,
            resumed_on_old: 0,
            notices: 0,
            hint_max_ms: 0,
            last_resume_us: 0,
            http: None,
            errors: 0,
        };
        for client in 0..n {
            c.attach(client, client);
        }
        c
    }

    pub fn error(&mut self, what: &str, msg: &str) {
        self.errors += 1;
        if self.errors <= 20 {
            eprintln!("wsload: {what}: {msg}");
        }
    }

    /// Connection `id` is now `client`'s.
    pub fn attach(&mut self, id: usize, client: usize) {
        if self.conn_client.len() <= id {
            self.conn_client.resize(id + 1, NONE);
            self.conn_welcomed.resize(id + 1, false);
        }
        self.conn_client[id] = client as u32;
        self.current[client] = id;
    }

    fn welcome(&mut self, c: usize, w: &Welcome, now_us: u64) {
        if !self.moved[c] {
            self.tracker.first_welcome(c, w);
            self.welcomed_old += 1;
            if self.old_instance.is_none() {
                self.old_instance = instance_of(w).map(String::from);
            }
            return;
        }
        self.tracker.resume_welcome(w);
        self.resumed += 1;
        self.last_resume_us = now_us;
        if instance_of(w).is_some() && instance_of(w) == self.old_instance.as_deref() {
            self.resumed_on_old += 1;
        }
    }

    fn text(&mut self, id: usize, c: usize, text: &[u8], now_us: u64) -> Result<(), String> {
        if !self.conn_welcomed[id] {
            let Frame::Welcome(w) = parse_frame(text)? else {
                return Err(format!(
                    "the first frame is not a welcome: {:?}",
                    String::from_utf8_lossy(text)
                ));
            };
            self.conn_welcomed[id] = true;
            self.welcome(c, &w, now_us);
            return Ok(());
        }
        if let Some(seq) = find_seq(text) {
            let seq = seq.ok_or("a marker without a sequence number")?;
            if seq == 0 || seq > self.published {
                return Err(format!("message {seq} was never published"));
            }
            if self.marker == Some(seq) && !self.tracker.has(c, seq) {
                self.marker_seen += 1;
            }
            self.tracker.delivery(c, seq, find_offset(text));
            return Ok(());
        }
        match parse_frame(text)? {
            Frame::Notice(_) if self.moved[c] => {
                Err("the server the client resumed on sent a shutdown_notice".into())
            }
            Frame::Notice(ms) if !self.noticed[c] => {
                self.noticed[c] = true;
                self.notices += 1;
                self.hint_max_ms = self.hint_max_ms.max(ms);
                let delay_us = match self.reconnect {
                    Reconnect::Hint => ms * 1000,
                    Reconnect::Now => 0,
                };
                self.moves.push(Reverse((now_us + delay_us, c as u32)));
                Ok(())
            }
            Frame::Notice(_) => Err("a second shutdown_notice".into()),
            Frame::Welcome(_) => Err("a second welcome".into()),
            Frame::Other => Ok(()),
        }
    }
}

impl Handler for Clients {
    fn on_text(&mut self, id: usize, text: &[u8], _: &mut Tx, now_us: u64) -> Result<(), String> {
        match self.conn_client.get(id) {
            Some(&c) if c != NONE => self.text(id, c as usize, text, now_us),
            _ => Ok(()),
        }
    }

    fn on_foreign(&mut self, token: Token, event: &Event, _now_us: u64) {
        if token != publish_http::TOKEN {
            return;
        }
        if let Some(Err(e)) = self.http.as_mut().map(|h| h.on_event(event)) {
            self.error("http publisher", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Rng;

    fn feed(c: &mut Clients, id: usize, text: &str, now_us: u64) -> Result<(), String> {
        let (mut out, mut rng) = (Vec::new(), Rng::from_entropy());
        c.on_text(
            id,
            text.as_bytes(),
            &mut Tx::for_test(&mut out, &mut rng),
            now_us,
        )
    }

    #[test]
    fn follows_the_notice_and_counts_the_resume() {
        let mut c = Clients::new(2, Reconnect::Hint);
        c.published = 3;
        let first = r#"{"type":"welcome","client_id":"aa-0-1","epoch":"e","offset":4}"#;
        feed(&mut c, 0, first, 0).unwrap();
        feed(&mut c, 1, first, 0).unwrap();
        assert_eq!((c.welcomed_old, c.old_instance.as_deref()), (2, Some("aa")));
        feed(&mut c, 0, r#"{"message":"wsl 1 x","offset":5}"#, 1).unwrap();
        feed(
            &mut c,
            0,
            r#"{"type":"shutdown_notice","reconnect_after_ms":250}"#,
            10,
        )
        .unwrap();
        assert_eq!(c.moves.peek(), Some(&Reverse((250_010, 0))));
        assert!(feed(
            &mut c,
            0,
            r#"{"type":"shutdown_notice","reconnect_after_ms":1}"#,
            11
        )
        .is_err());
        assert!(
            feed(&mut c, 1, r#"{"message":"wsl 4 x"}"#, 12).is_err(),
            "never published"
        );

        c.moved[0] = true;
        c.attach(2, 0);
        let resumed =
            r#"{"type":"welcome","client_id":"bb-0-1","epoch":"e","recovered":true,"replayed":2}"#;
        feed(&mut c, 2, resumed, 300_000).unwrap();
        assert_eq!((c.resumed, c.resumed_on_old), (1, 0));
        assert_eq!((c.tracker.recovered, c.tracker.replayed), (1, 2));
        c.marker = Some(3);
        feed(&mut c, 2, r#"{"message":"wsl 3 x","offset":7}"#, 300_001).unwrap();
        feed(&mut c, 2, r#"{"message":"wsl 3 x","offset":7}"#, 300_002).unwrap();
        assert_eq!((c.marker_seen, c.tracker.duplicates), (1, 1));
        assert!(feed(
            &mut c,
            2,
            r#"{"type":"shutdown_notice","reconnect_after_ms":1}"#,
            3
        )
        .is_err());
    }

    #[test]
    fn moves_at_once_when_told_to() {
        let mut c = Clients::new(1, Reconnect::Now);
        feed(
            &mut c,
            0,
            r#"{"type":"welcome","client_id":"aa-0-1","epoch":"e","offset":0}"#,
            0,
        )
        .unwrap();
        feed(
            &mut c,
            0,
            r#"{"type":"shutdown_notice","reconnect_after_ms":9000}"#,
            42,
        )
        .unwrap();
        assert_eq!(c.moves.peek(), Some(&Reverse((42, 0))));
        assert_eq!(c.hint_max_ms, 9000);
    }
}
