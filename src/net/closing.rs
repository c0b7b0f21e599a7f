//! The end of a connection: last bytes out, the peer's side of the close,
//! and a bounded wait so no peer can hold a socket open.

use super::conn::{CloseMode, Phase};
use super::worker::{Worker, READS_PER_EVENT};
use crate::proto::message::Message;

impl Worker {
    /// Puts a connection into its closing phase: queued bytes go out, then
    /// `mode` decides what is still awaited from the peer.
    pub(super) fn start_closing(&mut self, key: usize, mode: CloseMode) {
        let until = self.now + self.linger_ticks;
        if let Some(conn) = self.conns.get_mut(key) {
            if !matches!(conn.phase, Phase::Closing { .. }) {
                self.closing += 1;
            }
            conn.phase = Phase::Closing {
                until,
                write_shut: false,
                mode,
            };
            self.mark_dirty(key);
            self.arm(key);
        }
    }

    /// Reads what a closing peer still sends: its Close when we await one,
    /// otherwise nothing that matters until it closes.
    pub(super) fn read_closing(&mut self, key: usize) {
        for _ in 0..READS_PER_EVENT {
            let n = match self.read_once(key) {
                None | Some(0) => return,
                Some(n) => n,
            };
            self.peer_still_sending(key);
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if let Phase::Closing {
                mode: mode @ CloseMode::AwaitClose(_),
                ..
            } = &mut conn.phase
            {
                let CloseMode::AwaitClose(rx) = mode else {
                    return;
                };
                let mut input = &self.scratch[..n];
                while !input.is_empty() {
                    let (used, result) = rx.feed(input);
                    input = &input[used..];
                    if matches!(result, Ok(Some(Message::Close(_))) | Err(_)) {
                        // Bytes after its Close: see `peer_still_sending`.
                        *mode = if input.is_empty() {
                            CloseMode::AfterFlush
                        } else {
                            CloseMode::Linger
                        };
                        self.mark_dirty(key);
                        self.read_later(key);
                        return;
                    }
                }
            }
        }
        self.read_later(key);
    }

    /// The peer sent more after its Close. Closing now, with its bytes
    /// unread, would make the kernel reset the connection and destroy what
    /// it has not read yet (found by the connection fuzz target), so the
    /// connection waits for its FIN, reading and dropping, within the close
    /// grace.
    pub(super) fn peer_still_sending(&mut self, key: usize) {
        if let Some(Phase::Closing {
            mode: mode @ CloseMode::AfterFlush,
            ..
        }) = self.conns.get_mut(key).map(|c| &mut c.phase)
        {
            *mode = CloseMode::Linger;
        }
    }

    /// The peer will send nothing more. An HTTP client that half-closed
    /// after its request still gets the queued answer.
    pub(super) fn on_peer_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.phase {
            Phase::Http(_) | Phase::Closing { .. } if !conn.out.is_empty() => {
                self.start_closing(key, CloseMode::AfterFlush);
            }
            // A half-closed peer may still read: what is queued for it
            // (say, the 101 and the welcome of an upgrade sent with the FIN)
            // goes out first.
            Phase::Ws(_) if !conn.out.is_empty() => {
                self.leave_ws(key, "connection closed by peer without a close frame");
                self.start_closing(key, CloseMode::AfterFlush);
            }
            Phase::Ws(_) => self.close(key, "connection closed by peer without a close frame"),
            _ => self.close(key, "connection closed by peer"),
        }
    }
}
