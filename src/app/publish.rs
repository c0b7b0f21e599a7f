//! Notifications: `POST /broadcast` and `POST /notify`, and the periodic
//! one. Pure: the shell allocates the notification id and carries out the
//! delivery and the answer.

use serde_json::json;

use super::hub::{self, Here, Location};
use super::protocol::{Notification, Source};
use super::routes::Publish;
use super::snapshot::Snapshot;
use crate::ids::{ClientId, ConnKey};
use crate::proto::http::{Response, Status};

/// How a notification reaches its recipients.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// Every `/ws` client of the process, and of other instances through
    /// Redis.
    Broadcast(String),
    /// A client of this worker.
    Send { to: ConnKey, json: String },
    /// Another instance's client, through Redis.
    Forward { to: ClientId, json: String },
    /// A channel's subscribers, numbered in the channel; the answer counts
    /// this process's subscribers (see [`sent`]).
    Channel { channel: String, json: String },
    /// Another worker's client: the answer waits for that worker's report
    /// (see [`published`]).
    Mail {
        worker: usize,
        seq: u64,
        json: String,
    },
}

#[derive(Debug, PartialEq)]
pub struct Published {
    pub id: u64,
    pub delivery: Delivery,
    /// The answer now, or `None` when it waits for another worker.
    pub answer: Option<Response>,
}

/// Where a publish goes: everyone (`None`), a client, or nowhere (the
/// answer).
pub fn target(publish: &Publish, here: &Here) -> Result<Option<Location>, Response> {
    match &publish.client_id {
        None => Ok(None),
        Some(id) => id
            .parse()
            .ok()
            .and_then(|id| hub::locate(&id, here))
            .map(Some)
            .ok_or_else(|| not_connected(id)),
    }
}

/// The notification a publish makes, numbered `id`, and its delivery.
pub fn publish(
    publish: Publish,
    target: Option<Location>,
    id: u64,
    here: &Here,
    snapshot: &Snapshot,
) -> Published {
    let notification = Notification {
        id,
        message: publish.message,
        category: publish.category,
        source: Source::Api,
        personal: target.is_some(),
        channel: publish.channel.clone(),
        instance: here.instance.to_owned(),
        data: publish.data,
    };
    let json = notification.to_json(snapshot.now_ms);
    if let Some(channel) = publish.channel {
        return Published {
            id,
            delivery: Delivery::Channel { channel, json },
            answer: None,
        };
    }
    let (delivery, answer) = match target {
        Some(Location::Here(to)) => (Delivery::Send { to, json }, Some(sent(id, 1))),
        Some(Location::Elsewhere(to)) => (
            Delivery::Forward { to, json },
            Some(Response::json(
                Status::ACCEPTED,
                &json!({ "status": "forwarded", "id": id }),
            )),
        ),
        Some(Location::Worker { worker, seq }) => (Delivery::Mail { worker, seq, json }, None),
        None => {
            let recipients = snapshot.notify_clients.max(here.hub.len() as u64);
            (Delivery::Broadcast(json), Some(sent(id, recipients)))
        }
    };
    Published {
        id,
        delivery,
        answer,
    }
}

/// The periodic notification number `count`, numbered `id`, for everyone.
pub fn periodic(count: u64, id: u64, here: &Here, snapshot: &Snapshot) -> String {
    let active = snapshot.notify_clients;
    Notification {
        id,
        message: format!("Periodic notification #{count} - active clients: {active}"),
        category: "info".into(),
        source: Source::Periodic,
        personal: false,
        channel: None,
        instance: here.instance.to_owned(),
        data: None,
    }
    .to_json(snapshot.now_ms)
}

/// The answer to a personal publish once the client's worker has looked.
pub fn published(found: bool, id: u64) -> Response {
    if found {
        sent(id, 1)
    } else {
        Response::error(Status::NOT_FOUND, "client is not connected")
    }
}

/// `200 {"status":"sent","id":N,"recipients":R}`.
pub fn sent(id: u64, recipients: u64) -> Response {
    Response::json(
        Status::OK,
        &json!({ "status": "sent", "id": id, "recipients": recipients }),
    )
}

