//! Connection tokens through a node: who may upgrade, the welcome's
//! `user`, and the close at `exp` on the node's own timer, with the fake
//! clock.

use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{config, upgrade, Harness, Peer};
use crate::app::token::tests::{mint, SECRET};
use crate::config::{Config, TokenSecret};
use crate::obs::metrics;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

fn with_secret() -> Config {
    Config {
        token_secret: Some(TokenSecret::new(SECRET, false).unwrap()),
        ..config()
    }
}

/// The harness's wall clock, in whole seconds, rounded up.
fn now_s(h: &Harness) -> u64 {
    h.now.wall_ms.div_ceil(1000)
}

/// A `/ws` client that presented `token` in the query.
fn client_with(h: &mut Harness, token: &str) -> (Peer, Value) {
    h.ws(0, &format!("/ws?token={token}"))
}

fn refused(h: &mut Harness, request: &str) -> (u16, String, Option<String>) {
    let (_, response) = h.http(0, request);
    let error = response.json()["error"].as_str().unwrap_or("").to_string();
    let challenge = response.header("www-authenticate").map(str::to_string);
    (response.status, error, challenge)
}

#[test]
fn the_welcome_of_a_client_with_a_token_names_its_user() {
    let mut h = Harness::new(with_secret());
    let (_, welcome) = client_with(&mut h, &mint(&json!({"sub": "alice"})));
    assert_eq!(welcome["user"], "alice");
    let header = format!(
        "Authorization: Bearer {}\r\n\r\n",
        mint(&json!({"sub": "bob"}))
    );
    let peer = h.accept(0);
    h.send(
        peer,
        upgrade("/ws")
            .replace("\r\n\r\n", &format!("\r\n{header}"))
            .as_bytes(),
    );
    h.run();
    assert_eq!(h.response(peer).unwrap().status, 101);
    assert_eq!(h.json(peer)[0]["user"], "bob");
    let (_, anonymous) = h.ws(0, "/ws");
    assert!(anonymous.get("user").is_none());
    assert_eq!(metrics::get(&h.process.stats.authenticated_clients), 2);
}

#[test]
fn every_refused_token_is_401_with_a_json_error_and_a_bearer_challenge() {
    let mut h = Harness::new(with_secret());
    let past = now_s(&h) - 10;
    let other_secret = crate::app::token::tests::mint_with(
        &json!({"alg": "HS256"}),
        &json!({"sub": "a"}),
        b"not the server's secret, 32 bytes or more",
    );
    let alg_none =
        crate::app::token::tests::mint_with(&json!({"alg": "none"}), &json!({"sub": "a"}), SECRET);
    let cases = [
        (other_secret, "signature"),
        (alg_none, "HS256"),
        ("not.a.token".to_string(), "malformed"),
        (mint(&json!({"sub": "a", "exp": past})), "expired"),
        (
            mint(&json!({"sub": "a", "nbf": now_s(&h) + 60})),
            "not valid yet",
        ),
        (mint(&json!({"exp": now_s(&h) + 60})), "sub"),
    ];
    for (token, says) in cases {
        let (status, error, challenge) = refused(&mut h, &upgrade(&format!("/ws?token={token}")));
        assert_eq!(status, 401, "{says}");
        assert!(error.contains(says), "{says}: {error}");
        assert_eq!(challenge.as_deref(), Some("Bearer"));
    }
    let metrics = h.process.stats.render(false, 0.0, &Default::default());
    assert!(metrics.contains("wsnotify_handshake_failures_total{reason=\"token\"} 6"));
    assert_eq!(metrics::get(&h.process.stats.connections_total), 0);
}

#[test]
fn a_token_without_a_secret_is_refused_and_without_a_token_a_client_is_anonymous() {
    let mut h = Harness::new(config());
    let token = mint(&json!({"sub": "alice"}));
    let (status, error, _) = refused(&mut h, &upgrade(&format!("/ws?token={token}")));
    assert_eq!((status, error.contains("no token secret")), (401, true));
    let (_, welcome) = h.ws(0, "/ws");
    assert!(welcome.get("user").is_none());
}

