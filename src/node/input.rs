//! What the shell hands the node.

use std::io;

use super::redis::LinkInput;
use crate::ids::ConnKey;

/// Whether to read a connection now (see `Node::may_read`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MayRead {
    Now,
    /// Once the other connections have had their turn.
    Later,
    No,
}

#[derive(Debug)]
pub enum Input<'a> {
    /// Bytes read from a connection's socket. Empty before a read of an
    /// HTTP connection: requests held back (parked, or while answers piled
    /// up) are taken first.
    Received { key: ConnKey, bytes: &'a [u8] },
    /// A read found nothing waiting.
    Quiet(ConnKey),
    /// The peer will send nothing more (a read returned 0).
    Eof(ConnKey),
    /// The socket failed (a read error, or it could not be watched).
    Failed { key: ConnKey, error: io::Error },
    /// The socket takes writes again.
    Writable(ConnKey),
    /// Another thread woke the worker: mail, the drain, a hand-over.
    Woken,
    /// Something happened on a Redis connection.
    Redis(LinkInput<'a>),
}
