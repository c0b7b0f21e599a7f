//! The worker's compressor: one raw-deflate state for all of its messages,
//! reset per message, so no connection holds compression state (every
//! offer is answered without context takeover). A message for everyone or
//! a channel is compressed once, by the worker that frames it, and its
//! compressed frame is shared by every client of the process that
//! negotiated permessage-deflate.

use super::process::Process;
use crate::obs::metrics;
use crate::proto::deflate::Deflater;
use crate::proto::shared_frame::SharedFrame;

/// The deflate state (a few hundred KiB) is made at the first message
/// compressed, so a worker whose clients never negotiated has none.
#[derive(Default)]
pub struct Compressor {
    deflater: Option<Box<Deflater>>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("ready", &self.deflater.is_some())
            .finish()
    }
}

impl Compressor {
    /// `json` framed once for every client of the process: plain, and
    /// compressed too when a client of the process negotiated
    /// permessage-deflate and the message is long enough to pay (see
    /// `SharedFrame::text`).
    pub fn frame(&mut self, process: &Process, json: &str) -> SharedFrame {
        let wanted = metrics::get(&process.stats.deflate_clients) > 0;
        let deflater = wanted.then(|| &mut **self.deflater.get_or_insert_with(Box::default));
        let frame = SharedFrame::text(json, deflater);
        if frame.is_compressed() {
            metrics::add(&process.stats.messages_compressed, 1);
        }
        frame
    }

    /// `frame` with this compressor, or plain without one (a message the
    /// other process of a hand-over sent for numbering: the link's thread
    /// has no compressor, and the hand-over lasts seconds).
    pub fn frame_with(this: Option<&mut Compressor>, process: &Process, json: &str) -> SharedFrame {
        match this {
            Some(compressor) => compressor.frame(process, json),
            None => SharedFrame::text(json, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::rand::Rng;
    use std::time::Instant;

    #[test]
    fn nothing_is_compressed_until_a_client_negotiated() {
        let process = Process::new(Config::default(), Instant::now(), &mut Rng::seeded(1));
        let mut compressor = Compressor::default();
        let json = format!(r#"{{"message":"{}"}}"#, "compressible ".repeat(40));
        assert!(!compressor.frame(&process, &json).is_compressed());
        metrics::add(&process.stats.deflate_clients, 1);
        assert!(compressor.frame(&process, &json).is_compressed());
        assert_eq!(metrics::get(&process.stats.messages_compressed), 1);
    }
}
