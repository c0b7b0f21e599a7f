//! The HTTP routes: which answer a request gets. Pure: it decides from the
//! request, the configuration and a snapshot; the shell carries out
//! upgrades and publications and counts refusals.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::bad_request::BadRequest;
use super::channel_name;
use super::hub::{Endpoint, Here};
use super::snapshot::Snapshot;
use super::status;
use super::token::{self, Claims};
use crate::config::Config;
use crate::obs::metrics::HandshakeFailure;
use crate::proto::handshake;
use crate::proto::http::{Request, Response, Status};
use crate::proto::negotiate::{self, Agreement};

const INDEX_HTML: &str = include_str!("../web/index.html");
/// The resuming client module the page uses, for users to copy.
const CLIENT_JS: &str = include_str!("../web/client.js");

/// Where a resuming client left the broadcast stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeFrom {
    pub since: u64,
    pub epoch: String,
}

/// A notification to publish, as the API received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub message: String,
    pub category: String,
    pub data: Option<Value>,
    pub client_id: Option<String>,
    /// To a channel's subscribers: a checked name, `user:ID` for a
    /// publish to a user.
    pub channel: Option<String>,
}

#[derive(Debug)]
pub enum Route {
    Respond(Response),
    /// An upgrade refused, with the reason it counts under.
    Refuse(HandshakeFailure, Response),
    Upgrade {
        endpoint: Endpoint,
        accept: String,
        /// `/ws?since=N&epoch=E`: where the client left the stream.
        resume: Option<ResumeFrom>,
        /// What the client's token proved, if it gave one (`/ws` only).
        claims: Option<Claims>,
        /// The permessage-deflate offer accepted, if any.
        deflate: Option<Agreement>,
    },
    Publish(Publish),
    /// The shell's counters in the Prometheus text format.
    Metrics,
    /// `GET /channels`: the process's channels with subscribers.
    Channels,
}

pub fn route(
    req: &Request,
    body: &[u8],
    peer: IpAddr,
    config: &Config,
    here: &Here,
    snapshot: &Snapshot,
) -> Route {
    let path = req.path.as_str();
    let get_like = req.method == "GET" || req.method == "HEAD";
    match path {
        "/ws" => upgrade(req, Endpoint::Notify, config, snapshot),
        "/echo" if config.enable_echo => upgrade(req, Endpoint::Echo, config, snapshot),
        "/" | "/index.html" if get_like => Route::Respond(Response::new(
            Status::OK,
            "text/html; charset=utf-8",
            INDEX_HTML,
        )),
        "/client.js" if get_like => Route::Respond(Response::new(
            Status::OK,
            "text/javascript; charset=utf-8",
            CLIENT_JS,
        )),
        "/health" if get_like => Route::Respond(if snapshot.draining {
            Response::json(
                Status::SERVICE_UNAVAILABLE,
                &json!({ "status": "draining" }),
            )
        } else {
            Response::json(Status::OK, &json!({ "status": "ok" }))
        }),
        "/status" if get_like => {
            Route::Respond(Response::json(Status::OK, &status::fields(snapshot, here)))
        }
        "/metrics" if get_like => Route::Metrics,
        "/channels" if get_like => Route::Channels,
        "/" | "/index.html" | "/client.js" | "/health" | "/status" | "/metrics" | "/channels" => {
            Route::Respond(method_not_allowed("GET, HEAD"))
        }
        "/broadcast" | "/notify" if req.method == "POST" => match authorize(req, peer, config) {
            Err(response) => Route::Respond(response),
            Ok(()) => match parse_publish(req, body) {
                Ok(publish) => Route::Publish(publish),
                Err(bad) => Route::Respond(Response::error(Status::BAD_REQUEST, &bad.to_string())),
            },
        },
        "/broadcast" | "/notify" => Route::Respond(method_not_allowed("POST")),
        _ => Route::Respond(Response::error(Status::NOT_FOUND, "not found")),
    }
}

fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(Status::METHOD_NOT_ALLOWED, "method not allowed").with_header("Allow", allow)
}

fn upgrade(req: &Request, endpoint: Endpoint, config: &Config, snapshot: &Snapshot) -> Route {
    let accept = match handshake::validate(req) {
        Ok(accept) => accept,
        Err(refusal) => return Route::Refuse(refusal.reason, refusal.response()),
    };
    if let Some(origin) = req.header("origin") {
        if !config.origin_allowed(origin) {
            return Route::Refuse(
                HandshakeFailure::Origin,
                Response::error(Status::FORBIDDEN, "origin not allowed"),
            );
        }
    }
    // `/echo` is a test endpoint outside the notification protocol: a
    // token there means nothing.
    let claims = match endpoint {
        Endpoint::Notify => {
            let secret = config.token_secret.as_ref().map(|s| s.key());
            match token::authenticate(req, secret, config.require_token, snapshot.now_ms) {
                Ok(claims) => claims,
                Err(refused) => {
                    return Route::Refuse(
                        HandshakeFailure::Token,
                        Response::error(Status::UNAUTHORIZED, &refused.to_string())
                            .with_header("WWW-Authenticate", "Bearer"),
                    )
                }
            }
        }
        Endpoint::Echo => None,
    };
    let unavailable = |reason, message| {
        Route::Refuse(
            reason,
            Response::error(Status::SERVICE_UNAVAILABLE, message)
                .with_header("Retry-After", "5")
                .closing(),
        )
    };
    // A process whose sockets another one serves stops accepting when it
    // drains: what reaches it now was accepted before, and is served.
    if snapshot.draining && !snapshot.listener_shared {
        return unavailable(
            HandshakeFailure::Draining,
            "server is draining; connect to another instance",
        );
    }
    if snapshot.active >= config.max_connections as u64 {
        return unavailable(
            HandshakeFailure::Capacity,
            "server is at its connection limit",
        );
    }
    let resume = match endpoint {
        Endpoint::Notify => match resume_from(req.query.as_deref().unwrap_or("")) {
            Ok(resume) => resume,
            Err(bad) => {
                return Route::Refuse(
                    HandshakeFailure::BadResume,
                    Response::error(Status::BAD_REQUEST, &bad.to_string()),
                )
            }
        },
        Endpoint::Echo => None,
    };
    let per_ip = config.max_connections_per_ip as u64;
    if per_ip > 0 && snapshot.peer_clients >= per_ip {
        return unavailable(
            HandshakeFailure::PerIp,
            "too many connections from your address",
        );
    }
    let deflate = if config.compression {
        negotiate::negotiate(req)
    } else {
        None
    };
    Route::Upgrade {
        endpoint,
        accept,
        resume,
        claims,
        deflate,
    }
}

/// `since` and `epoch` from the `/ws` query: both or neither; other
/// parameters are left alone.
fn resume_from(query: &str) -> Result<Option<ResumeFrom>, BadRequest> {
    let (mut since, mut epoch) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "since" => since = Some(value),
            "epoch" => epoch = Some(form_decode(value)?),
            _ => {}
        }
    }
    let since = since
        .map(|s| match s.parse::<u64>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(BadRequest::SinceNotAnInteger),
        })
        .transpose()?;
    match (since, epoch) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(BadRequest::SinceWithoutEpoch),
        (None, Some(_)) => Err(BadRequest::EpochWithoutSince),
        (Some(_), Some(e)) if e.is_empty() => Err(BadRequest::EmptyEpoch),
        (Some(since), Some(epoch)) => Ok(Some(ResumeFrom { since, epoch })),
    }
}

