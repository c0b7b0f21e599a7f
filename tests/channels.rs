//! Channels with the real binary: subscribe and unsubscribe, chat on a
//! channel, the errors that keep a connection open, publishing to a
//! channel or a user, `GET /channels`, the `/status` counts and the
//! metrics, the channels of users and private channels (tokens minted
//! here with hmac + sha2), and the resume of a channel on subscribe whose
//! replay is larger than `--max-queue-bytes`.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const SECRET: &str = "channels e2e test secret, 32 bytes at least";

/// An HS256 token with these claims under `SECRET`.
fn token(claims: &Value) -> String {
    support::token::mint(claims, SECRET.as_bytes())
}

fn send(client: &mut Client, value: Value) {
    client
        .send(tungstenite::Message::Text(value.to_string()))
        .expect("send");
}

/// Sends `value`; returns the next message.
fn ask(client: &mut Client, value: Value) -> Value {
    send(client, value);
    next_json(client)
}

fn subscribe(client: &mut Client, channel: &str) -> Value {
    let answer = ask(client, json!({"type": "subscribe", "channel": channel}));
    assert_eq!(answer["type"], "subscribed", "{answer}");
    answer
}

/// Publishes `body`; returns the status and the answer.
fn publish(server: &Server, body: Value) -> (u16, Value) {
    let (status, _, answer) = http(
        server.addr,
        "POST",
        "/broadcast",
        &[],
        body.to_string().as_bytes(),
    );
    (
        status,
        serde_json::from_slice(&answer).unwrap_or(Value::Null),
    )
}

fn get_json(server: &Server, path: &str) -> Value {
    let (status, _, body) = http(server.addr, "GET", path, &[], b"");
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("JSON")
}

/// A `/ws` client past its welcome; returns it and its welcome.
fn client(server: &Server) -> (Client, Value) {
    let mut client = connect(server, "/ws");
    let welcome = next_json(&mut client);
    assert_eq!(welcome["type"], "welcome");
    (client, welcome)
}

#[test]
fn subscribers_get_their_channels_messages_and_errors_keep_the_connection() {
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--workers",
        "2",
        "--max-channels-per-client",
        "2",
    ]);
    let (mut a, welcome) = client(&server);
    let (mut b, _) = client(&server);
    let (mut outsider, _) = client(&server);
    let answer = subscribe(&mut a, "room");
    assert_eq!(
        (&answer["channel"], &answer["offset"], &answer["epoch"]),
        (&json!("room"), &json!(0), &welcome["epoch"])
    );
    subscribe(&mut b, "room");
    let again = subscribe(&mut b, "room");
    assert_eq!(again["offset"], 0, "answered again");

    send(
        &mut a,
        json!({"type": "chat", "channel": "room", "message": "hi"}),
    );
    for reader in [&mut a, &mut b] {
        let chat = next_json(reader);
        assert_eq!(
            (
                &chat["type"],
                &chat["channel"],
                &chat["offset"],
                &chat["from"]
            ),
            (
                &json!("chat"),
                &json!("room"),
                &json!(1),
                &welcome["client_id"]
            ),
            "{chat}"
        );
    }
    let (status, answer) = publish(&server, json!({"message": "m", "channel": "room"}));
    assert_eq!(
        (status, &answer["recipients"]),
        (200, &json!(2)),
        "{answer}"
    );
    let note = next_json(&mut b);
    assert_eq!(
        (&note["type"], &note["scope"], &note["offset"]),
        (&json!("notification"), &json!("channel"), &json!(2))
    );
    assert_eq!(
        next_json(&mut a)["offset"],
        2,
        "once, though subscribed twice"
    );

    for (message, channel) in [
        (
            json!({"type": "subscribe", "channel": "bad name"}),
            "bad name",
        ),
        (
            json!({"type": "subscribe", "channel": "user:ann"}),
            "user:ann",
        ),
        (
            json!({"type": "subscribe", "channel": "private:x"}),
            "private:x",
        ),
        (
            json!({"type": "chat", "channel": "elsewhere", "message": "m"}),
            "elsewhere",
        ),
        (
            json!({"type": "chat", "channel": "user:ann", "message": "m"}),
            "user:ann",
        ),
    ] {
        let error = ask(&mut a, message.clone());
        assert_eq!(
            (&error["type"], &error["channel"]),
            (&json!("error"), &json!(channel)),
            "{message}: {error}"
        );
    }
    subscribe(&mut a, "second");
    let error = ask(&mut a, json!({"type": "subscribe", "channel": "third"}));
    assert_eq!(
        (&error["type"], &error["channel"]),
        (&json!("error"), &json!("third"))
    );
    assert_eq!(ask(&mut a, json!({"type": "ping"}))["type"], "pong");

    // After `unsubscribed`, nothing more of the channel: the next message
    // is the broadcast published after the channel's.
    let left = ask(&mut b, json!({"type": "unsubscribe", "channel": "room"}));
    assert_eq!(
        (&left["type"], &left["channel"]),
        (&json!("unsubscribed"), &json!("room"))
    );
    publish(&server, json!({"message": "after", "channel": "room"}));
    publish(&server, json!({"message": "to everyone"}));
    let next = next_json(&mut b);
    assert_eq!(
        (&next["message"], next.get("channel")),
        (&json!("to everyone"), None)
    );
    assert_eq!(next_json(&mut a)["message"], "after");
    let next = next_json(&mut outsider);
    assert_eq!(next["message"], "to everyone", "no channel message: {next}");
}

