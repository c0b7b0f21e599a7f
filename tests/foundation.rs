//! The server's base: start-up, the listening line, the upgrade and /echo.

mod support;

use support::*;

#[test]
fn welcome_is_the_first_message_on_ws() {
    let server = Server::start(&["--notify-interval", "0"]);
    let mut client = connect(&server, "/ws");
    let welcome = next_json(&mut client);
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["server"], "wsnotify");
    assert_eq!(welcome["worker"], 0);
    assert!(welcome["client_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert!(welcome["time"].as_str().is_some_and(|t| t.ends_with('Z')));
}

#[test]
fn echo_returns_text_and_binary_unchanged() {
    let server = Server::start(&["--enable-echo"]);
    let mut client = connect(&server, "/echo");
    client
        .send(tungstenite::Message::Text("héllo".into()))
        .unwrap();
    assert_eq!(
        client.read().unwrap(),
        tungstenite::Message::Text("héllo".into())
    );
    client
        .send(tungstenite::Message::Binary(vec![0, 255, 1]))
        .unwrap();
    assert_eq!(
        client.read().unwrap(),
        tungstenite::Message::Binary(vec![0, 255, 1])
    );
}

#[test]
fn echo_is_off_by_default() {
    let server = Server::start(&[]);
    let (status, _, body) = http(server.addr, "GET", "/echo", &[], b"");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("\"error\""));
}

#[test]
fn unknown_path_is_a_json_404() {
    let server = Server::start(&[]);
    let (status, head, body) = http(server.addr, "GET", "/nope", &[], b"");
    assert_eq!(status, 404);
    assert_eq!(
        header_value(&head, "content-type").as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(body["error"].is_string());
}

#[test]
fn client_close_is_echoed_then_tcp_closed() {
    let server = Server::start(&["--enable-echo"]);
    let mut stream = raw_ws(&server, "/echo");
    use std::io::Write;
    stream
        .write_all(&client_frame(0x88, &[0x0F, 0xA0, b'b', b'y', b'e']))
        .unwrap();
    assert_eq!(expect_close(&mut stream), Some(4000));
}
