//! What the clients of a run read off the wire, and the inflating of
//! compressed messages: bytes read (for bytes per delivery), connections
//! that negotiated permessage-deflate, and one inflater for the load
//! generator's one thread (the servers measured compress every message
//! alone, `server_no_context_takeover`, so no connection keeps a window).
//!
//! Inflating every delivery would make the load generator, not the
//! server, the bottleneck of a compressed fanout (building a message's
//! Huffman tables alone costs microseconds). Every client of a broadcast
//! receives the same compressed bytes from both servers measured (one
//! compression shared, or the same deflate run with no context on the
//! same text), so the last few distinct payloads are kept with their text:
//! a payload seen before costs a comparison, and each new one is inflated
//! whole and checked.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::{Decompress, FlushDecompress, Status};

use crate::frame::MAX_MESSAGE;

/// Distinct compressed payloads kept with their text.
const RECENT: usize = 16;

static BYTES_READ: AtomicU64 = AtomicU64::new(0);
static NEGOTIATED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// (compressed payload, its text), the newest last.
    static SEEN: RefCell<Vec<(Vec<u8>, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
}

/// `n` bytes were read from a server socket.
pub fn read(n: usize) {
    BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
}

/// Bytes read from server sockets so far.
pub fn bytes_read() -> u64 {
    BYTES_READ.load(Ordering::Relaxed)
}

/// A connection negotiated permessage-deflate.
pub fn negotiated() {
    NEGOTIATED.fetch_add(1, Ordering::Relaxed);
}

/// Connections that negotiated permessage-deflate so far.
pub fn negotiated_count() -> u64 {
    NEGOTIATED.load(Ordering::Relaxed)
}

/// The text of a compressed message, from the payloads seen last or
/// inflated (see the module's note).
pub fn inflate_seen(payload: &[u8]) -> Result<Vec<u8>, String> {
    let seen = SEEN.with(|cell| {
        let cell = cell.borrow();
        cell.iter()
            .rev()
            .find(|(p, _)| p.as_slice() == payload)
            .map(|(_, text)| text.clone())
    });
    if let Some(text) = seen {
        return Ok(text);
    }
    let text = inflate(payload)?;
    SEEN.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.len() == RECENT {
            cell.remove(0);
        }
        cell.push((payload.to_vec(), text.clone()));
    });
    Ok(text)
}

/// The text of a compressed message (RFC 7692 7.2.2: the payload, then
/// `00 00 ff ff`, inflated).
pub fn inflate(payload: &[u8]) -> Result<Vec<u8>, String> {
    INFLATER.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(false);
        let mut input = Vec::with_capacity(payload.len() + 4);
        input.extend_from_slice(payload);
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(payload.len() * 4 + 64);
        let mut rest = &input[..];
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_MESSAGE {
                    return Err("a compressed message inflates past the largest message".into());
                }
                out.reserve(out.capacity());
            }
            let before = d.total_in();
            let status = d
                .decompress_vec(rest, &mut out, FlushDecompress::Sync)
                .map_err(|e| format!("bad compressed message: {e}"))?;
            rest = &rest[(d.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() || status == Status::StreamEnd {
                break;
            }
        }
        if std::str::from_utf8(&out).is_err() {
            return Err("a compressed text message is not UTF-8".into());
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    #[test]
    fn a_message_compressed_alone_inflates_back() {
        let text = "notification ".repeat(300);
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(8192);
        c.compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
        out.truncate(out.len() - 4);
        assert_eq!(inflate(&out).unwrap(), text.as_bytes());
        assert_eq!(inflate(&out).unwrap(), text.as_bytes(), "reset per message");
        assert!(inflate(b"\xff\xff\xff").is_err());
        assert_eq!(inflate_seen(&out).unwrap(), text.as_bytes());
        assert_eq!(inflate_seen(&out).unwrap(), text.as_bytes(), "seen");
    }
}
