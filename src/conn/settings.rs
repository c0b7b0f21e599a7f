//! What every connection of a worker shares: time in ticks, timeouts and
//! size limits.

/// A point in time in ticks of the shell's clock (100 ms in the server):
/// 32 bits keep the per-connection state small and last 13 years.
pub type Tick = u32;
/// A deadline that never comes.
pub const NEVER: Tick = Tick::MAX;

/// What every connection of a worker shares: its timeouts in ticks and its
/// size limits. Kept by the shell and passed in, not stored per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Time for a request head (or a pending body), and for a keep-alive
    /// connection's next request.
    pub header: Tick,
    pub idle: Option<Tick>,
    pub ping: Option<Tick>,
    /// How long a closing connection may take to read our last bytes.
    pub linger: Tick,
    pub max_message: usize,
    /// Unsent bytes past which a WebSocket client is a slow consumer.
    pub max_queue: usize,
}

/// Requests served on one keep-alive connection before it is closed, so one
/// client cannot hold a connection forever.
pub(super) const MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
/// Answers queued for a client that pipelines requests without reading
/// them: past this, its requests wait, so memory stays bounded.
pub const MAX_HTTP_QUEUED: usize = 256 * 1024;
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
