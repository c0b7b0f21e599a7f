//! The bytes waiting to be written to one connection.
//!
//! A broadcast frame is encoded once and shared (`Arc<[u8]>`) by every
//! recipient's queue; queued chunks are written together with one `sendmsg`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

#[derive(Debug)]
pub enum Chunk {
    Owned(Vec<u8>),
    /// The answer to an HTTP request (the last of them, before an upgrade,
    /// the `101`): the client must read it whatever follows, so a discard
    /// keeps it (and the frames encoded at its end).
    Answer(Vec<u8>),
    Shared(Arc<[u8]>),
    /// Fixed frames (an empty Ping): queued without allocating.
    Static(&'static [u8]),
}

impl Chunk {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) | Chunk::Answer(v) => v,
            Chunk::Shared(a) => a,
            Chunk::Static(s) => s,
        }
    }
}

use crate::proto::frame::{encode_frame, encode_frame_into, Opcode, MAX_SERVER_HEADER_LEN};

/// The most chunks one vectored write takes (`sendmsg`'s iovec count).
pub const MAX_IOVECS: usize = 64;

/// The size of one queue entry.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Chunk>();

/// How large an owned buffer may grow by taking more frames at its end.
const COALESCE_LIMIT: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    /// Unsent bytes across all chunks.
    pending: usize,
}

impl WriteQueue {
    pub fn push(&mut self, chunk: Chunk) {
        let len = chunk.bytes().len();
        if len == 0 {
            return;
        }
        self.pending += len;
        self.chunks.push_back(chunk);
    }

