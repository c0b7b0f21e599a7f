//! The bytes waiting to be written to one connection.
//!
//! A broadcast frame is encoded once and shared (`Arc<[u8]>`) by every
//! recipient's queue, and a turn's frames for everyone are queued by
//! segment (`Batch`); queued chunks are written together with one `sendmsg`.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;

use super::batch::{Batch, Segment, MAX_IOVECS};
use crate::proto::frame::{encode_frame, encode_frame_into, Opcode, MAX_SERVER_HEADER_LEN};

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
    /// Frames of a turn's batch, shared with every queue left behind by it,
    /// from frame `next` on (the ones before it are written).
    Frames {
        segment: Segment,
        next: usize,
    },
}

impl Chunk {
    /// The bytes still to go, from the chunk's first unwritten frame.
    fn len(&self) -> usize {
        match self {
            Chunk::Frames { segment, next } => segment[*next..].iter().map(|f| f.len()).sum(),
            other => other.piece().len(),
        }
    }

    /// The frame (or buffer) being written.
    fn piece(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) | Chunk::Answer(v) => v,
            Chunk::Shared(a) => a,
            Chunk::Static(s) => s,
            Chunk::Frames { segment, next } => &segment[*next],
        }
    }

    /// Everything still to go, piece by piece.
    fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        let (frames, one) = match self {
            Chunk::Frames { segment, next } => (&segment[*next..], None),
            other => (&[][..], Some(other.piece())),
        };
        one.into_iter().chain(frames.iter().map(|f| &f[..]))
    }

    /// Memory the chunk keeps beyond the bytes still to go: an owned
    /// buffer's spare capacity, and the written frames of a segment with
    /// the segment's own list.
    fn kept(&self) -> usize {
        match self {
            Chunk::Owned(v) | Chunk::Answer(v) => v.capacity() - v.len(),
            Chunk::Shared(_) | Chunk::Static(_) => 0,
            Chunk::Frames { segment, next } => {
                let written: usize = segment[..*next].iter().map(|f| f.len()).sum();
                written + segment.len() * std::mem::size_of::<Arc<[u8]>>()
            }
        }
    }
}

/// The size of one queue entry.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Chunk>();

/// How large an owned buffer may grow by taking more frames at its end.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Two 32-bit counts keep a connection as small as it was before `kept`
/// (see `net::sockets`' compactness test): a piece is one frame or one
/// answer (messages are at most `u32::MAX` bytes, see `Receiver`), and
/// what a queue keeps beyond its unsent bytes is a fraction of them, so
/// neither comes near 4 GiB; they saturate rather than wrap if they did.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Chunk>,
    /// Unsent bytes across all chunks.
    pending: usize,
    /// Bytes of the front chunk's piece already written.
    front_written: u32,
    /// What the chunks keep beyond their unsent bytes (see `Chunk::kept`).
    kept: u32,
}

