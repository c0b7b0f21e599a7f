//! Client-to-server WebSocket bytes through `frame::decode_header` and
//! `message::Receiver`.
//!
//! The whole input is the byte stream. The first two bytes also seed the
//! choice of split points, so the same stream is fed whole, in pseudo-random
//! chunks (including empty feeds), and one byte at a time, and every way of
//! feeding it must give the same messages and the same error.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - nothing panics;
//! - `decode_header`: a header is at most `MAX_HEADER_LEN` bytes and no longer
//!   than the input, decoding exactly its bytes gives the same header, every
//!   shorter prefix is `Ok(None)`, control frames are final and at most 125
//!   bytes, lengths are below 2^63, and `Ok(None)` only when fewer than
//!   `MAX_HEADER_LEN` bytes were given;
//! - `Receiver::feed`: never reports more bytes used than it was given, makes
//!   progress on non-empty input, and `Ok(None)` means it used everything;
//! - after an error or a Close, it uses everything and returns `Ok(None)`;
//! - Text is valid UTF-8, Text/Binary are at most `max`, Ping/Pong at most
//!   125 bytes, a Close code is `is_valid_on_wire()`, and the codes of errors
//!   are ones a server may send;
//! - whole, chunked and byte-by-byte feeding give the same outcome sequence;
//! - all of the above with permessage-deflate negotiated too, where RSV1
//!   frames are inflated (within `max`) instead of refused.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsnotify::proto::close::CloseCode;
use wsnotify::proto::deflate::Inflater;
use wsnotify::proto::frame::{decode_header, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use wsnotify::proto::message::{Message, Receiver};

/// The message limit of the main runs, small enough that the fuzzer reaches it.
const MAX: usize = 4096;
/// A second, tiny limit so fragment accounting against the limit is exercised
/// by short inputs too.
const TINY_MAX: usize = 24;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Message(Message),
    Error(CloseCode),
}

fuzz_target!(|data: &[u8]| {
    check_decode_header(data);

    let seed = match data {
        [a, b, ..] => u32::from(*a) << 8 | u32::from(*b),
        [a] => u32::from(*a),
        [] => 0,
    };

    for deflate in [false, true] {
        for max in [MAX, TINY_MAX] {
            let whole = run(data, &[data.len()], max, deflate);
            let random = run(data, &random_chunks(seed, data.len()), max, deflate);
            assert_eq!(whole, random, "whole vs chunked (max {max})");
            if max == MAX {
                let bytewise = run(data, &vec![1; data.len()], max, deflate);
                assert_eq!(whole, bytewise, "whole vs byte-by-byte (max {max})");
            }
        }
    }
});

fn check_decode_header(data: &[u8]) {
    match decode_header(data) {
        Ok(None) => assert!(
            data.len() < MAX_HEADER_LEN,
            "Ok(None) with a full header's bytes"
        ),
        Err(error) => assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR),
        Ok(Some((header, len))) => {
            assert!(
                len <= data.len() && len <= MAX_HEADER_LEN,
                "header length {len}"
            );
            assert!(matches!(len, 6 | 8 | 14), "header length {len}");
            assert!(header.payload_len < 1 << 63);
            if header.opcode.is_control() {
                assert!(header.fin);
                assert!(header.payload_len <= MAX_CONTROL_PAYLOAD as u64);
            }
            assert_eq!(decode_header(&data[..len]), Ok(Some((header, len))));
            for cut in 0..len {
                assert_eq!(
                    decode_header(&data[..cut]),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
        }
    }
}

/// Chunk lengths (0 meaning an empty feed) covering `total` bytes, from a
/// small xorshift generator seeded by the first input bytes.
fn random_chunks(seed: u32, total: usize) -> Vec<usize> {
    const SPANS: [u32; 8] = [1, 2, 3, 5, 8, 15, 64, 300];
    let mut state = seed.wrapping_mul(0x9E37_79B9) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let span = SPANS[(seed & 7) as usize];
    let mut chunks = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = (next() % (span + 1)) as usize;
        let n = n.min(left);
        chunks.push(n);
        left -= n;
    }
    chunks
}

/// Feeds `data` in pieces of the given lengths, checking every call, and
/// returns the messages and error in order.
fn run(data: &[u8], chunks: &[usize], max: usize, deflate: bool) -> Vec<Outcome> {
    let mut rx = Receiver::new(max, deflate);
    let mut inflater = Inflater::new();
    let mut outcomes = Vec::new();
    let mut ended = false;
    let mut start = 0;
    for &n in chunks {
        let piece = &data[start..start + n];
        start += n;
        let mut at = 0;
        loop {
            let input = &piece[at..];
            let (used, result) = rx.feed(input, &mut inflater);
            assert!(used <= input.len(), "used {used} of {}", input.len());
            if ended {
                assert_eq!(used, input.len(), "bytes left after close/error");
                assert_eq!(result, Ok(None), "output after close/error");
            }
            if !input.is_empty() {
                assert!(used > 0, "no progress on {} bytes", input.len());
            }
            at += used;
            match result {
                Ok(None) => assert_eq!(at, piece.len(), "Ok(None) left input unread"),
                Ok(Some(message)) => {
                    check_message(&message, max);
                    // Input after a Close is handed back (the caller judges
                    // a peer that keeps sending); the next feed swallows it.
                    if matches!(message, Message::Close(_)) {
                        ended = true;
                    }
                    outcomes.push(Outcome::Message(message));
                }
                Err(error) => {
                    let code = error.close_code();
                    assert!(code.is_valid_on_wire(), "error code {code:?}");
                    assert!(
                        [
                            CloseCode::PROTOCOL_ERROR,
                            CloseCode::INVALID_PAYLOAD,
                            CloseCode::MESSAGE_TOO_BIG
                        ]
                        .contains(&code),
                        "unexpected error code {code:?}"
                    );
                    assert_eq!(at, piece.len(), "error left input unread");
                    ended = true;
                    outcomes.push(Outcome::Error(code));
                }
            }
            if at == piece.len() {
                break;
            }
        }
    }
    assert_eq!(start, data.len());
    if ended {
        // A closed receiver swallows anything, including an empty feed.
        assert_eq!(rx.feed(data, &mut inflater), (data.len(), Ok(None)));
        assert_eq!(rx.feed(&[], &mut inflater), (0, Ok(None)));
    }
    outcomes
}

fn check_message(message: &Message, max: usize) {
    match message {
        Message::Text(text) => {
            assert!(text.len() <= max, "Text of {} > {max}", text.len());
        }
        Message::Binary(data) => assert!(data.len() <= max, "Binary of {} > {max}", data.len()),
        Message::Ping(data) | Message::Pong(data) => {
            assert!(
                data.len() <= MAX_CONTROL_PAYLOAD,
                "control payload {}",
                data.len()
            )
        }
        Message::Close(Some(code)) => assert!(code.is_valid_on_wire(), "close code {code:?}"),
        Message::Close(None) => {}
    }
}
