//! The HTTP phase of a connection: reading request heads and bodies,
//! answering through the routes, and switching to WebSocket.

use super::conn::{CloseMode, Phase, WsState};
use super::worker::{Worker, READS_PER_EVENT};
use super::write_queue::Chunk;
use crate::app::routes::{self, Endpoint, Route};
use crate::log;
use crate::proto::handshake;
use crate::proto::http::{
    body_length, parse_head, BodyLength, Head, Request, Response, Status, MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
};
use crate::proto::message::Receiver;

/// Requests served on one keep-alive connection before it is closed, so one
/// client cannot hold a connection forever.
const MAX_REQUESTS_PER_CONNECTION: u32 = 1000;
/// Answers queued for a client that pipelines requests without reading
/// them: past this, its requests wait, so memory stays bounded.
pub(super) const MAX_HTTP_QUEUED: usize = 256 * 1024;

impl Worker {
    pub(super) fn read_http(&mut self, key: usize) {
        self.process_http(key);
        for _ in 0..READS_PER_EVENT {
            // Stop reading while the buffer holds more than one request can
            // use, or while answers pile up unread: pipelined requests are
            // answered first, and reading resumes when the queue drains.
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let queued = conn.out.pending();
            let Phase::Http(http) = &mut conn.phase else {
                // Upgraded or closing: the socket may already hold frames or
                // the FIN, which an edge-triggered poll will not announce
                // again, so the new phase reads on.
                self.read_later(key);
                return;
            };
            if http.buf.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES || queued > MAX_HTTP_QUEUED {
                if !std::mem::replace(&mut http.stalled, true) {
                    self.shared.stats.limit_hit("http_backpressure");
                }
                return;
            }
            let n = match self.read_once(key) {
                None | Some(0) => return,
                Some(n) => n,
            };
            if let Some(conn) = self.conns.get_mut(key) {
                if let Phase::Http(http) = &mut conn.phase {
                    http.buf.extend_from_slice(&self.scratch[..n]);
                }
            }
            self.process_http(key);
        }
        self.read_later(key);
    }

