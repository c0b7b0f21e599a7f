//! Several workers on one port: every client gets every broadcast exactly
//! once, personal and direct messages cross workers, and the drain waits for
//! every worker.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::*;

fn welcome(client: &mut Client) -> (String, u64) {
    let w = next_of_type(client, "welcome");
    (
        w["client_id"].as_str().unwrap().to_owned(),
        w["worker"].as_u64().unwrap(),
    )
}

/// Opens clients until every worker holds at least one (the kernel spreads
/// connections over SO_REUSEPORT listeners by a hash, so a few may be needed).
fn clients_on_every_worker(
    server: &Server,
    workers: u64,
    at_least: usize,
) -> Vec<(Client, String, u64)> {
    let mut clients = Vec::new();
    let mut seen = HashSet::new();
    while clients.len() < at_least || (seen.len() as u64) < workers {
        assert!(
            clients.len() < 2000,
            "connections never reached every worker"
        );
        let mut client = connect(server, "/ws");
        let (id, worker) = welcome(&mut client);
        seen.insert(worker);
        clients.push((client, id, worker));
    }
    clients
}

#[test]
fn broadcasts_reach_every_client_of_every_worker_exactly_once() {
    let server = Server::start(&["--workers", "4", "--notify-interval", "0"]);
    let mut clients = clients_on_every_worker(&server, 4, 200);
    let ids: HashSet<&String> = clients.iter().map(|(_, id, _)| id).collect();
    assert_eq!(
        ids.len(),
        clients.len(),
        "client ids are unique across workers"
    );
    let mut per_worker: HashMap<u64, usize> = HashMap::new();
    for (_, _, w) in &clients {
        *per_worker.entry(*w).or_default() += 1;
    }
    println!("clients per worker: {per_worker:?}");

    for round in 0..3 {
        let body = format!(r#"{{"message":"round {round}"}}"#);
        let (status, _, body) = http(server.addr, "POST", "/broadcast", &[], body.as_bytes());
        assert_eq!(status, 200);
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["recipients"].as_u64(), Some(clients.len() as u64));
    }
    // Published last: a duplicate of a round would come before it.
    let (status, _, _) = http(
        server.addr,
        "POST",
        "/broadcast",
        &[],
        br#"{"message":"marker"}"#,
    );
    assert_eq!(status, 200);
    for (client, id, _) in &mut clients {
        for round in 0..3 {
            let n = next_of_type(client, "notification");
            assert_eq!(n["message"], format!("round {round}"), "client {id}");
        }
        let n = next_of_type(client, "notification");
        assert_eq!(n["message"], "marker", "client {id} got a duplicate");
    }

    let (status, _, body) = http(server.addr, "GET", "/status", &[], b"");
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["workers"], 4);
    assert_eq!(status["connections"].as_u64(), Some(clients.len() as u64));
    let (_, _, metrics) = http(server.addr, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    for (worker, count) in &per_worker {
        let line = format!("wsnotify_worker_connections_active{{worker=\"{worker}\"}} {count}\n");
        assert!(metrics.contains(&line), "missing {line}");
    }
}