#[test]
fn publishing_to_channels_and_users_and_the_counts() {
    let server = Server::start(&["--notify-interval", "0", "--workers", "2"]);
    let (mut a, _) = client(&server);
    let (mut b, _) = client(&server);
    subscribe(&mut a, "beta");
    subscribe(&mut a, "alpha");
    subscribe(&mut b, "alpha");
    let (status, answer) = publish(&server, json!({"message": "m", "channel": "alpha"}));
    assert_eq!(
        (status, &answer["status"], &answer["recipients"]),
        (200, &json!("sent"), &json!(2))
    );
    assert_eq!(next_json(&mut b)["offset"], 1);
    let (status, answer) = publish(&server, json!({"message": "m", "user": "nobody"}));
    assert_eq!(
        (status, &answer["recipients"]),
        (200, &json!(0)),
        "{answer}"
    );
    let (status, _, body) = http(
        server.addr,
        "POST",
        "/notify?message=q&channel=beta",
        &[],
        b"",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    for bad in [
        json!({"message": "m", "channel": "a b"}),
        json!({"message": "m", "user": ""}),
        json!({"message": "m", "channel": "a", "user": "b"}),
        json!({"message": "m", "channel": "a", "client_id": "x-0-1"}),
    ] {
        let (status, answer) = publish(&server, bad.clone());
        assert_eq!(status, 400, "{bad}");
        assert!(answer["error"].is_string());
    }

    assert_eq!(
        get_json(&server, "/channels"),
        json!({"channels": [
            {"channel": "alpha", "subscribers": 2, "offset": 1},
            {"channel": "beta", "subscribers": 1, "offset": 1},
        ]})
    );
    let status = get_json(&server, "/status");
    assert_eq!(
        (&status["channels"], &status["subscriptions"]),
        (&json!(2), &json!(3))
    );
    let metrics = metrics_text(&server);
    assert_eq!(metric(&metrics, "wsnotify_channels"), 2.0);
    assert_eq!(metric(&metrics, "wsnotify_subscriptions"), 3.0);
    assert_eq!(metric(&metrics, "wsnotify_channel_deliveries_total"), 3.0);

    drop(a);
    wait_until(
        "a's subscriptions to go",
        std::time::Duration::from_secs(10),
        || get_json(&server, "/status")["subscriptions"] == 1,
    );
    assert_eq!(
        get_json(&server, "/channels"),
        json!({"channels": [{"channel": "alpha", "subscribers": 1, "offset": 1}]})
    );
}

#[test]
fn a_channel_resume_larger_than_the_queue_bound_arrives_whole_and_in_order() {
    let server = Server::start(&[
        "--notify-interval",
        "0",
        "--workers",
        "2",
        "--max-queue-bytes",
        "262144",
        "--max-history-bytes",
        "67108864",
    ]);
    let (mut reader, welcome) = client(&server);
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    let big = "r".repeat(60_000);
    for _ in 0..100 {
        // Kept with nobody subscribed yet.
        let (status, answer) = publish(&server, json!({"message": big, "channel": "big"}));
        assert_eq!((status, &answer["recipients"]), (200, &json!(0)));
    }
    let answer = ask(
        &mut reader,
        json!({"type": "subscribe", "channel": "big", "since": 0, "epoch": epoch}),
    );
    assert_eq!(
        (&answer["type"], &answer["recovered"], &answer["replayed"]),
        (&json!("subscribed"), &json!(true), &json!(100)),
        "{answer}"
    );
    let mut offsets: Vec<u64> = (0..30)
        .map(|_| next_json(&mut reader)["offset"].as_u64().unwrap())
        .collect();
    // Messages during the replay come after it, in order.
    for i in 0..3 {
        publish(
            &server,
            json!({"message": format!("during {i}"), "channel": "big"}),
        );
    }
    offsets.extend((0..73).map(|_| next_json(&mut reader)["offset"].as_u64().unwrap()));
    assert_eq!(offsets, (1..=103).collect::<Vec<u64>>());
    publish(&server, json!({"message": "live", "channel": "big"}));
    let live = next_json(&mut reader);
    assert_eq!(
        (&live["offset"], &live["message"]),
        (&json!(104), &json!("live"))
    );
    let metrics = metrics_text(&server);
    assert_eq!(
        metric(&metrics, "wsnotify_slow_consumers_dropped_total"),
        0.0
    );
    assert_eq!(metric(&metrics, "wsnotify_replays_active"), 0.0);

    let resumed = ask(
        &mut reader,
        json!({"type": "subscribe", "channel": "big", "since": 1, "epoch": "other"}),
    );
    assert_eq!(
        (&resumed["recovered"], &resumed["reason"]),
        (&json!(false), &json!("unknown_epoch"))
    );
}

#[test]
fn a_user_gets_its_messages_on_every_connection_and_private_channels_need_the_claim() {
    let server = Server::start_with_env(
        &["--notify-interval", "0", "--workers", "2"],
        &[("WSNOTIFY_TOKEN_SECRET", SECRET)],
    );
    let ann = token(&json!({"sub": "ann", "channels": ["private:team"]}));
    let mut tabs: Vec<Client> = (0..2)
        .map(|_| {
            let mut tab = connect(&server, &format!("/ws?token={ann}"));
            assert_eq!(next_json(&mut tab)["user"], "ann");
            tab
        })
        .collect();
    let mut bob = connect(
        &server,
        &format!("/ws?token={}", token(&json!({"sub": "bob"}))),
    );
    next_json(&mut bob);
    // Published right after the welcomes: both tabs get it.
    let (status, answer) = publish(&server, json!({"message": "hi ann", "user": "ann"}));
    assert_eq!(
        (status, &answer["recipients"]),
        (200, &json!(2)),
        "{answer}"
    );
    for tab in &mut tabs {
        let note = next_json(tab);
        assert_eq!(
            (
                &note["scope"],
                &note["channel"],
                &note["offset"],
                &note["message"]
            ),
            (
                &json!("user"),
                &json!("user:ann"),
                &json!(1),
                &json!("hi ann")
            )
        );
    }
    let team = subscribe(&mut tabs[0], "private:team");
    assert_eq!(team["channel"], "private:team");
    let refused = ask(
        &mut bob,
        json!({"type": "subscribe", "channel": "private:team"}),
    );
    assert_eq!(
        (&refused["type"], &refused["channel"]),
        (&json!("error"), &json!("private:team"))
    );
    let refused = ask(
        &mut bob,
        json!({"type": "subscribe", "channel": "user:ann"}),
    );
    assert_eq!(refused["type"], "error");
    let status = get_json(&server, "/status");
    assert_eq!(
        (&status["channels"], &status["subscriptions"]),
        (&json!(3), &json!(4))
    );
    publish(&server, json!({"message": "to bob", "user": "bob"}));
    assert_eq!(next_json(&mut bob)["message"], "to bob");
}

/// A tab that reconnects resumes its user's channel: what was sent to the
/// user while it was away arrives after the `subscribed` answer.
#[test]
fn a_user_resumes_its_own_channel_after_a_reconnect() {
    let server = Server::start_with_env(
        &["--notify-interval", "0"],
        &[("WSNOTIFY_TOKEN_SECRET", SECRET)],
    );
    let ann = token(&json!({"sub": "ann"}));
    let mut tab = connect(&server, &format!("/ws?token={ann}"));
    let welcome = next_json(&mut tab);
    publish(&server, json!({"message": "one", "user": "ann"}));
    assert_eq!(next_json(&mut tab)["offset"], 1);
    drop(tab);
    wait_until("ann's tab gone", Duration::from_secs(5), || {
        get_json(&server, "/status")["subscriptions"] == 0
    });
    let (_, missed) = publish(&server, json!({"message": "two", "user": "ann"}));
    assert_eq!(missed["recipients"], 0);
    let mut tab = connect(&server, &format!("/ws?token={ann}"));
    next_json(&mut tab);
    let answer = ask(
        &mut tab,
        json!({"type": "subscribe", "channel": "user:ann", "since": 1, "epoch": welcome["epoch"]}),
    );
    assert_eq!(
        (&answer["type"], &answer["recovered"], &answer["replayed"]),
        (&json!("subscribed"), &json!(true), &json!(1)),
        "{answer}"
    );
    let replayed = next_json(&mut tab);
    assert_eq!(
        (&replayed["message"], &replayed["offset"]),
        (&json!("two"), &json!(2))
    );
    assert_eq!(get_json(&server, "/status")["subscriptions"], 1);
}

/// `--max-channels`: clients subscribing to fresh channels and a publisher
/// publishing to fresh ones never make the process hold more.
#[test]
fn the_channels_held_stay_within_max_channels() {
    let server = Server::start(&["--notify-interval", "0", "--max-channels", "4"]);
    let mut clients: Vec<Client> = (0..3).map(|_| client(&server).0).collect();
    let mut refused = 0;
    for (i, c) in clients.iter_mut().enumerate() {
        for j in 0..3 {
            let answer = ask(
                c,
                json!({"type": "subscribe", "channel": format!("c{i}-{j}")}),
            );
            if answer["type"] == "error" {
                assert_eq!(answer["error"], "the server holds too many channels");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 5);
    for i in 0..10 {
        let (status, answer) =
            publish(&server, json!({"message": "m", "channel": format!("p{i}")}));
        assert_eq!((status, &answer["recipients"]), (200, &json!(0)));
    }
    let status = get_json(&server, "/status");
    assert_eq!(status["memory"]["channels_held"], 4);
    let text = metrics_text(&server);
    assert_eq!(
        metric(&text, "wsnotify_limit_hits_total{limit=\"max_channels\"}"),
        15.0
    );
    assert_eq!(metric(&text, "wsnotify_channels_held"), 4.0);
    assert_eq!(
        ask(&mut clients[2], json!({"type": "ping"}))["type"],
        "pong"
    );
}
