//! Which wsnotify channels this worker's subscription connection follows:
//! a channel's Redis channel (`script::channel_topic`) is subscribed when
//! the worker's first subscriber of it joins and unsubscribed when its last
//! leaves, so an instance receives from Redis only the channels its clients
//! joined. As data: the commands to write, and what Redis's confirmations
//! mean; the link writes them on the subscription connection.
//!
//! Redis confirms each SUBSCRIBE and UNSUBSCRIBE in the order they were
//! sent, one reply per channel, so the confirmations alone say whether the
//! connection follows a channel now: following from its `subscribe` reply
//! (every message published after that reaches this worker) until its
//! `unsubscribe` reply or the connection's loss.

use std::collections::HashSet;
use std::sync::Arc;

use super::script;
use crate::proto::resp;

/// Channels asked for in one SUBSCRIBE after a reconnect, so that one
/// command stays a few hundred KiB at most.
const PER_COMMAND: usize = 1000;

/// What a confirmation from Redis changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Following {
    /// Every message of the channel published from now on reaches this
    /// worker.
    Started(Arc<str>),
    /// Messages of the channel may be missed from now on.
    Stopped(Arc<str>),
}

#[derive(Debug)]
pub struct Subscriptions {
    /// The `--redis-channel`, the prefix of every channel's topic.
    channel: String,
    /// The channels with a subscriber on this worker.
    wanted: HashSet<Arc<str>>,
    /// The channels Redis confirmed, as the replies so far say.
    confirmed: HashSet<Arc<str>>,
    /// At most this many channels are wanted at once: the worker's
    /// connections × `--max-channels-per-client` (what its clients can
    /// join), so a bug elsewhere cannot grow this without bound.
    max: usize,
}

impl Subscriptions {
    pub fn new(channel: String, max: usize) -> Subscriptions {
        Subscriptions {
            channel,
            wanted: HashSet::new(),
            confirmed: HashSet::new(),
            max,
        }
    }

    /// The worker's first subscriber of `name` joined: returns the
    /// SUBSCRIBE to write if the connection is `ready` (else the one sent
    /// when it is, `resubscribe`), or None when `name` was wanted already
    /// or the bound is reached (refused: returns `Err`).
    pub fn want(&mut self, name: &str, ready: bool) -> Result<Option<Vec<u8>>, Full> {
        if self.wanted.contains(name) {
            return Ok(None);
        }
        if self.wanted.len() >= self.max {
            return Err(Full);
        }
        self.wanted.insert(name.into());
        Ok(ready.then(|| self.command(b"SUBSCRIBE", [name])))
    }

    /// The worker's last subscriber of `name` left: the UNSUBSCRIBE to
    /// write if the connection is `ready` (a connection down follows
    /// nothing, and is not asked for it again).
    pub fn unwant(&mut self, name: &str, ready: bool) -> Option<Vec<u8>> {
        let was = self.wanted.remove(name);
        (was && ready).then(|| self.command(b"UNSUBSCRIBE", [name]))
    }

    /// The connection is ready again (or for the first time): the
    /// SUBSCRIBEs for every channel wanted, in commands of at most
    /// `PER_COMMAND` channels.
    pub fn resubscribe(&self) -> Vec<Vec<u8>> {
        let names: Vec<&str> = self.wanted.iter().map(|n| &**n).collect();
        names
            .chunks(PER_COMMAND)
            .map(|chunk| self.command(b"SUBSCRIBE", chunk.iter().copied()))
            .collect()
    }

    /// Redis confirmed a SUBSCRIBE (`subscribed`) or an UNSUBSCRIBE of
    /// `topic`; None for a topic that is not a channel's (the stream's own).
    pub fn confirmed(&mut self, topic: &[u8], subscribed: bool) -> Option<Following> {
        let name = script::channel_of(&self.channel, topic)?;
        if !subscribed {
            return self.confirmed.take(name).map(Following::Stopped);
        }
        if self.confirmed.contains(name) {
            return None;
        }
        let name: Arc<str> = name.into();
        self.confirmed.insert(Arc::clone(&name));
        Some(Following::Started(name))
    }

    /// The connection was lost: it follows nothing any more (each channel
    /// it followed is stopped); what is wanted is asked again when it is
    /// ready (`resubscribe`).
    pub fn lost(&mut self) -> Vec<Following> {
        self.confirmed.drain().map(Following::Stopped).collect()
    }

