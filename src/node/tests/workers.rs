//! Several workers of one process: mail between them, driven as their
//! loops would be.

use super::harness::Harness;

#[test]
fn chat_on_one_worker_reaches_the_others_in_one_offset_order() {
    let mut h = Harness::workers(3);
    let peers: Vec<_> = (0..3).map(|node| h.client(node)).collect();
    h.text(peers[2], "from two");
    h.text(peers[0], "from zero");
    h.run();
    for &peer in &peers {
        let got = h.json(peer);
        let order: Vec<_> = got
            .iter()
            .map(|m| (m["offset"].clone(), m["message"].clone()))
            .collect();
        assert_eq!(
            order,
            [
                (1.into(), "from two".into()),
                (2.into(), "from zero".into())
            ],
            "node {}",
            peer.node
        );
    }
}

#[test]
fn a_direct_message_crosses_workers_and_a_miss_comes_back_as_an_error() {
    let mut h = Harness::workers(2);
    let (a, _) = h.ws(0, "/ws");
    let (b, welcome) = h.ws(1, "/ws");
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    h.text(
        a,
        &format!(r#"{{"type":"direct","to":"{id}","message":"psst"}}"#),
    );
    h.run();
    assert_eq!(h.json(b)[0]["message"], "psst");
    let gone = format!("{}-1-99", h.process.instance);
    h.text(
        a,
        &format!(r#"{{"type":"direct","to":"{gone}","message":"x"}}"#),
    );
    h.run();
    assert_eq!(h.json(a)[0]["error"], format!("unknown client \"{gone}\""));
}

#[test]
fn a_personal_publish_for_another_worker_is_answered_once_it_has_looked() {
    let mut h = Harness::workers(2);
    let (b, welcome) = h.ws(1, "/ws");
    let id = welcome["client_id"].as_str().unwrap().to_owned();
    let (_, found) = h.post(
        0,
        "/notify",
        &format!(r#"{{"message":"m","client_id":"{id}"}}"#),
    );
    assert_eq!(
        (found.status, found.json()["recipients"].clone()),
        (200, 1.into())
    );
    assert_eq!(h.json(b)[0]["message"], "m");
    let gone = format!("{}-1-99", h.process.instance);
    let (_, missing) = h.post(
        0,
        "/notify",
        &format!(r#"{{"message":"m","client_id":"{gone}"}}"#),
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn a_broadcast_counts_the_clients_of_every_worker() {
    let mut h = Harness::workers(2);
    let a = h.client(0);
    let b = h.client(1);
    h.client(1);
    let (_, answer) = h.post(1, "/broadcast", r#"{"message":"all"}"#);
    assert_eq!(answer.json()["recipients"], 3);
    assert_eq!(h.json(a)[0]["offset"], 1);
    assert_eq!(h.json(b)[0]["offset"], 1);
}

#[test]
fn a_client_resuming_on_a_worker_behind_it_gets_nothing_twice() {
    let mut h = Harness::workers(2);
    let (_, welcome) = h.ws(0, "/ws");
    let epoch = welcome["epoch"].as_str().unwrap().to_owned();
    // Worker 0 has handed out offset 1; worker 1 has not read its mail yet.
    let publisher = h.client(0);
    h.socket(publisher)
        .inbox
        .extend(crate::proto::frame::masked(0x81, b"one", [5, 5, 5, 5]));
    h.send(publisher, &[]);
    let late = h.accept(1);
    h.send(
        late,
        super::harness::upgrade(&format!("/ws?since=1&epoch={epoch}")).as_bytes(),
    );
    h.run();
    assert_eq!(h.response(late).unwrap().status, 101);
    let got = h.json(late);
    assert_eq!(got[0]["recovered"], true);
    let offsets: Vec<_> = got[1..].iter().map(|m| m["offset"].clone()).collect();
    assert!(offsets.is_empty(), "offset 1 is not sent again: {got:?}");
    h.text(publisher, "two");
    h.run();
    let offsets: Vec<_> = h.json(late).iter().map(|m| m["offset"].clone()).collect();
    assert_eq!(offsets, [2]);
}
