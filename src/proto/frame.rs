//! RFC 6455 frame headers, masking and server-side frame encoding.
//!
//! Only headers are decoded here: payloads stream through
//! [`crate::proto::message::Receiver`], so a frame never has to sit whole in a
//! buffer before it can be checked.

use super::close::CloseCode;
use super::fault::FrameError;

/// The largest header a client may send: 2 fixed bytes, 8 bytes of extended
/// length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Control frames carry at most 125 bytes (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: with permessage-deflate, the first frame of a compressed
    /// message. Whether it is allowed is the receiver's to judge, which
    /// knows what was negotiated.
    pub rsv1: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    pub payload_len: u64,
}

/// Decodes a client frame header from the start of `buf`.
///
/// Returns `Ok(None)` while more bytes are needed, and the header with its
/// encoded length once complete. Every rule that can be judged from the
/// header alone is checked here, so a bad frame is refused before its payload
/// is read.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, FrameError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    if b0 & 0x30 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(FrameError::UnknownOpcode)?;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let short_len = b1 & 0x7F;
    if opcode.is_control() && !fin {
        return Err(FrameError::FragmentedControl);
    }
    if opcode.is_control() && short_len > MAX_CONTROL_PAYLOAD as u8 {
        return Err(FrameError::ControlTooLong);
    }
    let ext_len = match short_len {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if rest.len() < ext_len + 4 {
        return Ok(None);
    }
    let (ext, rest) = rest.split_at(ext_len);
    let payload_len = match short_len {
        126 => u64::from(u16::from_be_bytes([ext[0], ext[1]])),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(ext);
            let len = u64::from_be_bytes(be);
            if len >> 63 != 0 {
                return Err(FrameError::LengthTooLong);
            }
            len
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&rest[..4]);
    let header = FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, 2 + ext_len + 4)))
}

/// XORs `data` with `mask`, as if `data` started `offset` bytes into the
/// payload. Works a word at a time because echo and chat traffic unmask every
/// byte a client sends.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut rotated = [0u8; 4];
    for (i, slot) in rotated.iter_mut().enumerate() {
        *slot = mask[(offset + i) % 4];
    }
    let word = u32::from_ne_bytes(rotated);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

/// Writes an unmasked server frame header for a final frame and returns its
/// length within the array.
/// The longest server frame header: no mask, a 64-bit length.
pub const MAX_SERVER_HEADER_LEN: usize = 10;

pub fn encode_header(opcode: Opcode, payload_len: usize) -> ([u8; MAX_SERVER_HEADER_LEN], usize) {
    let mut head = [0u8; MAX_SERVER_HEADER_LEN];
    head[0] = 0x80 | opcode.bits();
    let len = match payload_len {
        0..=125 => {
            head[1] = payload_len as u8;
            2
        }
        126..=0xFFFF => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    };
    (head, len)
}

/// A complete unmasked server frame.
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MAX_SERVER_HEADER_LEN + payload.len());
    encode_frame_into(&mut frame, opcode, payload);
    frame
}

/// Appends a server frame to `out`; returns its length.
pub fn encode_frame_into(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) -> usize {
    let (head, head_len) = encode_header(opcode, payload.len());
    out.extend_from_slice(&head[..head_len]);
    out.extend_from_slice(payload);
    head_len + payload.len()
}

/// A Close frame carrying `code` and a reason cut to fit a control frame.
pub fn encode_close(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(Opcode::Close, &payload)
}

