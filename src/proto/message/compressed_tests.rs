//! Compressed messages (permessage-deflate, RFC 7692 6 and 7.2): where
//! RSV1 may stand, fragments, the bound after inflating, UTF-8 after
//! inflating.

use super::tests::run_with as run;
use super::*;
use crate::proto::deflate::Deflater;
use crate::proto::frame::masked;

const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
const RSV1: u8 = 0x40;

fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    masked(b0, payload, MASK)
}

fn deflated(payload: &[u8]) -> Vec<u8> {
    Deflater::new().compress(payload)
}

/// Feeds `bytes` whole and in chunks of every size up to 20; all must
/// agree. Returns the messages and the error's close code.
fn every_split(bytes: &[u8], max: usize, deflate: bool) -> (Vec<Message>, Option<CloseCode>) {
    let whole = run(bytes, bytes.len(), max, deflate);
    for chunk in 1..bytes.len().min(20) {
        assert_eq!(run(bytes, chunk, max, deflate), whole, "chunk size {chunk}");
    }
    whole
}

#[test]
fn a_compressed_text_and_binary_message_is_inflated() {
    let mut bytes = frame(0x80 | RSV1 | 1, &deflated("κόσμε ".repeat(50).as_bytes()));
    bytes.extend(frame(0x80 | RSV1 | 2, &deflated(&[7; 3000])));
    bytes.extend(frame(0x81, b"plain"));
    let (msgs, err) = every_split(&bytes, 1 << 16, true);
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        vec![
            Message::Text("κόσμε ".repeat(50)),
            Message::Binary(vec![7; 3000]),
            Message::Text("plain".into()),
        ]
    );
}

#[test]
fn rfc_7692_hello_in_one_frame_and_in_two_fragments() {
    // 7.2.3.1 and 7.2.3.2.
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let (msgs, _) = every_split(&frame(0x80 | RSV1 | 1, &hello), 64, true);
    assert_eq!(msgs, vec![Message::Text("Hello".into())]);
    let mut bytes = frame(RSV1 | 1, &hello[..3]);
    bytes.extend(frame(0x80, &hello[3..]));
    let (msgs, err) = every_split(&bytes, 64, true);
    assert_eq!((msgs, err), (vec![Message::Text("Hello".into())], None));
}

#[test]
fn fragments_of_a_compressed_message_are_joined_then_inflated_around_control_frames() {
    let text = "a compressed message in many fragments; ".repeat(40);
    let compressed = deflated(text.as_bytes());
    let parts: Vec<&[u8]> = compressed.chunks(7).collect();
    let mut bytes = frame(RSV1 | 1, parts[0]);
    for (i, part) in parts[1..].iter().enumerate() {
        if i == 2 {
            bytes.extend(frame(0x89, b"ping"));
        }
        let fin = if i == parts.len() - 2 { 0x80 } else { 0 };
        bytes.extend(frame(fin, part));
    }
    let (msgs, err) = every_split(&bytes, 1 << 16, true);
    assert_eq!(err, None);
    assert_eq!(
        msgs,
        vec![Message::Ping(b"ping".to_vec()), Message::Text(text)]
    );
}

#[test]
fn rsv1_without_negotiation_is_a_protocol_error() {
    let bytes = frame(0x80 | RSV1 | 1, &deflated(b"x"));
    assert_eq!(
        every_split(&bytes, 64, false).1,
        Some(CloseCode::PROTOCOL_ERROR)
    );
}

#[test]
fn rsv1_on_a_continuation_is_a_protocol_error() {
    let compressed = deflated(b"hello hello hello");
    let mut bytes = frame(RSV1 | 1, &compressed[..4]);
    bytes.extend(frame(0x80 | RSV1, &compressed[4..]));
    assert_eq!(
        every_split(&bytes, 64, true).1,
        Some(CloseCode::PROTOCOL_ERROR)
    );
    // Also when the message was not compressed.
    let mut bytes = frame(1, b"hel");
    bytes.extend(frame(0x80 | RSV1, b"lo"));
    assert_eq!(
        every_split(&bytes, 64, true).1,
        Some(CloseCode::PROTOCOL_ERROR)
    );
}

#[test]
fn rsv1_on_a_control_frame_is_a_protocol_error() {
    for opcode in [0x8, 0x9, 0xA] {
        let bytes = frame(0x80 | RSV1 | opcode, b"");
        assert_eq!(
            every_split(&bytes, 64, true).1,
            Some(CloseCode::PROTOCOL_ERROR),
            "{opcode}"
        );
    }
}