/// Publishing needs the admin token when one is set, else a loopback peer.
fn authorize(req: &Request, peer: IpAddr, config: &Config) -> Result<(), Response> {
    match &config.admin_token {
        Some(token) => {
            let given = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
                _ => Err(
                    Response::error(Status::UNAUTHORIZED, "missing or invalid bearer token")
                        .with_header("WWW-Authenticate", "Bearer"),
                ),
            }
        }
        None if is_loopback(peer) => Ok(()),
        None => Err(Response::error(
            Status::FORBIDDEN,
            "publishing is allowed from loopback only unless --admin-token is set",
        )),
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell an attacker how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_publish(req: &Request, body: &[u8]) -> Result<Publish, BadRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return publish_from_query(req.query.as_deref().unwrap_or(""));
    }
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(BadRequest::NotAnObject),
        Err(e) => return Err(BadRequest::InvalidJson(e.to_string())),
    };
    let optional_string = |field: &'static str| match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BadRequest::NotAString(field)),
    };
    let message = optional_string("message")?.ok_or(BadRequest::MissingMessage)?;
    let category = match optional_string("type")? {
        Some(c) => Some(c),
        None => optional_string("category")?,
    };
    let client_id = optional_string("client_id")?;
    let channel = optional_string("channel")?;
    let user = optional_string("user")?;
    Ok(Publish {
        message,
        category: category.unwrap_or_else(|| "info".into()),
        data: object.get("data").cloned(),
        channel: target_channel(client_id.is_some(), channel, user)?,
        client_id,
    })
}

/// The channel a publish goes to, from its `channel` or `user`: at most
/// one of them and `client_id`, each a valid name or user id.
fn target_channel(
    client_id: bool,
    channel: Option<String>,
    user: Option<String>,
) -> Result<Option<String>, BadRequest> {
    if usize::from(client_id) + usize::from(channel.is_some()) + usize::from(user.is_some()) > 1 {
        return Err(BadRequest::TooManyTargets);
    }
    if let Some(channel) = channel {
        channel_name::kind(&channel).map_err(BadRequest::BadChannel)?;
        return Ok(Some(channel));
    }
    user.map(|user| channel_name::user_channel(&user).map_err(BadRequest::BadUser))
        .transpose()
}