/// A masked client frame, for the unit tests of this module and of the
/// message receiver.
#[cfg(test)]
pub(crate) fn masked(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        0..=125 => out.push(0x80 | payload.len() as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let mut body = payload.to_vec();
    apply_mask(&mut body, mask, 0);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_seven_bit_length() {
        let frame = masked(0x81, b"hi", [1, 2, 3, 4]);
        let (h, n) = decode_header(&frame).unwrap().unwrap();
        assert_eq!(n, 6);
        assert!(h.fin);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.payload_len, 2);
        assert_eq!(h.mask, [1, 2, 3, 4]);
    }

    #[test]
    fn decodes_sixteen_and_sixty_four_bit_lengths() {
        let frame = masked(0x82, &vec![7u8; 300], [9, 9, 9, 9]);
        let (h, n) = decode_header(&frame).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (300, 8));
        let frame = masked(0x82, &vec![7u8; 70_000], [9, 9, 9, 9]);
        let (h, n) = decode_header(&frame).unwrap().unwrap();
        assert_eq!((h.payload_len, n), (70_000, 14));
    }

    #[test]
    fn waits_for_every_header_byte() {
        let frame = masked(0x82, &vec![0u8; 70_000], [1, 2, 3, 4]);
        for cut in 0..14 {
            assert_eq!(decode_header(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(decode_header(&frame[..14]).unwrap().is_some());
    }

    #[test]
    fn rejects_unmasked_frames() {
        assert_eq!(
            decode_header(&[0x81, 0x02, b'h', b'i']),
            Err(FrameError::Unmasked)
        );
    }

    #[test]
    fn rejects_reserved_bits_2_and_3_and_passes_rsv1_on() {
        for rsv in [0x10u8, 0x20, 0x30, 0x70] {
            let frame = masked(0x81 | rsv, b"x", [0; 4]);
            assert_eq!(decode_header(&frame), Err(FrameError::ReservedBits));
        }
        let frame = masked(0xC1, b"x", [0; 4]);
        let (header, _) = decode_header(&frame).unwrap().unwrap();
        assert!(header.rsv1 && header.fin);
        let (header, _) = decode_header(&masked(0x81, b"x", [0; 4])).unwrap().unwrap();
        assert!(!header.rsv1);
    }

    #[test]
    fn rejects_unknown_opcodes() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let frame = masked(0x80 | op, b"", [0; 4]);
            assert_eq!(decode_header(&frame), Err(FrameError::UnknownOpcode));
        }
    }

    #[test]
    fn rejects_fragmented_or_oversized_control_frames() {
        let frame = masked(0x09, b"", [0; 4]);
        assert_eq!(decode_header(&frame), Err(FrameError::FragmentedControl));
        let frame = masked(0x89, &[0u8; 126], [0; 4]);
        assert_eq!(decode_header(&frame), Err(FrameError::ControlTooLong));
        let frame = masked(0x89, &[0u8; 125], [0; 4]);
        assert!(decode_header(&frame).unwrap().is_some());
    }

    #[test]
    fn rejects_length_with_high_bit() {
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
        frame.extend_from_slice(&[0; 4]);
        assert_eq!(decode_header(&frame), Err(FrameError::LengthTooLong));
    }

    #[test]
    fn mask_is_its_own_inverse_at_any_offset() {
        let original: Vec<u8> = (0..=255u8).collect();
        for offset in 0..4 {
            for len in [0usize, 1, 3, 7, 8, 9, 31, 256] {
                let mut data = original[..len].to_vec();
                apply_mask(&mut data, [0xA1, 0xB2, 0xC3, 0xD4], offset);
                let expected: Vec<u8> = original[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ [0xA1, 0xB2, 0xC3, 0xD4][(offset + i) % 4])
                    .collect();
                assert_eq!(data, expected);
                apply_mask(&mut data, [0xA1, 0xB2, 0xC3, 0xD4], offset);
                assert_eq!(data, &original[..len]);
            }
        }
    }

    #[test]
    fn encodes_every_length_form() {
        assert_eq!(encode_frame(Opcode::Text, b"hi"), vec![0x81, 2, b'h', b'i']);
        let f = encode_frame(Opcode::Binary, &[0u8; 126]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 126]);
        let f = encode_frame(Opcode::Binary, &[0u8; 65_536]);
        assert_eq!(&f[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(f.len(), 65_546);
    }

    #[test]
    fn close_frame_carries_code_and_truncated_reason() {
        let f = encode_close(CloseCode::GOING_AWAY, "bye");
        assert_eq!(f, vec![0x88, 5, 0x03, 0xE9, b'b', b'y', b'e']);
        let long = "é".repeat(100);
        let f = encode_close(CloseCode::NORMAL, &long);
        assert!(f.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}