#[test]
fn require_token_refuses_a_client_without_one_and_leaves_echo_alone() {
    let mut h = Harness::new(Config {
        require_token: true,
        enable_echo: true,
        ..with_secret()
    });
    let (status, error, challenge) = refused(&mut h, &upgrade("/ws"));
    assert_eq!((status, error.as_str()), (401, "a token is required"));
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    h.ws(0, "/echo");
    h.ws(0, "/echo?token=garbage");
    let (_, welcome) = client_with(&mut h, &mint(&json!({"sub": "alice"})));
    assert_eq!(welcome["user"], "alice");
}

#[test]
fn a_client_is_closed_with_4001_exactly_at_exp_by_the_timer() {
    let mut h = Harness::new(with_secret());
    let exp = now_s(&h) + 5;
    let (peer, _) = client_with(&mut h, &mint(&json!({"sub": "alice", "exp": exp})));
    let (other, _) = client_with(&mut h, &mint(&json!({"sub": "bob", "exp": exp + 60})));
    let until_exp = Duration::from_millis(exp * 1000 - h.now.wall_ms);
    h.advance(until_exp - MS);
    assert!(h.frames(peer).is_empty(), "not a millisecond before exp");
    h.advance(MS);
    let frames = h.frames(peer);
    assert_eq!(frames.len(), 1, "closed at exp, without a message from it");
    assert_eq!(frames[0].close_code(), Some(4001));
    assert_eq!(frames[0].payload[2..], *b"token expired");
    assert!(h.frames(other).is_empty(), "a later exp is not due");
    assert_eq!(metrics::get(&h.process.stats.tokens_expired), 1);
    // The client answers the Close and goes.
    h.frame(peer, 0x88, &4001u16.to_be_bytes());
    h.advance(S);
    assert!(h.is_closed(peer));
    assert_eq!(h.nodes[0].users.expiring(), 1, "bob's");
}

#[test]
fn a_client_without_exp_is_never_closed() {
    let mut h = Harness::new(with_secret());
    let (peer, _) = client_with(&mut h, &mint(&json!({"sub": "alice"})));
    assert_eq!(h.nodes[0].token_expiry(), None, "no timer for it");
    h.advance(Duration::from_secs(3 * 24 * 3600));
    assert!(h.frames(peer).is_empty());
    assert_eq!(h.nodes[0].users.len(), 1);
}

#[test]
fn clients_that_left_leave_no_identity_and_no_timer_behind() {
    let mut h = Harness::new(with_secret());
    let exp = now_s(&h) + 60;
    let peers: Vec<Peer> = (0..50)
        .map(|i| client_with(&mut h, &mint(&json!({"sub": format!("u{i}"), "exp": exp}))).0)
        .collect();
    assert_eq!(h.nodes[0].users.expiring(), 50);
    assert_eq!(metrics::get(&h.process.stats.authenticated_clients), 50);
    for (i, peer) in peers.into_iter().enumerate() {
        if i % 2 == 0 {
            h.frame(peer, 0x88, &1000u16.to_be_bytes());
        } else {
            h.fin(peer);
        }
    }
    h.advance(S);
    let users = &h.nodes[0].users;
    assert_eq!(
        (users.len(), users.expiring(), users.next_expiry()),
        (0, 0, None)
    );
    assert_eq!(metrics::get(&h.process.stats.authenticated_clients), 0);
    assert_eq!(h.nodes[0].token_expiry(), None, "nothing left to wake for");
    h.advance(Duration::from_secs(120));
    assert_eq!(metrics::get(&h.process.stats.tokens_expired), 0);
}

#[test]
fn identities_are_bounded_by_the_connections() {
    let mut h = Harness::new(Config {
        max_connections: 3,
        ..with_secret()
    });
    let exp = now_s(&h) + 60;
    let mut refused = 0;
    for i in 0..5 {
        let token =
            mint(&json!({"sub": format!("u{i}"), "exp": exp, "channels": ["private:a", "b"]}));
        let (_, response) = h.http(0, &upgrade(&format!("/ws?token={token}")));
        if response.status == 503 {
            refused += 1;
        }
    }
    assert_eq!(refused, 2);
    let users = &h.nodes[0].users;
    assert_eq!((users.len(), users.expiring()), (3, 3));
    assert_eq!(metrics::get(&h.process.stats.authenticated_clients), 3);
    let key = crate::ids::ConnKey(0);
    let private = users.get(key).map(|identity| identity.private.len());
    assert_eq!(private, Some(1), "only private: names are kept");
}
