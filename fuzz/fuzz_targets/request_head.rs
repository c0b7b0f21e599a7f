//! Arbitrary bytes as the start of an HTTP connection: `http::parse_head`,
//! then `http::body_length` and `handshake::validate` on what it parsed.
//!
//! Invariants (a violation panics, which libFuzzer reports as a crash):
//! - nothing panics;
//! - `Complete { len }` has `len <= input.len()` and `len <= MAX_HEAD_BYTES`;
//! - parsing exactly the head's `len` bytes gives the same request and length
//!   (what follows the head does not change it);
//! - every shorter prefix of a complete head is `Partial` or `Invalid`, never
//!   a `Complete`. (The stronger property the connection loop relies on, that
//!   such a prefix is always `Partial`, is checked too: a head split across
//!   reads must not be refused.)
//! - `Invalid` carries 400, 431 or 505, and `Partial` only below
//!   `MAX_HEAD_BYTES`;
//! - `body_length` gives `Fixed(n)` with `n <= MAX_BODY_BYTES`, or 400, 411
//!   or 413;
//! - a successful `validate` returns 28 characters of standard base64 (27
//!   plus one `=` pad: a 20-byte SHA-1) equal to `accept_key` of the request's
//!   key; a refusal has a 4xx status and its response encodes without
//!   panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsnotify::proto::handshake::{accept_key, validate};
use wsnotify::proto::http::{
    body_length, parse_head, BodyLength, Head, Request, MAX_BODY_BYTES, MAX_HEAD_BYTES,
};

/// Up to this head length every prefix is re-parsed; above it, a sample.
const ALL_PREFIXES_UP_TO: usize = 256;

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Head::Partial => assert!(
            data.len() < MAX_HEAD_BYTES,
            "Partial at {} bytes",
            data.len()
        ),
        Head::Invalid(error) => {
            let status = error.status();
            assert!(matches!(status.0, 400 | 431 | 505), "Invalid({})", status.0)
        }
        Head::Complete { request, len } => {
            assert!(len <= data.len(), "len {len} > input {}", data.len());
            assert!(len <= MAX_HEAD_BYTES, "len {len} > MAX_HEAD_BYTES");
            assert!(len > 0);
            match parse_head(&data[..len]) {
                Head::Complete {
                    request: again,
                    len: len_again,
                } => {
                    assert_eq!(len_again, len, "head alone parses to another length");
                    assert_eq!(again, request, "head alone parses to another request");
                }
                other => panic!("the head's own {len} bytes parse as {other:?}"),
            }
            for cut in prefix_cuts(len) {
                match parse_head(&data[..cut]) {
                    Head::Partial => {}
                    Head::Complete { len: l, .. } => {
                        panic!("prefix of {cut} bytes is Complete (len {l}), full head is {len}")
                    }
                    Head::Invalid(error) => panic!(
                        "prefix of {cut} bytes is Invalid({error}) but the full head of {len} is Complete"
                    ),
                }
            }
            check_request(&request);
        }
    }
});

/// Which prefix lengths to re-parse: all of them for short heads, otherwise
/// the ends (where the terminator is) and an even spread.
fn prefix_cuts(len: usize) -> Vec<usize> {
    if len <= ALL_PREFIXES_UP_TO {
        return (0..len).collect();
    }
    let mut cuts: Vec<usize> = (0..8).chain(len - 8..len).collect();
    cuts.extend((1..32).map(|i| len * i / 32));
    cuts.sort_unstable();
    cuts.dedup();
    cuts.retain(|&c| c < len);
    cuts
}

fn check_request(request: &Request) {
    match body_length(request) {
        BodyLength::Fixed(n) => assert!(n <= MAX_BODY_BYTES, "body length {n}"),
        BodyLength::Invalid(error) => {
            let status = error.status();
            assert!(
                matches!(status.0, 400 | 411 | 413),
                "body Invalid({})",
                status.0
            )
        }
    }
    let _ = request.wants_keep_alive();
    let _ = request.header("host");
    match validate(request) {
        Ok(accept) => {
            assert_eq!(accept.len(), 28, "accept value {accept:?}");
            assert!(accept.ends_with('='), "accept value {accept:?}");
            assert!(
                accept[..27]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/'),
                "accept value {accept:?}"
            );
            let key = request.header("sec-websocket-key").unwrap_or("");
            assert_eq!(accept, accept_key(key), "accept does not match the key");
        }
        Err(refusal) => {
            assert!(
                (400..500).contains(&refusal.status.0),
                "refusal {refusal:?}"
            );
            let _ = refusal.response().encode(false);
        }
    }
}
