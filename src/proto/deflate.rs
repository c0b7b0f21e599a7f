//! permessage-deflate payloads (RFC 7692 7.2): raw DEFLATE with the empty
//! stored block that ends a sync flush (`00 00 ff ff`) left off the wire.
//!
//! Both ends are negotiated with `no_context_takeover`, so no message ever
//! refers to an earlier one: a worker keeps one [`Deflater`] and one
//! [`Inflater`] and resets them per message, and no connection holds
//! compression state.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush appends, and what RFC 7692 7.2.1 takes off the end of a
/// compressed message (and 7.2.2 puts back before inflating).
const FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output grows by at least this much at a time while inflating.
const INFLATE_STEP: usize = 16 * 1024;

/// Compresses whole messages, one at a time, each on its own.
#[derive(Debug)]
pub struct Deflater {
    state: Compress,
}

impl Default for Deflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflater {
    pub fn new() -> Deflater {
        Deflater {
            state: Compress::new(Compression::default(), false),
        }
    }

    /// The payload of a compressed message (RSV1 set on its first frame):
    /// raw DEFLATE, sync-flushed, without the trailing `00 00 ff ff`.
    pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        self.state.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut rest = payload;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.state.total_in();
            self.state
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .expect("deflate over memory cannot fail");
            rest = &rest[(self.state.total_in() - before) as usize..];
            if rest.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&FLUSH_TAIL) {
            out.truncate(out.len() - FLUSH_TAIL.len());
        }
        out
    }
}

/// Why a compressed message was not inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the bound; inflating stopped there.
    TooBig,
    /// It is not valid DEFLATE data.
    Corrupt,
}

/// Inflates whole messages, one at a time, each on its own.
#[derive(Debug)]
pub struct Inflater {
    state: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        Inflater {
            state: Decompress::new(false),
        }
    }

    /// The message inside `compressed` (a message's payload as received,
    /// fragments joined), or [`InflateError::TooBig`] as soon as it would
    /// exceed `max` bytes: no more than `max` bytes are ever produced, so an
    /// inflate bomb costs at most that much memory and work.
    pub fn inflate(&mut self, compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        self.state.reset(false);
        let mut out = Vec::with_capacity(max.min(compressed.len().saturating_mul(4) + 64));
        for input in [compressed, &FLUSH_TAIL[..]] {
            if self.feed(input, &mut out, max)? {
                break;
            }
        }
        Ok(out)
    }

    /// Inflates all of `input` into `out`; true once the DEFLATE stream has
    /// ended (a final block), after which any further input is ignored.
    fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<bool, InflateError> {
        loop {
            if out.len() == out.capacity() && out.len() < max {
                let step = out.capacity().max(INFLATE_STEP);
                out.reserve_exact(step.min(max - out.len()));
            }
            let (in_before, out_before) = (self.state.total_in(), self.state.total_out());
            let status = if out.len() < max {
                self.state
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?
            } else {
                // Full: one more byte of output means the message is too big.
                let mut probe = [0u8; 1];
                let status = self
                    .state
                    .decompress(input, &mut probe, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                if self.state.total_out() > out_before {
                    return Err(InflateError::TooBig);
                }
                status
            };
            input = &input[(self.state.total_in() - in_before) as usize..];
            if status == Status::StreamEnd {
                return Ok(true);
            }
            let produced = self.state.total_out() > out_before;
            let consumed = self.state.total_in() > in_before;
            let room_left = out.len() < out.capacity() && out.len() < max;
            if (input.is_empty() && room_left) || (!produced && !consumed) {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(payload: &[u8]) -> Vec<u8> {
        let compressed = Deflater::new().compress(payload);
        Inflater::new().inflate(&compressed, payload.len()).unwrap()
    }

    #[test]
    fn rfc_7692_hello_example() {
        // RFC 7692 7.2.3.1: "Hello" compressed without context takeover.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(Inflater::new().inflate(&hello, 5).unwrap(), b"Hello");
        assert_eq!(Deflater::new().compress(b"Hello"), hello);
    }

    #[test]
    fn rfc_7692_stored_block_and_final_block_examples() {
        // 7.2.3.3: "Hello" in a stored (uncompressed) block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(Inflater::new().inflate(&stored, 5).unwrap(), b"Hello");
        // 7.2.3.4: a final block (BFINAL set), with and without padding.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(Inflater::new().inflate(&final_block, 5).unwrap(), b"Hello");
        // 7.2.3.6: an empty message may be a single 00 byte.
        assert_eq!(Inflater::new().inflate(&[0x00], 0).unwrap(), b"");
        assert_eq!(Inflater::new().inflate(&[], 0).unwrap(), b"");
    }

    #[test]
    fn round_trips_empty_small_and_large() {
        assert_eq!(round_trip(b""), b"");
        let json = br#"{"type":"notice","message":"hello world","data":{"n":1}}"#.repeat(200);
        assert_eq!(round_trip(&json), json);
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(round_trip(&noise), noise);
    }

    #[test]
    fn one_codec_serves_many_messages_without_context() {
        let mut deflater = Deflater::new();
        let mut inflater = Inflater::new();
        let first = deflater.compress(b"the same words again and again");
        let second = deflater.compress(b"the same words again and again");
        // No context taken over: the second is compressed like the first.
        assert_eq!(first, second);
        for _ in 0..3 {
            assert_eq!(
                inflater.inflate(&second, 100).unwrap(),
                b"the same words again and again"
            );
        }
    }

    #[test]
    fn compressed_output_drops_the_flush_tail() {
        let compressed = Deflater::new().compress(&[b'a'; 1000]);
        assert!(!compressed.ends_with(&FLUSH_TAIL));
        assert!(compressed.len() < 50);
    }

    #[test]
    fn exactly_max_passes_one_more_is_too_big() {
        let payload = vec![b'x'; 10_000];
        let compressed = Deflater::new().compress(&payload);
        let mut inflater = Inflater::new();
        assert_eq!(inflater.inflate(&compressed, 10_000).unwrap().len(), 10_000);
        assert_eq!(
            inflater.inflate(&compressed, 9_999),
            Err(InflateError::TooBig)
        );
        assert_eq!(inflater.inflate(&compressed, 0), Err(InflateError::TooBig));
        assert_eq!(inflater.inflate(&compressed, 10_000).unwrap().len(), 10_000);
    }

    #[test]
    fn inflate_bomb_stops_at_the_bound() {
        // 64 MiB of zeros compress to about 64 KiB; the bound is 64 KiB.
        let bomb = Deflater::new().compress(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        let started = std::time::Instant::now();
        let mut inflater = Inflater::new();
        assert_eq!(inflater.inflate(&bomb, 65_536), Err(InflateError::TooBig));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn corrupt_data_is_refused_and_the_inflater_recovers() {
        let mut inflater = Inflater::new();
        // BTYPE 11 is reserved.
        assert_eq!(
            inflater.inflate(&[0xff, 0xff, 0xff], 100),
            Err(InflateError::Corrupt)
        );
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflater.inflate(&hello, 5).unwrap(), b"Hello");
    }
}