fn narrow(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl WriteQueue {
    pub fn push(&mut self, chunk: Chunk) {
        let len = chunk.len();
        if len == 0 {
            return;
        }
        self.pending += len;
        self.keep(chunk.kept());
        self.chunks.push_back(chunk);
    }

    /// Queues one frame, encoded at the end of the last queued buffer when
    /// that one is ours: several small answers of one loop turn (echoes,
    /// pongs) then cost one allocation and go out as one slice.
    pub fn push_frame(&mut self, opcode: Opcode, payload: &[u8]) {
        match self.chunks.back_mut() {
            Some(tail @ (Chunk::Owned(_) | Chunk::Answer(_)))
                if tail.piece().len() + MAX_SERVER_HEADER_LEN + payload.len() <= COALESCE_LIMIT =>
            {
                let spare = tail.kept();
                let (Chunk::Owned(buffer) | Chunk::Answer(buffer)) = tail else {
                    unreachable!("matched above")
                };
                self.pending += encode_frame_into(buffer, opcode, payload);
                let spare_now = tail.kept();
                self.release(spare);
                self.keep(spare_now);
            }
            _ => self.push(Chunk::Owned(encode_frame(opcode, payload))),
        }
    }

    /// Queues frames of `batch` from frame `from` on, of which a direct
    /// write to an empty queue already took `written` bytes: one entry per
    /// segment, a lone frame left of a segment as itself.
    pub fn push_batch(&mut self, batch: &Batch, from: usize, mut written: usize) {
        debug_assert!(written == 0 || self.is_empty());
        for (segment, mut next) in batch.from(from) {
            while next < segment.len() && written >= segment[next].len() {
                written -= segment[next].len();
                next += 1;
            }
            if next == segment.len() {
                continue;
            }
            let front = self.chunks.is_empty();
            let chunk = if next + 1 == segment.len() {
                Chunk::Shared(Arc::clone(&segment[next]))
            } else {
                Chunk::Frames {
                    segment: Arc::clone(segment),
                    next,
                }
            };
            self.push(chunk);
            if front {
                self.front_written = narrow(written);
                self.pending -= written;
            }
            written = 0;
        }
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    /// What the queue holds in memory, as charged against the queue limits:
    /// the unsent bytes, an entry for every chunk slot it has room for, and
    /// what its chunks keep beyond their unsent bytes (spare capacity,
    /// written frames of a shared segment). A shared frame's bytes are
    /// counted in every queue that holds it, which over-counts shared
    /// memory, but its entry is real per client: a storm of small
    /// broadcasts costs more in entries than in bytes.
    pub fn held(&self) -> usize {
        self.pending + self.chunks.capacity() * ENTRY_BYTES + self.kept as usize
    }

    fn keep(&mut self, bytes: usize) {
        self.kept = self.kept.saturating_add(narrow(bytes));
    }

    fn release(&mut self, bytes: usize) {
        self.kept = self.kept.saturating_sub(narrow(bytes));
    }

    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Drops every chunk not yet started but the answers owed to HTTP
    /// requests at the front, keeping a half-written front piece so the
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
        if let Some(front @ Chunk::Frames { .. }) = self.chunks.front_mut() {
            if let Chunk::Frames { segment, next } = front {
                *front = Chunk::Shared(Arc::clone(&segment[*next]));
            }
        }
        let queued: usize = self.chunks.iter().map(Chunk::len).sum();
        self.pending = queued - self.front_written as usize;
        self.kept = narrow(self.chunks.iter().map(Chunk::kept).sum());
        self.front_written == 0
    }

    /// Writes as much as the socket takes. Returns the number of bytes
    /// written; `WouldBlock` is not an error (the rest stays queued).
    pub fn flush_to<W: Write>(&mut self, out: &mut W) -> io::Result<usize> {
        let mut total = 0;
        while !self.chunks.is_empty() {
            let attempt = match self.chunks.front() {
                // The common case needs no slice table.
                Some(
                    only @ (Chunk::Owned(_)
                    | Chunk::Answer(_)
                    | Chunk::Shared(_)
                    | Chunk::Static(_)),
                ) if self.chunks.len() == 1 => {
                    out.write(&only.piece()[self.front_written as usize..])
                }
                _ => {
                    let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
                    let pieces = self.chunks.iter().flat_map(Chunk::pieces);
                    let mut count = 0;
                    for (slot, piece) in slices.iter_mut().zip(pieces) {
                        let skip = if count == 0 {
                            self.front_written as usize
                        } else {
                            0
                        };
                        *slot = IoSlice::new(&piece[skip..]);
                        count += 1;
                    }
                    out.write_vectored(&slices[..count])
                }
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
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let left = front.piece().len() - self.front_written as usize;
            if n < left {
                self.front_written += narrow(n);
                return;
            }
            n -= left;
            self.front_written = 0;
            let written = match front {
                Chunk::Frames { segment, next } if *next + 1 < segment.len() => {
                    *next += 1;
                    Some(segment[*next - 1].len())
                }
                _ => None,
            };
            match written {
                Some(frame) => self.keep(frame),
                None => {
                    if let Some(chunk) = self.chunks.pop_front() {
                        self.release(chunk.kept());
                    }
                }
            }
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
    use crate::conn::Batch;

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
            q.push_batch(&Batch::new(&frames), 0, written);
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
        q.push_batch(&Batch::new(&frames), 0, 8);
        assert!(q.is_empty());
        assert_eq!(q.held(), 0);
    }

    #[test]
    fn a_batch_left_behind_is_one_entry_per_segment_and_goes_out_in_order() {
        let frames: Vec<Arc<[u8]>> = (0..200u8).map(|i| Arc::from(vec![i; 1_000])).collect();
        let batch = Batch::new(&frames);
        let mut q = WriteQueue::default();
        q.push(Chunk::Static(b"own"));
        q.push_batch(&batch, 10, 0);
        assert_eq!(q.chunks.len(), 1 + 4, "the own bytes, then four segments");
        assert_eq!(q.pending(), 3 + 190 * 1_000);
        let mut out = Trickle {
            got: Vec::new(),
            per_call: 700,
            calls_left: 40,
        };
        q.flush_to(&mut out).unwrap();
        let expected: Vec<u8> = b"own"
            .iter()
            .copied()
            .chain((10..200u8).flat_map(|i| [i; 1_000]))
            .collect();
        assert_eq!(out.got, &expected[..out.got.len()]);
        let kept = q.held() - q.pending() - q.chunks.capacity() * ENTRY_BYTES;
        assert!(kept > 0, "the written frames of the front segment are kept");
        out.calls_left = usize::MAX;
        q.flush_to(&mut out).unwrap();
        assert_eq!(out.got, expected);
        assert_eq!(q.held(), 0, "nothing kept once all is written");
    }

    #[test]
    fn a_discard_keeps_only_the_half_written_frame_of_a_segment() {
        let frames: Vec<Arc<[u8]>> = vec![Arc::from(&b"abcd"[..]), Arc::from(&b"efgh"[..])];
        let mut q = WriteQueue::default();
        q.push_batch(&Batch::new(&frames), 0, 2);
        assert_eq!(q.pending(), 6);
        assert!(!q.discard_unstarted(), "cd is owed");
        assert_eq!(q.pending(), 2);
        let mut out = Trickle {
            got: Vec::new(),
            per_call: 100,
            calls_left: 100,
        };
        q.flush_to(&mut out).unwrap();
        assert_eq!(out.got, b"cd");
        assert_eq!(q.held(), 0);
    }

    #[test]
    fn spare_capacity_of_owned_buffers_is_held() {
        let mut q = WriteQueue::default();
        q.push(Chunk::Owned(Vec::with_capacity(1000)));
        assert_eq!(q.held(), 0, "an empty buffer is not queued");
        let mut buffer = Vec::with_capacity(1000);
        buffer.push(b'x');
        q.push(Chunk::Owned(buffer));
        assert!(q.held() >= 1000, "{}", q.held());
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