    /// Queues one frame, encoded at the end of the last queued buffer when
    /// that one is ours: several small answers of one loop turn (echoes,
    /// pongs) then cost one allocation and go out as one slice.
    pub fn push_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        match self.chunks.back_mut() {
            Some(Chunk::Owned(tail) | Chunk::Answer(tail))
                if tail.len() + MAX_SERVER_HEADER_LEN + payload.len() <= COALESCE_LIMIT =>
            {
                self.pending += encode_frame_into(tail, opcode, payload);
            }
            _ => self.push(Chunk::Owned(encode_frame(opcode, payload))),
        }
    }

    /// Queues what a direct write of `frames` (in order) left unsent, when
    /// the queue was empty and `written` bytes of them went out.
    pub fn push_unsent(&mut self, frames: &[Arc<[u8]>], mut written: usize) {
        debug_assert!(self.is_empty());
        for frame in frames {
            if written >= frame.len() {
                written -= frame.len();
                continue;
            }
            if self.chunks.is_empty() {
                self.front_written = written;
                self.pending += frame.len() - written;
                self.chunks.push_back(Chunk::Shared(Arc::clone(frame)));
            } else {
                self.push(Chunk::Shared(Arc::clone(frame)));
            }
            written = 0;
        }
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// What the queue holds in memory, as charged against the queue limits:
    /// the unsent bytes plus an entry for every chunk slot it has room for.
    /// A shared frame's bytes are counted in every queue that holds it,
    /// which over-counts shared memory, but its entry is real per client:
    /// a storm of small broadcasts costs more in entries than in bytes.
    pub fn held(&self) -> usize {
        self.pending + self.chunks.capacity() * ENTRY_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Drops every chunk not yet started but the answers owed to HTTP
    /// requests at the front, keeping a half-written front chunk so the
    /// stream stays on a frame boundary. Returns whether nothing
    /// half-written is left: only then can a Close follow at once.
    pub fn discard_unstarted(&mut self) -> bool {
        let started = usize::from(self.front_written > 0);
        let answers = self
            .chunks
            .iter()
            .take_while(|c| matches!(c, Chunk::Answer(_)))
            .count();
        self.chunks.truncate(answers.max(started));
        let queued: usize = self.chunks.iter().map(|c| c.bytes().len()).sum();
        self.pending = queued - self.front_written;
        self.front_written == 0
    }

    /// Writes as much as the socket takes. Returns the number of bytes
    /// written; `WouldBlock` is not an error (the rest stays queued).
    pub fn flush_to<W: Write>(&mut self, out: &mut W) -> io::Result<usize> {
        let mut total = 0;
        while !self.chunks.is_empty() {
            let attempt = if self.chunks.len() == 1 {
                // The common case needs no slice table.
                out.write(&self.chunks[0].bytes()[self.front_written..])
            } else {
                let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (i, chunk) in self.chunks.iter().take(MAX_IOVECS).enumerate() {
                    let bytes = chunk.bytes();
                    slices[i] = IoSlice::new(if i == 0 {
                        &bytes[self.front_written..]
                    } else {
                        bytes
                    });
                    count += 1;
                }
                out.write_vectored(&slices[..count])
            };
            let written = match attempt {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += written;
            self.consume(written);
        }
        Ok(total)
    }

    fn consume(&mut self, mut n: usize) {
        self.pending -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.front_written;
            if n < left {
                self.front_written += n;
                return;
            }
            n -= left;
            self.front_written = 0;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() {
            // Give back the ring buffer so an idle connection costs nothing.
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `budget` bytes per call, then blocks.
    struct Trickle {
        got: Vec<u8>,
        per_call: usize,
        calls_left: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls_left == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls_left -= 1;
            let n = buf.len().min(self.per_call);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_count() {
        let shared: Arc<[u8]> = Arc::from(&b"shared-"[..]);
        let mut q = WriteQueue::default();
        q.push(Chunk::Owned(b"abc".to_vec()));
        q.push(Chunk::Shared(shared.clone()));
        q.push(Chunk::Owned(Vec::new()));
        q.push(Chunk::Owned(b"xyz".to_vec()));
        assert_eq!(q.pending(), 13);
        let mut out = Trickle {
            got: Vec::new(),
            per_call: 2,
            calls_left: 3,
        };
        // The default write_vectored takes one slice per call: "ab", "c", "sh".
        assert_eq!(q.flush_to(&mut out).unwrap(), 5);
        assert_eq!(q.pending(), 8);
        out.calls_left = 100;
        assert_eq!(q.flush_to(&mut out).unwrap(), 8);
        assert_eq!(out.got, b"abcshared-xyz");
        assert!(q.is_empty());
        assert_eq!(q.chunks.capacity(), 0);
    }

    #[test]
    fn discarding_keeps_a_half_written_frame() {
        let mut q = WriteQueue::default();
        q.push(Chunk::Owned(b"abcd".to_vec()));
        q.push(Chunk::Owned(b"efgh".to_vec()));
        let mut out = Trickle {
            got: Vec::new(),
            per_call: 2,
            calls_left: 1,
        };
        q.flush_to(&mut out).unwrap();
        assert!(!q.discard_unstarted());
        assert_eq!(q.pending(), 2);
        out.calls_left = 10;
        q.flush_to(&mut out).unwrap();
        assert_eq!(out.got, b"abcd");
        q.push(Chunk::Owned(b"ijkl".to_vec()));
        assert!(q.discard_unstarted());
        assert!(q.is_empty());
    }

    #[test]
    fn a_discard_keeps_the_answers_owed_and_what_was_written_of_them() {
        let mut q = WriteQueue::default();
        q.push(Chunk::Answer(b"HTTP/1.1 200".to_vec()));
        q.push(Chunk::Answer(b"HTTP/1.1 101".to_vec()));
        q.push(Chunk::Owned(b"frame".to_vec()));
        assert!(q.discard_unstarted(), "nothing half-written");
        assert_eq!(q.pending(), 24, "both answers, not the frame");
        // The 200 whole, and 2 bytes of the 101.
        let mut out = Trickle {
            got: Vec::new(),
            per_call: 12,
            calls_left: 1,
        };
        q.flush_to(&mut out).unwrap();
        out.per_call = 2;
        out.calls_left = 1;
        q.flush_to(&mut out).unwrap();
        q.push(Chunk::Owned(b"frame".to_vec()));
        assert!(!q.discard_unstarted(), "the 101 is half-written");
        out.calls_left = 10;
        q.flush_to(&mut out).unwrap();
        assert_eq!(out.got, b"HTTP/1.1 200HTTP/1.1 101");
        q.push(Chunk::Owned(b"frame".to_vec()));
        assert!(q.discard_unstarted());
        assert!(q.is_empty(), "what was kept went out: nothing is kept now");
    }

    #[test]
    fn unsent_rest_of_a_direct_write_is_queued_from_the_right_byte() {
        let a: Arc<[u8]> = Arc::from(&b"abcd"[..]);
        let b: Arc<[u8]> = Arc::from(&b"efgh"[..]);
        let frames = [a, b];
        for (written, rest) in [
            (0, &b"abcdefgh"[..]),
            (3, b"defgh"),
            (4, b"efgh"),
            (6, b"gh"),
        ] {
            let mut q = WriteQueue::default();
            q.push_unsent(&frames, written);
            assert_eq!(q.pending(), rest.len());
            let mut out = Trickle {
                got: Vec::new(),
                per_call: 100,
                calls_left: 100,
            };
            q.flush_to(&mut out).unwrap();
            assert_eq!(out.got, rest, "after {written} bytes");
        }
        let mut q = WriteQueue::default();
        q.push_unsent(&frames, 8);
        assert!(q.is_empty());
    }

    #[test]
    fn small_frames_share_one_buffer_behind_the_last_owned_one() {
        let mut q = WriteQueue::default();
        q.push(Chunk::Shared(Arc::from(&b"S"[..])));
        q.push_frame(Opcode::Text, b"a");
        q.push_frame(Opcode::Binary, b"bc");
        assert_eq!(q.chunks.len(), 2, "the two frames share one buffer");
        assert_eq!(q.pending(), 1 + 3 + 4);
        let mut out = Trickle {
            got: Vec::new(),
            per_call: 100,
            calls_left: 100,
        };
        q.flush_to(&mut out).unwrap();
        assert_eq!(out.got, b"S\x81\x01a\x82\x02bc");
    }

    #[test]
    fn held_counts_entries_as_well_as_bytes() {
        let frame: Arc<[u8]> = Arc::from(&b"0123456789"[..]);
        let mut q = WriteQueue::default();
        assert_eq!(q.held(), 0);
        for _ in 0..1000 {
            q.push(Chunk::Shared(Arc::clone(&frame)));
        }
        assert_eq!(q.pending(), 10_000);
        assert!(q.held() >= 10_000 + 1000 * ENTRY_BYTES, "{}", q.held());
        let mut out = Trickle {
            got: Vec::new(),
            per_call: usize::MAX,
            calls_left: usize::MAX,
        };
        q.flush_to(&mut out).unwrap();
        assert_eq!(q.held(), 0, "an empty queue gives its ring back");
    }

    #[test]
    fn write_zero_is_an_error() {
        struct Zero;
        impl Write for Zero {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Ok(0)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut q = WriteQueue::default();
        q.push(Chunk::Owned(b"a".to_vec()));
        assert!(q.flush_to(&mut Zero).is_err());
    }
}
