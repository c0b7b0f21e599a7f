//! Raw deflate for permessage-deflate (RFC 7692) without context takeover:
//! every message is compressed on its own.

use flate2::{Compress, Compression, FlushCompress};

#[derive(Debug)]
pub struct Deflater {
    compress: Compress,
}

impl Default for Deflater {
    fn default() -> Deflater {
        Deflater {
            compress: Compress::new(Compression::default(), false),
        }
    }
}

impl Deflater {
    /// `payload` compressed alone: raw deflate with a full flush, the
    /// trailing 00 00 ff ff removed (RFC 7692 section 7.2.1).
    pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        self.compress.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(64));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(input, &mut out, FlushCompress::Full)
                .expect("deflate never fails on a buffer");
            input = &input[(self.compress.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&[0, 0, 0xff, 0xff]) {
            out.truncate(out.len() - 4);
        }
        out
    }
}
