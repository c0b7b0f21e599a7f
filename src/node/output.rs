//! What the node asks of the shell, in order.

use super::redis::LinkOutput;
use crate::ids::ConnKey;

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The connection is over: close its socket (the key may be used again
    /// for the next connection accepted).
    Close(ConnKey),
    /// Our last bytes are out: shut the socket's write side.
    ShutWrite(ConnKey),
    /// Watch the socket for writability (while bytes wait for it) or stop.
    Writable { key: ConnKey, on: bool },
    /// Read the socket again once the others have had their turn: it may
    /// hold bytes an edge-triggered poll will not announce again.
    ReadAgain(ConnKey),
    /// Mail waits for worker `n`: wake its loop.
    Wake(usize),
    /// Bytes wait for the other process of a hand-over: wake the shell
    /// that sends them.
    WakeLink,
    /// Stop accepting for good (another process serves these sockets).
    StopAccepting,
    /// A socket operation for the Redis connections.
    Redis(LinkOutput),
    /// The worker is done: its loop ends.
    Exit,
}