fn publish_from_query(query: &str) -> Result<Publish, BadRequest> {
    let mut publish = Publish {
        message: String::new(),
        category: "info".into(),
        data: None,
        client_id: None,
        channel: None,
    };
    let (mut channel, mut user) = (None, None);
    let mut has_message = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = form_decode(value)?;
        match form_decode(key)?.as_str() {
            "message" => {
                publish.message = value;
                has_message = true;
            }
            "client_id" => publish.client_id = Some(value),
            "channel" => channel = Some(value),
            "user" => user = Some(value),
            "type" | "category" => publish.category = value,
            _ => {}
        }
    }
    if !has_message {
        return Err(BadRequest::MissingMessageInQuery);
    }
    publish.channel = target_channel(publish.client_id.is_some(), channel, user)?;
    Ok(publish)
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn form_decode(text: &str) -> Result<String, BadRequest> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(BadRequest::BadPercentEncoding)?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| BadRequest::QueryNotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::fixtures;
    use crate::app::hub::Hub;
    use crate::proto::http::{parse_head, Head};
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    /// What a route is decided from.
    struct Ctx {
        config: Config,
        hub: Hub,
        snapshot: Snapshot,
    }

    impl Ctx {
        fn start_drain(&mut self) {
            self.snapshot.draining = true;
        }
    }

    fn shared_with(edit: impl FnOnce(&mut Config)) -> Ctx {
        let mut config = Config::default();
        edit(&mut config);
        Ctx {
            config,
            hub: Hub::default(),
            snapshot: fixtures::snapshot(),
        }
    }

    fn route(req: &Request, body: &[u8], peer: IpAddr, ctx: &Ctx) -> Route {
        let here = fixtures::here(&ctx.hub);
        super::route(req, body, peer, &ctx.config, &here, &ctx.snapshot)
    }

    fn request(head: &str) -> Request {
        match parse_head(head.as_bytes()) {
            Head::Complete { request, .. } => request,
            other => panic!("{other:?}"),
        }
    }

    fn status(route: Route) -> u16 {
        match route {
            Route::Respond(r) | Route::Refuse(_, r) => r.status.0,
            Route::Upgrade { .. } => 101,
            Route::Publish(_) => 0,
            Route::Metrics | Route::Channels => 200,
        }
    }

    fn post(body: &str) -> Route {
        let shared = shared_with(|_| {});
        route(
            &request("POST /broadcast HTTP/1.1\r\n\r\n"),
            body.as_bytes(),
            LOCAL,
            &shared,
        )
    }

    const UPGRADE: &str = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

    #[test]
    fn simple_gets() {
        let shared = shared_with(|_| {});
        for (path, code) in [
            ("/", 200),
            ("/client.js", 200),
            ("/health", 200),
            ("/status", 200),
            ("/metrics", 200),
            ("/nope", 404),
            ("/echo", 404),
        ] {
            let req = request(&format!("GET {path} HTTP/1.1\r\n\r\n"));
            assert_eq!(status(route(&req, b"", LOCAL, &shared)), code, "{path}");
        }
        let req = request("DELETE /health HTTP/1.1\r\n\r\n");
        match route(&req, b"", LOCAL, &shared) {
            Route::Respond(r) => {
                assert_eq!(r.status.0, 405);
                assert!(r
                    .headers
                    .iter()
                    .any(|(n, v)| *n == "Allow" && v.contains("GET")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resume_parameters() {
        let shared = shared_with(|_| {});
        let ws = |query: &str| {
            let head = UPGRADE.replace("/ws", &format!("/ws?{query}"));
            route(&request(&format!("{head}\r\n")), b"", LOCAL, &shared)
        };
        match ws("since=12&epoch=a%20b&x=1") {
            Route::Upgrade { resume, .. } => assert_eq!(
                resume,
                Some(ResumeFrom {
                    since: 12,
                    epoch: "a b".into()
                })
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(ws("x=1"), Route::Upgrade { resume: None, .. }));
        for (query, names) in [
            ("since=-1&epoch=e", "since"),
            ("since=+1&epoch=e", "since"),
            ("since=&epoch=e", "since"),
            ("since=99999999999999999999&epoch=e", "since"),
            ("since=1", "epoch"),
            ("epoch=e", "since"),
            ("since=1&epoch=", "epoch"),
        ] {
            match ws(query) {
                Route::Refuse(HandshakeFailure::BadResume, r) => {
                    assert_eq!(r.status.0, 400, "{query}");
                    let body = String::from_utf8_lossy(&r.body).to_string();
                    assert!(body.contains(names), "{query}: {body}");
                }
                other => panic!("{query}: {other:?}"),
            }
        }
    }

    #[test]
    fn permessage_deflate_is_agreed_on_both_endpoints_unless_compression_is_off() {
        let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
        let deflate_of = |path: &str, compression: bool| {
            let ctx = shared_with(|c| {
                c.enable_echo = true;
                c.compression = compression;
            });
            let head = format!("{}{offer}\r\n", UPGRADE.replace("/ws", path));
            match route(&request(&head), b"", LOCAL, &ctx) {
                Route::Upgrade { deflate, .. } => deflate.map(Agreement::response),
                other => panic!("{other:?}"),
            }
        };
        let agreed =
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        assert_eq!(deflate_of("/ws", true), agreed);
        assert_eq!(deflate_of("/echo", true), agreed);
        assert_eq!(deflate_of("/ws", false), None);
        assert_eq!(deflate_of("/echo", false), None);
        let ctx = shared_with(|_| {});
        let plain = route(&request(&format!("{UPGRADE}\r\n")), b"", LOCAL, &ctx);
        assert!(
            matches!(plain, Route::Upgrade { deflate: None, .. }),
            "{plain:?}"
        );
    }

    #[test]
    fn upgrades_and_their_refusals() {
        let shared = shared_with(|c| c.enable_echo = true);
        assert_eq!(
            status(route(
                &request(&format!("{UPGRADE}\r\n")),
                b"",
                LOCAL,
                &shared
            )),
            101
        );
        let echo = UPGRADE.replace("/ws", "/echo");
        assert!(matches!(
            route(&request(&format!("{echo}\r\n")), b"", LOCAL, &shared),
            Route::Upgrade {
                endpoint: Endpoint::Echo,
                ..
            }
        ));
        assert_eq!(
            status(route(
                &request("POST /ws HTTP/1.1\r\n\r\n"),
                b"",
                LOCAL,
                &shared
            )),
            405
        );
        assert_eq!(
            status(route(
                &request("GET /ws HTTP/1.1\r\n\r\n"),
                b"",
                LOCAL,
                &shared
            )),
            426
        );
    }

    #[test]
    fn an_address_holding_its_websocket_clients_is_refused_503() {
        let mut ctx = shared_with(|c| c.max_connections_per_ip = 2);
        let upgrade = request(&format!("{UPGRADE}\r\n"));
        ctx.snapshot.peer_clients = 1;
        assert_eq!(status(route(&upgrade, b"", LOCAL, &ctx)), 101);
        ctx.snapshot.peer_clients = 2;
        match route(&upgrade, b"", LOCAL, &ctx) {
            Route::Refuse(HandshakeFailure::PerIp, response) => {
                assert_eq!(response.status, Status::SERVICE_UNAVAILABLE);
                assert!(response.close);
            }
            other => panic!("{other:?}"),
        }
        // Plain requests are not WebSocket clients.
        let health = request("GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(status(route(&health, b"", LOCAL, &ctx)), 200);
    }

    #[test]
    fn origin_rules() {
        let shared = shared_with(|c| c.allowed_origins = Some(vec!["https://app.example".into()]));
        let with = |origin: &str| request(&format!("{UPGRADE}Origin: {origin}\r\n\r\n"));
        assert_eq!(
            status(route(&with("https://APP.example"), b"", LOCAL, &shared)),
            101
        );
        assert_eq!(
            status(route(&with("https://evil.example"), b"", LOCAL, &shared)),
            403
        );
        assert_eq!(
            status(route(
                &request(&format!("{UPGRADE}\r\n")),
                b"",
                LOCAL,
                &shared
            )),
            101
        );
    }

    #[test]
    fn draining_refuses_upgrades_and_fails_health() {
        let mut shared = shared_with(|_| {});
        shared.start_drain();
        assert_eq!(
            status(route(
                &request(&format!("{UPGRADE}\r\n")),
                b"",
                LOCAL,
                &shared
            )),
            503
        );
        assert_eq!(
            status(route(
                &request("GET /health HTTP/1.1\r\n\r\n"),
                b"",
                LOCAL,
                &shared
            )),
            503
        );
    }

    #[test]
    fn draining_with_a_shared_socket_serves_upgrades() {
        let mut shared = shared_with(|_| {});
        shared.start_drain();
        shared.snapshot.listener_shared = true;
        let upgrade = route(&request(&format!("{UPGRADE}\r\n")), b"", LOCAL, &shared);
        assert!(matches!(upgrade, Route::Upgrade { .. }), "{upgrade:?}");
        let health = route(
            &request("GET /health HTTP/1.1\r\n\r\n"),
            b"",
            LOCAL,
            &shared,
        );
        assert_eq!(status(health), 503);
    }

    #[test]
    fn publish_bodies() {
        match post(r#"{"message":"hi","type":"alert","data":{"a":1},"client_id":"x-0-1"}"#) {
            Route::Publish(p) => {
                assert_eq!(p.message, "hi");
                assert_eq!(p.category, "alert");
                assert_eq!(p.data, Some(json!({"a": 1})));
                assert_eq!(p.client_id.as_deref(), Some("x-0-1"));
            }
            other => panic!("{other:?}"),
        }
        match post(r#"{"message":"hi","category":"warn"}"#) {
            Route::Publish(p) => assert_eq!((p.category.as_str(), p.data), ("warn", None)),
            other => panic!("{other:?}"),
        }
        for bad in [
            "{",
            "[1]",
            "\"x\"",
            "{}",
            r#"{"message":1}"#,
            r#"{"message":"x","type":2}"#,
        ] {
            assert_eq!(status(post(bad)), 400, "{bad}");
        }
    }

    #[test]
    fn publish_to_a_channel_or_a_user_one_target_at_most() {
        let channel = |route: Route| match route {
            Route::Publish(p) => p.channel,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            channel(post(r#"{"message":"m","channel":"news"}"#)).as_deref(),
            Some("news")
        );
        assert_eq!(
            channel(post(r#"{"message":"m","user":"ann b"}"#)).as_deref(),
            Some("user:ann b")
        );
        for bad in [
            r#"{"message":"m","channel":"a b"}"#,
            r#"{"message":"m","channel":""}"#,
            r#"{"message":"m","user":""}"#,
            r#"{"message":"m","channel":1}"#,
            r#"{"message":"m","channel":"a","user":"b"}"#,
            r#"{"message":"m","channel":"a","client_id":"x-0-1"}"#,
            r#"{"message":"m","user":"b","client_id":"x-0-1"}"#,
        ] {
            assert_eq!(status(post(bad)), 400, "{bad}");
        }
        let shared = shared_with(|_| {});
        let req = request("POST /notify?message=m&user=ann HTTP/1.1\r\n\r\n");
        assert_eq!(
            channel(route(&req, b"", LOCAL, &shared)).as_deref(),
            Some("user:ann")
        );
        let req = request("POST /notify?message=m&channel=a&user=ann HTTP/1.1\r\n\r\n");
        assert_eq!(status(route(&req, b"", LOCAL, &shared)), 400);
        let req = request("GET /channels HTTP/1.1\r\n\r\n");
        assert!(matches!(route(&req, b"", LOCAL, &shared), Route::Channels));
        let req = request("POST /channels HTTP/1.1\r\n\r\n");
        assert_eq!(status(route(&req, b"", LOCAL, &shared)), 405);
    }

    #[test]
    fn publish_from_query_string() {
        let shared = shared_with(|_| {});
        let req = request("POST /notify?message=hello+w%C3%B6rld&client_id=a-0-1 HTTP/1.1\r\n\r\n");
        match route(&req, b"", LOCAL, &shared) {
            Route::Publish(p) => {
                assert_eq!(p.message, "hello wörld");
                assert_eq!(p.client_id.as_deref(), Some("a-0-1"));
            }
            other => panic!("{other:?}"),
        }
        let req = request("POST /notify?message=%zz HTTP/1.1\r\n\r\n");
        assert_eq!(status(route(&req, b"", LOCAL, &shared)), 400);
        let req = request("POST /notify HTTP/1.1\r\n\r\n");
        assert_eq!(status(route(&req, b"", LOCAL, &shared)), 400);
    }

    #[test]
    fn publish_authorization() {
        let open = shared_with(|_| {});
        let req = request("POST /broadcast HTTP/1.1\r\n\r\n");
        assert_eq!(
            status(route(&req, br#"{"message":"m"}"#, REMOTE, &open)),
            403
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(status(route(&req, br#"{"message":"m"}"#, mapped, &open)), 0);
        let guarded = shared_with(|c| c.admin_token = Some("s3cret".into()));
        assert_eq!(
            status(route(&req, br#"{"message":"m"}"#, LOCAL, &guarded)),
            401
        );
        let wrong = request("POST /broadcast HTTP/1.1\r\nAuthorization: Bearer nope\r\n\r\n");
        assert_eq!(
            status(route(&wrong, br#"{"message":"m"}"#, LOCAL, &guarded)),
            401
        );
        let right = request("POST /broadcast HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n");
        assert_eq!(
            status(route(&right, br#"{"message":"m"}"#, REMOTE, &guarded)),
            0
        );
        assert_eq!(
            status(route(
                &request("GET /broadcast HTTP/1.1\r\n\r\n"),
                b"",
                LOCAL,
                &open
            )),
            405
        );
    }
}
