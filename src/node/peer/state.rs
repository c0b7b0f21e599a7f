//! The process's part in a hand-over and what it queues for the other
//! process: plain state, behind the `Process`'s lock (see `peer/mod.rs`).

use super::wire::Message;

/// Bytes queued for the peer before it is given up as too slow: far more
/// than a healthy local peer ever lags, little beside the client queues.
pub const MAX_UNSENT: usize = 8 << 20;

/// This process's part in a hand-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No peer: the stream is numbered here.
    Alone,
    /// The new process: numbers the stream for both and sends the old one
    /// each numbered message.
    Sequencer,
    /// The old process: sends messages for everyone to the new one and
    /// delivers them as they come back numbered.
    Follower,
    /// The old process after its link broke: delivers messages for
    /// everyone without an offset, as when Redis is out of reach, so no
    /// resume claims a recovery across them.
    Orphan,
}

/// The peer as the process knows it: behind the process's lock.
#[derive(Debug)]
pub struct Peer {
    role: Role,
    unsent: Vec<u8>,
    /// The peer takes channels' messages over the link (hand-over version
    /// 3); one of the release before (version 2) knows no channel.
    channels: bool,
}

impl Default for Peer {
    fn default() -> Peer {
        Peer {
            role: Role::Alone,
            unsent: Vec::new(),
            channels: true,
        }
    }
}

/// What became of a message for everyone (see `StreamCursor::sequence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequenced {
    /// Numbered here and mailed to every worker.
    Here,
    /// Sent to the sequencer; it comes back numbered.
    ToPeer,
    /// It cannot be numbered: deliver it without an offset.
    Unnumbered,
}

impl Peer {
    pub fn role(&self) -> Role {
        self.role
    }

    /// The hand-over is made: this process now takes `role` in it.
    pub fn link(&mut self, role: Role) {
        self.role = role;
    }

    /// Whether the peer takes channels' messages (see `channels`).
    pub fn set_channels(&mut self, channels: bool) {
        self.channels = channels;
    }

    /// Whether channels' messages cross the link: while linked to a peer
    /// that takes them.
    pub fn carries_channels(&self) -> bool {
        self.channels && self.linked()
    }

    /// Queues a message for the peer. Returns whether the shell must be
    /// woken to send it (the queue was empty), or `Err` when the peer lags
    /// past `MAX_UNSENT` and is given up.
    pub fn push(&mut self, message: &Message) -> Result<bool, TooSlow> {
        if !self.linked() {
            // Too late for the peer: what it would have got is gone with it.
            return Ok(false);
        }
        if self.unsent.len() >= MAX_UNSENT {
            return Err(TooSlow);
        }
        let was_empty = self.unsent.is_empty();
        message.encode(&mut self.unsent);
        Ok(was_empty)
    }

    /// Everything queued for the peer, for the shell to send.
    pub fn take_unsent(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unsent)
    }

    pub fn unsent_bytes(&self) -> usize {
        self.unsent.len()
    }

    /// The link is gone: the old process delivers unnumbered from now on;
    /// the new one numbers for itself alone. Returns what was queued.
    pub fn lose(&mut self) -> Vec<u8> {
        self.role = match self.role {
            Role::Follower | Role::Orphan => Role::Orphan,
            Role::Sequencer | Role::Alone => Role::Alone,
        };
        std::mem::take(&mut self.unsent)
    }

    /// Whether a link should be open: false once it was given up.
    pub fn linked(&self) -> bool {
        matches!(self.role, Role::Follower | Role::Sequencer)
    }
}

/// The peer lags too far behind: give it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSlow;