/// `GET /channels`: each channel's name, subscribers and last offset.
pub fn channel_list(list: &[(std::sync::Arc<str>, usize, u64)]) -> Response {
    let channels: Vec<_> = list
        .iter()
        .map(|(channel, subscribers, offset)| {
            json!({ "channel": &**channel, "subscribers": subscribers, "offset": offset })
        })
        .collect();
    Response::json(Status::OK, &json!({ "channels": channels }))
}

fn not_connected(id: &str) -> Response {
    Response::error(
        Status::NOT_FOUND,
        &format!("client \"{id}\" is not connected"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures;
    use crate::app::hub::Hub;

    fn snapshot() -> Snapshot {
        Snapshot {
            active: 4,
            notify_clients: 3,
            connections_total: 4,
            uptime_s: 1,
            ..fixtures::snapshot()
        }
    }

    fn message(client_id: Option<&str>) -> Publish {
        Publish {
            message: "m".into(),
            category: "info".into(),
            data: None,
            client_id: client_id.map(str::to_owned),
            channel: None,
        }
    }

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    #[test]
    fn a_broadcast_counts_the_process_clients() {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let p = message(None);
        let target = target(&p, &here).unwrap();
        let out = publish(p, target, 7, &here, &snapshot());
        assert!(matches!(out.delivery, Delivery::Broadcast(_)));
        let answer = out.answer.unwrap();
        assert_eq!(body(&answer)["recipients"], 3);
        assert_eq!(body(&answer)["id"], 7);
    }

    #[test]
    fn personal_messages_by_where_the_client_is() {
        let mut hub = Hub::default();
        let seq = hub.join(ConnKey(5));
        let conns = fixtures::Conns(vec![(ConnKey(5), seq)]);
        let here = Here {
            workers: 2,
            redis: true,
            seqs: &conns,
            ..fixtures::here(&hub)
        };
        let local = message(Some(&format!("ab-0-{seq}")));
        let out = publish(
            local,
            Some(Location::Here(ConnKey(5))),
            1,
            &here,
            &snapshot(),
        );
        assert!(matches!(
            out.delivery,
            Delivery::Send { to: ConnKey(5), .. }
        ));
        assert_eq!(body(&out.answer.unwrap())["recipients"], 1);

        let p = message(Some("ab-1-3"));
        let to = target(&p, &here).unwrap();
        let out = publish(p, to, 2, &here, &snapshot());
        assert!(matches!(
            out.delivery,
            Delivery::Mail {
                worker: 1,
                seq: 3,
                ..
            }
        ));
        assert_eq!(out.answer, None);

        let p = message(Some("cd-0-1"));
        let to = target(&p, &here).unwrap();
        let out = publish(p, to, 3, &here, &snapshot());
        assert!(matches!(out.delivery, Delivery::Forward { .. }));
        assert_eq!(out.answer.unwrap().status, Status::ACCEPTED);

        let missing = message(Some("ab-0-99"));
        assert_eq!(
            target(&missing, &here).unwrap_err().status,
            Status::NOT_FOUND
        );
        let forged = message(Some(&format!("ab-0-{}", seq + (1 << 32))));
        assert_eq!(
            target(&forged, &here).unwrap_err().status,
            Status::NOT_FOUND
        );
    }

    #[test]
    fn a_channel_publish_waits_for_its_count_of_subscribers() {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let p = Publish {
            channel: Some("user:ann".into()),
            ..message(None)
        };
        let target = target(&p, &here).unwrap();
        let out = publish(p, target, 4, &here, &snapshot());
        assert_eq!(out.answer, None);
        match out.delivery {
            Delivery::Channel { channel, json } => {
                assert_eq!(channel, "user:ann");
                let v: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert_eq!(
                    (&v["scope"], &v["channel"]),
                    (&"user".into(), &"user:ann".into())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn periodic_names_its_count_and_the_clients() {
        let hub = Hub::default();
        let here = fixtures::here(&hub);
        let json: serde_json::Value =
            serde_json::from_str(&periodic(2, 9, &here, &snapshot())).unwrap();
        assert_eq!(
            json["message"],
            "Periodic notification #2 - active clients: 3"
        );
        assert_eq!(json["source"], "periodic");
        assert_eq!(json["id"], 9);
    }
}