    /// Whether the connection follows `name` now.
    pub fn follows(&self, name: &str) -> bool {
        self.confirmed.contains(name)
    }

    pub fn wanted(&self) -> usize {
        self.wanted.len()
    }

    fn command<'a>(&self, verb: &[u8], names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
        let topics: Vec<String> = names
            .into_iter()
            .map(|n| script::channel_topic(&self.channel, n))
            .collect();
        let mut args: Vec<&[u8]> = vec![verb];
        args.extend(topics.iter().map(|t| t.as_bytes()));
        resp::command(&args)
    }
}

/// The worker wants as many channels as its clients can join.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(max: usize) -> Subscriptions {
        Subscriptions::new("ws".into(), max)
    }

    fn args(command: &[u8]) -> Vec<String> {
        let (reply, _) = resp::parse(command).unwrap().unwrap();
        let resp::Reply::Array(Some(items)) = reply else {
            panic!()
        };
        items
            .into_iter()
            .map(|i| match i {
                resp::Reply::Bulk(Some(b)) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_first_subscriber_subscribes_and_the_last_unsubscribes() {
        let mut s = subs(10);
        let first = s.want("news", true).unwrap().unwrap();
        assert_eq!(args(&first), ["SUBSCRIBE", "ws:ch:news"]);
        assert_eq!(s.want("news", true), Ok(None), "wanted already");
        assert!(!s.follows("news"), "not before Redis confirms");
        assert_eq!(
            s.confirmed(b"ws:ch:news", true),
            Some(Following::Started("news".into()))
        );
        assert!(s.follows("news"));
        let last = s.unwant("news", true).unwrap();
        assert_eq!(args(&last), ["UNSUBSCRIBE", "ws:ch:news"]);
        assert_eq!(s.unwant("news", true), None, "not wanted any more");
        assert_eq!(
            s.confirmed(b"ws:ch:news", false),
            Some(Following::Stopped("news".into()))
        );
        assert!(!s.follows("news") && s.wanted() == 0);
    }

    #[test]
    fn the_stream_s_own_topic_is_no_channel() {
        let mut s = subs(10);
        assert_eq!(s.confirmed(b"ws", true), None);
        assert_eq!(s.confirmed(b"ws:ch:x", false), None, "never followed");
    }

    #[test]
    fn confirmations_in_order_leave_the_last_intent() {
        let mut s = subs(10);
        s.want("a", true).unwrap();
        s.unwant("a", true);
        s.want("a", true).unwrap();
        assert!(s.confirmed(b"ws:ch:a", true).is_some());
        assert!(s.confirmed(b"ws:ch:a", false).is_some());
        assert!(s.confirmed(b"ws:ch:a", true).is_some());
        assert!(s.follows("a"));
    }

    #[test]
    fn after_a_reconnect_everything_wanted_is_subscribed_again() {
        let mut s = subs(3000);
        for n in 0..2500 {
            assert_eq!(s.want(&format!("c{n}"), false), Ok(None), "down: later");
        }
        s.confirmed(b"ws:ch:c1", true);
        assert_eq!(s.lost(), [Following::Stopped("c1".into())]);
        assert!(!s.follows("c1"));
        let commands = s.resubscribe();
        assert_eq!(commands.len(), 3, "1000 a command");
        let mut topics: Vec<String> = commands
            .iter()
            .flat_map(|c| {
                let a = args(c);
                assert_eq!(a[0], "SUBSCRIBE");
                a.into_iter().skip(1)
            })
            .collect();
        topics.sort();
        topics.dedup();
        assert_eq!(topics.len(), 2500);
        assert!(
            subs(1).resubscribe().is_empty(),
            "nothing wanted, nothing sent"
        );
    }

    #[test]
    fn a_channel_left_while_down_is_not_asked_again() {
        let mut s = subs(10);
        s.want("a", false).unwrap();
        assert_eq!(s.unwant("a", false), None);
        assert!(s.resubscribe().is_empty());
    }

    #[test]
    fn no_more_channels_than_the_clients_can_join() {
        let mut s = subs(2);
        s.want("a", true).unwrap();
        s.want("b", true).unwrap();
        assert_eq!(s.want("c", true), Err(Full));
        assert_eq!(s.wanted(), 2);
        s.unwant("a", true);
        assert!(s.want("c", true).is_ok());
    }
}
