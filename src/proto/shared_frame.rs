//! A message framed once for everyone it goes to: the plain frame, and
//! the same message compressed (permessage-deflate, RSV1 set) when that
//! pays. A client that negotiated the extension takes the compressed one,
//! every other client the plain one; both are shared, never copied.

use std::sync::Arc;

use super::deflate::Deflater;
use super::frame::{encode_frame, encode_frame_rsv1, Opcode};

/// Below this many bytes of payload a message goes plain to everyone:
/// deflate's block header and Huffman tables cost more than such a message
/// saves, and its compression costs more CPU than writing it
/// (measurements in BENCHMARKS.md).
pub const COMPRESS_FROM: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFrame {
    plain: Arc<[u8]>,
    deflated: Option<Arc<[u8]>>,
}

impl From<Arc<[u8]>> for SharedFrame {
    fn from(plain: Arc<[u8]>) -> SharedFrame {
        SharedFrame {
            plain,
            deflated: None,
        }
    }
}

impl From<Vec<u8>> for SharedFrame {
    fn from(plain: Vec<u8>) -> SharedFrame {
        SharedFrame::from(Arc::<[u8]>::from(plain))
    }
}

impl From<&[u8]> for SharedFrame {
    fn from(plain: &[u8]) -> SharedFrame {
        SharedFrame::from(Arc::<[u8]>::from(plain))
    }
}

impl SharedFrame {
    /// A text message framed plain, and compressed with `deflater` too
    /// when one is given and the message is long enough for it to pay.
    pub fn text(json: &str, deflater: Option<&mut Deflater>) -> SharedFrame {
        let plain: Arc<[u8]> = encode_frame(Opcode::Text, json.as_bytes()).into();
        let deflated = deflater
            .filter(|_| json.len() >= COMPRESS_FROM)
            .map(|deflater| deflater.compress(json.as_bytes()))
            .filter(|compressed| compressed.len() < json.len())
            .map(|compressed| encode_frame_rsv1(Opcode::Text, &compressed).into());
        SharedFrame { plain, deflated }
    }

    /// The frame for a client that negotiated permessage-deflate
    /// (`deflate`) or not.
    pub fn for_client(&self, deflate: bool) -> &Arc<[u8]> {
        match &self.deflated {
            Some(deflated) if deflate => deflated,
            _ => &self.plain,
        }
    }

    pub fn plain(&self) -> &Arc<[u8]> {
        &self.plain
    }

    pub fn is_compressed(&self) -> bool {
        self.deflated.is_some()
    }

    /// The bytes both variants hold: what keeping this frame costs.
    pub fn bytes(&self) -> usize {
        self.plain.len() + self.deflated.as_ref().map_or(0, |d| d.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::deflate::Inflater;

    fn inflate(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
        let (len, head) = match frame[1] {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        assert_eq!(frame.len(), head + len);
        Inflater::default()
            .inflate(&frame[head..], 1 << 20)
            .unwrap()
    }

    #[test]
    fn a_long_message_has_both_variants_and_each_client_its_own() {
        let json = format!(
            r#"{{"type":"notification","message":"{}"}}"#,
            "abc ".repeat(80)
        );
        let frame = SharedFrame::text(&json, Some(&mut Deflater::default()));
        assert!(frame.is_compressed());
        assert_eq!(
            &frame.for_client(false)[4..],
            json.as_bytes(),
            "126..=65535 bytes"
        );
        let deflated = frame.for_client(true);
        assert!(deflated.len() < json.len() / 4);
        assert_eq!(inflate(deflated), json.as_bytes());
        assert_eq!(frame.bytes(), frame.plain().len() + deflated.len());
    }

    #[test]
    fn short_messages_and_no_deflater_go_plain_to_everyone() {
        let short = r#"{"type":"chat","message":"hi"}"#;
        let frame = SharedFrame::text(short, Some(&mut Deflater::default()));
        assert!(!frame.is_compressed());
        assert!(Arc::ptr_eq(frame.for_client(true), frame.plain()));
        let long = "x".repeat(1000);
        assert!(!SharedFrame::text(&long, None).is_compressed());
    }

    /// What compressing costs and saves by size, for the threshold and the
    /// choice for messages to one client (BENCHMARKS.md): run with
    /// `cargo test --release --lib compress_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn compress_cost_by_size() {
        let words = "order=48213 status=shipped city=Lisbon amount=129.95 currency=EUR user=ann ";
        let mut deflater = Deflater::default();
        for size in [32, 64, 96, 128, 160, 256, 300, 512, 1000, 3000] {
            let head = r#"{"type":"notification","time":"2026-12-06T23:40:00.123Z","message":""#;
            let mut json = head.to_owned();
            let mut i = 0u64;
            while json.len() < size.max(head.len() + 2) - 2 {
                i = i
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let word = &words[(i >> 60) as usize * 4..][..5];
                json.push_str(word);
                json.push_str(&((i >> 40) % 1000).to_string());
            }
            json.truncate(size.max(head.len() + 2) - 2);
            json.push_str(r#""}"#);
            let rounds = 20_000;
            let start = std::time::Instant::now();
            let mut out = 0;
            for _ in 0..rounds {
                out = deflater
                    .compress(std::hint::black_box(json.as_bytes()))
                    .len();
            }
            let each = start.elapsed() / rounds;
            println!(
                "{:5} bytes -> {:5} ({:.2}x) in {:?}",
                json.len(),
                out,
                json.len() as f64 / out as f64,
                each
            );
        }
    }
}