    /// Answers every complete request in the buffer.
    fn process_http(&mut self, key: usize) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let queued = conn.out.pending();
            let Phase::Http(http) = &mut conn.phase else {
                return;
            };
            if http.parked.is_some() {
                return;
            }
            if queued > MAX_HTTP_QUEUED {
                if !std::mem::replace(&mut http.stalled, true) {
                    self.shared.stats.limit_hit("http_backpressure");
                }
                return;
            }
            if let Some((_, need)) = &http.awaiting_body {
                if http.buf.len() < *need {
                    return;
                }
                let need = *need;
                let Some((request, _)) = http.awaiting_body.take() else {
                    return;
                };
                let body: Vec<u8> = http.buf.drain(..need).collect();
                self.answer(key, request, body);
                continue;
            }
            match parse_head(&http.buf) {
                Head::Partial => return,
                Head::Invalid(status) => {
                    let head_only = http.buf.starts_with(b"HEAD ");
                    self.http_error(key, status, head_only);
                    return;
                }
                Head::Complete { request, len } => {
                    http.buf.drain(..len);
                    match body_length(&request) {
                        BodyLength::Invalid(status) => {
                            self.http_error(key, status, request.method == "HEAD");
                            return;
                        }
                        BodyLength::Fixed(0) => self.answer(key, request, Vec::new()),
                        BodyLength::Fixed(n) => {
                            // curl waits for this before sending bodies over 1 KiB.
                            let expects_continue = request
                                .header("expect")
                                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
                            http.awaiting_body = Some((request, n));
                            http.deadline = self.now + self.header_ticks;
                            if expects_continue && http.buf.len() < n {
                                self.send(
                                    key,
                                    Chunk::Owned(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn answer(&mut self, key: usize, request: Request, body: Vec<u8>) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let Phase::Http(http) = &conn.phase else {
            return;
        };
        let peer = http.peer.ip();
        match routes::route(&request, &body, peer, &self.shared) {
            Route::Respond(response) => self.respond(key, &request, response),
            Route::Upgrade { endpoint, accept } => self.upgrade(key, endpoint, &accept),
            Route::Publish(publish) => self.publish(key, request, publish),
        }
    }

    pub(super) fn respond(&mut self, key: usize, request: &Request, mut response: Response) {
        let header_ticks = self.header_ticks;
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Http(http) = &mut conn.phase else {
            return;
        };
        http.served += 1;
        let spent = http.served >= MAX_REQUESTS_PER_CONNECTION;
        let closing = response.close
            || !request.wants_keep_alive()
            || Response::must_close(response.status)
            || spent;
        if spent {
            self.shared.stats.limit_hit("keep_alive_requests");
        }
        http.deadline = now + header_ticks;
        response.close = closing;
        log!(
            Debug,
            "http request",
            method = request.method,
            path = request.path,
            status = response.status.0,
            peer = conn.peer_label()
        );
        self.send(key, Chunk::Owned(response.encode(request.method == "HEAD")));
        if closing {
            self.start_closing(key, CloseMode::Linger);
        }
    }

    /// Holds a request until another worker's answer arrives; returns the
    /// ticket that answer must carry.
    pub(super) fn park(&mut self, key: usize, request: Request) -> u64 {
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        if let Some(Phase::Http(http)) = self.conns.get_mut(key).map(|c| &mut c.phase) {
            http.parked = Some((ticket, request));
        }
        ticket
    }

    /// Answers a parked request, then goes on with any pipelined ones.
    pub(super) fn finish_publish(&mut self, key: usize, ticket: u64, response: Response) {
        let Some(Phase::Http(http)) = self.conns.get_mut(key).map(|c| &mut c.phase) else {
            return;
        };
        match http.parked.take() {
            Some((parked, request)) if parked == ticket => {
                self.respond(key, &request, response);
                self.read_later(key);
            }
            other => http.parked = other,
        }
    }

    /// Refuses a request and closes; a HEAD request gets the head of the
    /// answer only (RFC 9110 9.3.2).
    fn http_error(&mut self, key: usize, status: Status, head_only: bool) {
        let message = match status.0 {
            400 => "bad request",
            408 => "request head or body not received in time",
            411 => "chunked request bodies are not supported; send Content-Length",
            413 => "request body over 64 KiB",
            431 => "request head over 8 KiB",
            505 => "only HTTP/1.x is supported",
            _ => status.reason(),
        };
        if let Some(conn) = self.conns.get(key) {
            log!(
                Debug,
                "http error",
                status = status.0,
                peer = conn.peer_label()
            );
        }
        let limit = match status.0 {
            408 => Some("header_timeout"),
            411 => Some("chunked_body"),
            413 => Some("body_too_large"),
            431 => Some("head_too_large"),
            _ => None,
        };
        if let Some(limit) = limit {
            self.shared.stats.limit_hit(limit);
        }
        let response = Response::error(status, message).closing();
        self.send(key, Chunk::Owned(response.encode(head_only)));
        self.start_closing(key, CloseMode::Linger);
    }

    pub(super) fn on_http_deadline(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let Phase::Http(http) = &conn.phase else {
            return;
        };
        if http.deadline > self.now {
            return;
        }
        // The worker that should have answered has stopped: it had no
        // clients left, so the client asked for is not connected.
        if let Some((ticket, _)) = &http.parked {
            let ticket = *ticket;
            self.finish_publish(key, ticket, super::fanout::published(false, 0));
            return;
        }
        // A keep-alive connection that simply stays quiet is closed without
        // a word; one stuck in the middle of a request is told why.
        if http.served > 0 && http.buf.is_empty() && http.awaiting_body.is_none() {
            self.close(key, "keep-alive timeout");
        } else {
            let head_only = match &http.awaiting_body {
                Some((request, _)) => request.method == "HEAD",
                None => http.buf.starts_with(b"HEAD "),
            };
            self.http_error(key, Status::REQUEST_TIMEOUT, head_only);
        }
    }

    fn upgrade(&mut self, key: usize, endpoint: Endpoint, accept: &str) {
        let max_message = self.shared.config.max_message_bytes;
        let next_ping = self.now + self.ping_ticks.unwrap_or(0);
        let now = self.now;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Phase::Http(http) = &mut conn.phase else {
            return;
        };
        // A client may send its first frames right behind the request.
        let early_frames = std::mem::take(&mut http.buf);
        let peer = http.peer;
        conn.phase = Phase::Ws(WsState {
            rx: Receiver::new(max_message),
            endpoint,
            seq: 0,
            last_seen: now,
            next_ping,
        });
        self.send(key, Chunk::Owned(handshake::switching_protocols(accept)));
        self.per_ip_upgraded(key);
        self.join(key, peer);
        self.arm(key);
        if !early_frames.is_empty() {
            self.feed_ws(key, &early_frames);
        }
    }
}
