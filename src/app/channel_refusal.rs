//! Why a client's message about a channel is refused: the text of the
//! `error` that names the channel (the connection stays open).

use std::fmt;

use super::channel_name::BadName;

/// Why a message about a channel is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRefusal {
    BadName(BadName),
    /// `user:` channels are joined at connect, by their user only.
    Reserved,
    /// A `private:` channel the token does not list.
    NotAllowed,
    /// The client has joined `--max-channels-per-client` channels.
    TooMany(usize),
    /// Chat on a channel the client has not joined.
    NotJoined,
    /// Chat on a `user:` channel.
    ChatOnUser,
    /// A channel not held yet while the process holds `--max-channels`,
    /// every one with a subscriber.
    ServerFull,
}

impl fmt::Display for ChannelRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelRefusal::BadName(why) => why.fmt(f),
            ChannelRefusal::Reserved => {
                f.write_str("user: channels are joined at connect by their user only")
            }
            ChannelRefusal::NotAllowed => f.write_str("your token does not list this channel"),
            ChannelRefusal::TooMany(limit) => write!(f, "at most {limit} channels per connection"),
            ChannelRefusal::NotJoined => f.write_str("subscribe to the channel to chat on it"),
            ChannelRefusal::ChatOnUser => f.write_str("no chat on user: channels"),
            ChannelRefusal::ServerFull => f.write_str("the server holds too many channels"),
        }
    }
}