#[test]
fn rsv2_and_rsv3_stay_protocol_errors_with_deflate() {
    for rsv in [0x20, 0x10] {
        let bytes = frame(0x80 | rsv | 1, b"x");
        assert_eq!(
            every_split(&bytes, 64, true).1,
            Some(CloseCode::PROTOCOL_ERROR)
        );
    }
}

#[test]
fn invalid_utf8_after_inflating_is_1007() {
    let bytes = frame(0x80 | RSV1 | 1, &deflated(b"ok \xFF not utf-8"));
    assert_eq!(
        every_split(&bytes, 64, true).1,
        Some(CloseCode::INVALID_PAYLOAD)
    );
    // A sequence cut at the end of the message.
    let bytes = frame(0x80 | RSV1 | 1, &deflated(b"abc\xE2\x82"));
    assert_eq!(
        every_split(&bytes, 64, true).1,
        Some(CloseCode::INVALID_PAYLOAD)
    );
    // Binary is not checked.
    let (msgs, err) = every_split(&frame(0x80 | RSV1 | 2, &deflated(b"\xFF")), 64, true);
    assert_eq!((msgs, err), (vec![Message::Binary(vec![0xFF])], None));
}

#[test]
fn bad_deflate_data_is_1007() {
    let bytes = frame(0x80 | RSV1 | 2, &[0xFF, 0xFF, 0xFF]);
    assert_eq!(
        every_split(&bytes, 64, true).1,
        Some(CloseCode::INVALID_PAYLOAD)
    );
}

#[test]
fn the_bound_applies_after_inflating() {
    let exact = frame(0x80 | RSV1 | 2, &deflated(&[0; 1000]));
    let (msgs, err) = every_split(&exact, 1000, true);
    assert_eq!((msgs, err), (vec![Message::Binary(vec![0; 1000])], None));
    let over = frame(0x80 | RSV1 | 2, &deflated(&[0; 1001]));
    assert_eq!(
        every_split(&over, 1000, true).1,
        Some(CloseCode::MESSAGE_TOO_BIG)
    );
}

#[test]
fn the_bound_applies_to_the_compressed_bytes_gathered() {
    // Incompressible data grows a little when deflated: the compressed
    // fragments alone pass the bound before anything is inflated.
    let noise: Vec<u8> = (0..2000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let compressed = deflated(&noise);
    assert!(compressed.len() > 1000);
    let mut rx = Receiver::new(1000, true);
    let head = &frame(RSV1 | 2, &compressed)[..8];
    assert_eq!(
        rx.feed(head, &mut Inflater::new()).1,
        Err(FrameError::MessageTooBig)
    );
}

#[test]
fn an_inflate_bomb_costs_at_most_the_bound() {
    // 4 KiB of DEFLATE that inflates to about 4 MiB (and would go on for
    // GiBs), under a 64 KiB bound.
    let mut deflater = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(8192);
    let zeros = vec![0u8; 1 << 20];
    while bomb.len() < 4096 {
        if bomb.capacity() == bomb.len() {
            bomb.reserve(8192);
        }
        deflater
            .compress_vec(&zeros, &mut bomb, flate2::FlushCompress::None)
            .unwrap();
    }
    bomb.truncate(4096);
    let started = std::time::Instant::now();
    let mut rx = Receiver::new(65_536, true);
    let mut inflater = Inflater::new();
    let (_, result) = rx.feed(&frame(0x80 | RSV1 | 2, &bomb), &mut inflater);
    assert_eq!(result, Err(FrameError::MessageTooBig));
    assert_eq!(rx.held(), 0);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn a_dropped_compressed_message_is_not_inflated() {
    let compressed = deflated(&[1; 5000]);
    let mut rx = Receiver::new(1 << 16, true);
    let mut inflater = Inflater::new();
    let first = frame(RSV1 | 2, &compressed[..10]);
    assert_eq!(rx.feed(&first, &mut inflater), (first.len(), Ok(None)));
    rx.drop_message();
    let mut rest = frame(0x80, &compressed[10..]);
    rest.extend(frame(0x88, &[0x03, 0xE8]));
    let mut input = &rest[..];
    let mut got = Vec::new();
    while !input.is_empty() {
        let (used, result) = rx.feed(input, &mut inflater);
        input = &input[used..];
        got.extend(result.unwrap());
    }
    assert_eq!(got, [Message::Close(Some(CloseCode::NORMAL))]);
}
