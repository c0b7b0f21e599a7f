//! One loop turn's frames for everyone, cut into segments that the queues
//! of clients left behind share.
//!
//! A client whose socket does not take the whole batch keeps the rest in
//! its queue. Queued frame by frame, a turn of 7,000 short chats put 7,000
//! entries (32 bytes each) into each of 5,000 queues, 1.1 GB for one pass
//! before any bound looked at it; queued by segment, a queue takes one
//! entry per 64 KiB of frames, and a segment keeps at most that (or one
//! larger frame) alive for a queue that has sent part of it.

use std::io::IoSlice;
use std::sync::Arc;

/// The most slices one vectored write takes (`sendmsg`'s iovec count).
pub const MAX_IOVECS: usize = 64;

/// The most frame bytes in one segment (a larger frame is a segment of its
/// own).
pub const SEGMENT_BYTES: usize = 64 * 1024;

/// Frames of a batch, shared by the queues that hold them.
pub type Segment = Arc<[Arc<[u8]>]>;

#[derive(Debug, Default)]
pub struct Batch {
    segments: Vec<Segment>,
    /// Frames in all segments.
    len: usize,
}

impl Batch {
    /// The frames, in order, cut into segments.
    pub fn new(frames: &[Arc<[u8]>]) -> Batch {
        let mut segments = Vec::new();
        let mut start = 0;
        while start < frames.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < frames.len() && (end == start || bytes + frames[end].len() <= SEGMENT_BYTES)
            {
                bytes += frames[end].len();
                end += 1;
            }
            segments.push(Arc::from(&frames[start..end]));
            start = end;
        }
        Batch {
            segments,
            len: frames.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments from frame `from` on: the segment that holds it with
    /// the index of the frame in it, then the whole segments after it.
    pub fn from(&self, mut from: usize) -> impl Iterator<Item = (&Segment, usize)> {
        self.segments.iter().filter_map(move |segment| {
            if from >= segment.len() {
                from -= segment.len();
                return None;
            }
            let at = from;
            from = 0;
            Some((segment, at))
        })
    }

    /// Slices for up to `MAX_IOVECS` frames from frame `from` on, and how
    /// many there are.
    pub fn slices(&self, from: usize) -> ([IoSlice<'_>; MAX_IOVECS], usize) {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let frames = self.from(from).flat_map(|(segment, at)| &segment[at..]);
        let mut count = 0;
        for (slot, frame) in slices.iter_mut().zip(frames) {
            *slot = IoSlice::new(frame);
            count += 1;
        }
        (slices, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> Vec<Arc<[u8]>> {
        sizes.iter().map(|&n| Arc::from(vec![b'x'; n])).collect()
    }

    #[test]
    fn segments_hold_at_most_their_bytes_or_one_larger_frame() {
        let batch = Batch::new(&frames(&[1_000; 200]));
        let sizes: Vec<usize> = batch.segments.iter().map(|s| s.len()).collect();
        assert_eq!(sizes, [65, 65, 65, 5]);
        let batch = Batch::new(&frames(&[40_000, 30_000, 100_000, 1, 1]));
        let sizes: Vec<usize> = batch.segments.iter().map(|s| s.len()).collect();
        assert_eq!(sizes, [1, 1, 1, 2], "a larger frame alone");
        assert_eq!(batch.len(), 5);
    }

    #[test]
    fn from_a_frame_on_the_first_segment_is_entered_at_its_index() {
        let batch = Batch::new(&frames(&[1_000; 130]));
        let found: Vec<(usize, usize)> = batch.from(70).map(|(s, at)| (s.len(), at)).collect();
        assert_eq!(found, [(65, 5)]);
        assert_eq!(batch.slices(70).1, 60);
        assert_eq!(batch.slices(0).1, MAX_IOVECS, "one sendmsg's worth");
        assert_eq!(batch.from(130).count(), 0);
    }
}