#[test]
fn personal_and_direct_messages_cross_workers() {
    let server = Server::start(&["--workers", "4", "--notify-interval", "0"]);
    let mut clients = clients_on_every_worker(&server, 4, 4);
    let (a_worker, b_worker) = (
        clients[0].2,
        clients
            .iter()
            .map(|c| c.2)
            .find(|w| *w != clients[0].2)
            .unwrap(),
    );
    let a = clients.iter().position(|c| c.2 == a_worker).unwrap();
    let b = clients.iter().position(|c| c.2 == b_worker).unwrap();
    let b_id = clients[b].1.clone();
    let a_id = clients[a].1.clone();

    // A personal publish answered by another worker than the one that took
    // the HTTP request, for every client: whichever worker the request hits.
    for (client, id, _) in &mut clients {
        let body = format!(r#"{{"message":"for {id}","client_id":"{id}"}}"#);
        let (status, _, answer) = http(server.addr, "POST", "/notify", &[], body.as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let n = next_of_type(client, "notification");
        assert_eq!(
            (n["message"].as_str().unwrap(), n["scope"].as_str().unwrap()),
            (format!("for {id}").as_str(), "personal")
        );
    }

    let direct = format!(r#"{{"type":"direct","to":"{b_id}","message":"across"}}"#);
    clients[a]
        .0
        .send(tungstenite::Message::Text(direct))
        .unwrap();
    let got = next_of_type(&mut clients[b].0, "direct");
    assert_eq!(
        (
            got["from"].as_str().unwrap(),
            got["message"].as_str().unwrap()
        ),
        (a_id.as_str(), "across")
    );

    // A client that has left: the personal publish gets 404, the direct an error.
    let (mut gone, gone_id, _) = clients.remove(b);
    gone.close(None).unwrap();
    while gone.read().is_ok() {}
    // Logged by its worker once the client is out of its hub.
    let left = format!("client={gone_id} ");
    wait_until(
        "the client's leaving in the log",
        Duration::from_secs(5),
        || {
            server
                .log_lines()
                .iter()
                .any(|l| l.contains("client disconnected") && l.contains(&left))
        },
    );
    let a = clients.iter().position(|c| c.1 == a_id).unwrap();
    let body = format!(r#"{{"message":"late","client_id":"{gone_id}"}}"#);
    for _ in 0..8 {
        assert_eq!(
            http(server.addr, "POST", "/notify", &[], body.as_bytes()).0,
            404
        );
    }
    let direct = format!(r#"{{"type":"direct","to":"{gone_id}","message":"anyone?"}}"#);
    clients[a]
        .0
        .send(tungstenite::Message::Text(direct))
        .unwrap();
    assert!(next_of_type(&mut clients[a].0, "error")["error"]
        .as_str()
        .unwrap()
        .contains(&gone_id));
}

#[test]
fn chat_and_periodic_notifications_reach_every_worker_once() {
    let server = Server::start(&["--workers", "3", "--notify-interval", "400ms"]);
    let mut clients = clients_on_every_worker(&server, 3, 6);
    clients[0]
        .0
        .send(tungstenite::Message::Text("hello all".into()))
        .unwrap();
    for (client, _, _) in &mut clients {
        assert_eq!(next_of_type(client, "chat")["message"], "hello all");
    }
    let mut ids_seen = Vec::new();
    for (client, _, _) in &mut clients {
        let first = next_of_type(client, "notification");
        let second = next_of_type(client, "notification");
        assert_eq!(first["source"], "periodic");
        let (a, b) = (
            first["id"].as_u64().unwrap(),
            second["id"].as_u64().unwrap(),
        );
        assert!(b > a);
        ids_seen.push(a);
    }
    println!("first periodic ids per client: {ids_seen:?}");
}

#[test]
fn drain_waits_for_every_worker() {
    let mut server = Server::start(&[
        "--workers",
        "4",
        "--notify-interval",
        "0",
        "--drain-timeout",
        "30s",
        "--drain-log-interval",
        "100ms",
    ]);
    let mut clients = clients_on_every_worker(&server, 4, 8);
    server.signal(SIGTERM);
    for (client, _, _) in &mut clients {
        next_of_type(client, "shutdown_notice");
    }
    let last = clients.pop().unwrap();
    for (mut client, _, _) in clients {
        client.close(None).unwrap();
        while client.read().is_ok() {}
    }
    wait_until(
        "the others' leaving in the log",
        Duration::from_secs(5),
        || {
            server
                .log_lines()
                .iter()
                .any(|l| l.contains("client disconnected") && l.ends_with(" remaining=1"))
        },
    );
    // Progress lines written after that (the second a whole interval
    // after) show the supervisor looked again, the other workers done, and
    // kept waiting; and the last client is still served.
    let before = server.log_count("draining remaining=1 ");
    wait_until(
        "two progress lines after the others left",
        Duration::from_secs(5),
        || server.log_count("draining remaining=1 ") >= before + 2,
    );
    let (mut client, _, _) = last;
    client
        .send(tungstenite::Message::Text(r#"{"type":"ping"}"#.into()))
        .unwrap();
    next_of_type(&mut client, "pong");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "one worker still has a client"
    );
    client.close(None).unwrap();
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exit after the last client");
    assert_eq!(status.code(), Some(0));
}
