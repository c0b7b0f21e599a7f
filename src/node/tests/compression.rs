//! permessage-deflate through whole workers: the 101's answer on both
//! endpoints, compressed client messages taken like plain ones, `/echo`
//! answering compressed, `--compression off`, and the bound after
//! inflating.

use super::harness::*;
use crate::config::Config;
use crate::proto::deflate::{Deflater, Inflater};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn echo_config() -> Config {
    Config {
        enable_echo: true,
        ..config()
    }
}

/// A client of `path` that offered permessage-deflate; returns it and the
/// server's `Sec-WebSocket-Extensions`, if any.
fn offering(h: &mut Harness, path: &str) -> (Peer, Option<String>) {
    let peer = h.accept(0);
    let request = upgrade(path).replace("\r\n\r\n", &format!("\r\n{OFFER}\r\n"));
    h.send(peer, request.as_bytes());
    h.run();
    let response = h.response(peer).expect("an answer to the upgrade");
    assert_eq!(response.status, 101, "{response:?}");
    let agreed = response
        .header("Sec-WebSocket-Extensions")
        .map(str::to_owned);
    (peer, agreed)
}

fn compressed(payload: &[u8]) -> Vec<u8> {
    Deflater::new().compress(payload)
}

#[test]
fn echo_answers_compressed_to_a_client_that_negotiated() {
    let mut h = Harness::new(echo_config());
    let (echo, agreed) = offering(&mut h, "/echo");
    assert_eq!(agreed.as_deref(), Some(AGREED));
    h.frame(echo, 0xC1, &compressed(b"hello, compressed"));
    h.text(echo, "hello, plain");
    h.run();
    let frames = h.frames(echo);
    assert_eq!(frames.len(), 2, "{frames:?}");
    let mut inflater = Inflater::new();
    for (frame, want) in frames.iter().zip(["hello, compressed", "hello, plain"]) {
        assert!(frame.rsv1 && frame.fin && frame.opcode == 1, "{frame:?}");
        assert_eq!(
            inflater.inflate(&frame.payload, 100).unwrap(),
            want.as_bytes()
        );
    }
}

#[test]
fn a_client_that_did_not_offer_gets_plain_echoes_and_1002_for_rsv1() {
    let mut h = Harness::new(echo_config());
    let (echo, _) = h.ws(0, "/echo");
    h.text(echo, "plain");
    h.run();
    let frames = h.frames(echo);
    assert!(!frames[0].rsv1);
    assert_eq!(frames[0].payload, b"plain");
    h.frame(echo, 0xC1, &compressed(b"x"));
    h.run();
    assert_eq!(h.frames(echo)[0].close_code(), Some(1002));
}

#[test]
fn ws_negotiates_and_takes_compressed_messages_like_plain_ones() {
    let mut h = Harness::new(config());
    let (client, agreed) = offering(&mut h, "/ws");
    assert_eq!(agreed.as_deref(), Some(AGREED));
    let welcome = h.json(client);
    assert_eq!(welcome[0]["type"], "welcome");
    h.frame(client, 0xC1, &compressed(br#"{"type":"ping"}"#));
    h.run();
    let types = h.types(client);
    assert_eq!(types, ["pong"]);
}

#[test]
fn compression_off_never_negotiates() {
    let mut h = Harness::new(Config {
        compression: false,
        ..echo_config()
    });
    for path in ["/ws", "/echo"] {
        let (_, agreed) = offering(&mut h, path);
        assert_eq!(agreed, None, "{path}");
    }
}

#[test]
fn a_message_that_inflates_past_the_bound_closes_1009() {
    let mut h = Harness::new(Config {
        max_message_bytes: 1000,
        ..echo_config()
    });
    let (echo, _) = offering(&mut h, "/echo");
    h.frame(echo, 0xC2, &compressed(&[0; 1000]));
    h.run();
    let echo_frame = &h.frames(echo)[0];
    assert!(
        echo_frame.rsv1 && echo_frame.payload.len() < 100,
        "{echo_frame:?}"
    );
    h.frame(echo, 0xC2, &compressed(&[0; 1001]));
    h.run();
    assert_eq!(h.frames(echo)[0].close_code(), Some(1009));
    let metrics = h.get(0, "/metrics");
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        text.contains("wsnotify_limit_hits_total{limit=\"message_too_big\"} 1"),
        "{text}"
    );
}
