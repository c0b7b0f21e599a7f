//! Redis Pub/Sub for one worker, as data: one subscriber and one publisher
//! connection, reconnecting with exponential backoff and jitter. It owns no
//! socket and reads no clock: the shell (`net::redis_io`) looks hosts up,
//! connects, reads and writes as the link asks, and hands in what happened
//! with the time it happened, so every rule here is tested in memory.

mod handshake;
mod link;
mod queue;
mod returns;
pub mod script;
mod side;
mod subscriptions;

pub use link::{LinkInput, LinkOutput, RedisLink, Released, STALLED_AFTER};
pub use side::{Event, Side};
pub use subscriptions::{Following, Full};
