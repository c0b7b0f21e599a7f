//! The HTTP phase: request heads and bodies out of the received bytes,
//! answers in order, keep-alive, and the switch to WebSocket.

use super::event::{Closed, Event, Stale};
use super::machine::Connection;
use super::settings::{Settings, Tick, CONTINUE, MAX_HTTP_QUEUED, MAX_REQUESTS_PER_CONNECTION};
use super::state::{CloseMode, Phase, WsState};
use super::write_queue::Chunk;
use crate::obs::metrics::Limit;
use crate::proto::handshake::switching_protocols;
use crate::proto::http::{
    body_length, parse_head, BodyLength, Head, HttpError, Request, Response, MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
};
use crate::proto::negotiate::Agreement;

impl<C: Copy> Connection<C> {
    pub(super) fn http_receive(
        &mut self,
        input: &[u8],
        now: Tick,
        settings: &Settings,
    ) -> (usize, Option<Event<C>>) {
        if let Phase::Http(http) = &mut self.phase {
            http.buf.extend_from_slice(input);
        }
        (input.len(), self.next_request(now, settings))
    }

    /// Whether the shell should read more: not while the buffer holds more
    /// than one request can use, or while answers pile up unread (pipelined
    /// requests are answered first, and reading resumes when the queue
    /// drains). The error is the limit hit, the first time.
    pub fn wants_input(&mut self) -> Result<(), Option<Limit>> {
        let queued = self.out.pending();
        match &mut self.phase {
            Phase::Http(http)
                if http.buf.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES || queued > MAX_HTTP_QUEUED =>
            {
                Err(http.stall())
            }
            _ => Ok(()),
        }
    }

    /// The next complete request in the buffer, if one may be answered now.
    fn next_request(&mut self, now: Tick, settings: &Settings) -> Option<Event<C>> {
        loop {
            let queued = self.out.pending();
            let Phase::Http(http) = &mut self.phase else {
                return None;
            };
            if http.parked.is_some() {
                return None;
            }
            if queued > MAX_HTTP_QUEUED {
                return http.stall().map(Event::Limit);
            }
            if let Some((_, need)) = &http.awaiting_body {
                let need = *need;
                if http.buf.len() < need {
                    return None;
                }
                let (request, _) = http.awaiting_body.take()?;
                let body: Vec<u8> = http.buf.drain(..need).collect();
                http.release_if_idle();
                return Some(Event::Request { request, body });
            }
            match parse_head(&http.buf) {
                Head::Partial => return None,
                Head::Invalid(error) => {
                    let head_only = http.buf.starts_with(b"HEAD ");
                    return Some(self.refuse(error, head_only, now, settings));
                }
                Head::Complete { request, len } => {
                    http.buf.drain(..len);
                    match body_length(&request) {
                        BodyLength::Invalid(error) => {
                            let head_only = request.method == "HEAD";
                            return Some(self.refuse(error, head_only, now, settings));
                        }
                        BodyLength::Fixed(0) => {
                            http.release_if_idle();
                            return Some(Event::Request {
                                request,
                                body: Vec::new(),
                            });
                        }
                        BodyLength::Fixed(n) => {
                            // curl waits for this before sending bodies over 1 KiB.
                            let expects_continue = request
                                .header("expect")
                                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
                            http.awaiting_body = Some((request, n));
                            http.deadline = now + settings.header;
                            if expects_continue && http.buf.len() < n {
                                self.out.push(Chunk::Static(CONTINUE));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Answers the request of the last `Request` event; returns the limit
    /// it hit, if any.
    pub fn respond(
        &mut self,
        request: &Request,
        mut response: Response,
        now: Tick,
        settings: &Settings,
    ) -> Option<Event<C>> {
        let Phase::Http(http) = &mut self.phase else {
            return None;
        };
        http.served += 1;
        let spent = http.served >= MAX_REQUESTS_PER_CONNECTION;
        let closing = response.close
            || !request.wants_keep_alive()
            || Response::must_close(response.status)
            || spent;
        http.deadline = now + settings.header;
        response.close = closing;
        self.out
            .push(Chunk::Answer(response.encode(request.method == "HEAD")));
        if closing {
            self.start_closing(CloseMode::Linger, now, settings);
        }
        spent.then_some(Event::Limit(Limit::KeepAliveRequests))
    }

    /// Switches to WebSocket with the 101 answer queued, carrying `client`.
    /// Returns the bytes the client sent behind its request (its first
    /// frames), for the shell to feed.
    /// With `deflate`, permessage-deflate was agreed on: its answer goes
    /// in the 101, and compressed messages are taken from then on.
    pub fn upgrade(
        &mut self,
        accept: &str,
        deflate: Option<Agreement>,
        client: C,
        now: Tick,
        settings: &Settings,
    ) -> Vec<u8> {
        let Phase::Http(http) = &mut self.phase else {
            return Vec::new();
        };
        let early_frames = std::mem::take(&mut http.buf);
        let ws = WsState::new(client, deflate.is_some(), now, settings);
        self.enter(Phase::Ws(ws));
        let extensions = deflate.map(Agreement::response);
        self.out
            .push(Chunk::Answer(switching_protocols(accept, extensions)));
        early_frames
    }

    /// Bytes of a next request were read behind the one being answered
    /// (pipelined): an answer meant to be the last waits for that one.
    pub fn holds_next_request(&self) -> bool {
        matches!(&self.phase, Phase::Http(http) if !http.buf.is_empty())
    }

    /// The server owes this connection an answer it must not walk away
    /// from: a request read (whole or in part) and not answered yet, or
    /// its last bytes (an answer, a Close) not yet written. A drain that
    /// ends holds its exit for it.
    pub fn owes_answer(&self) -> bool {
        match &self.phase {
            Phase::Http(http) => {
                !self.out.is_empty()
                    || http.parked.is_some()
                    || http.awaiting_body.is_some()
                    || !http.buf.is_empty()
            }
            Phase::Closing(_) => !self.out.is_empty(),
            Phase::Ws(_) => false,
        }
    }

    /// Holds the request of the last `Request` event until an answer with
    /// `ticket` arrives (from another worker).
    pub fn park(&mut self, ticket: u64, request: Request) {
        if let Phase::Http(http) = &mut self.phase {
            http.parked = Some((ticket, request));
        }
    }

    /// Answers a parked request; the shell then feeds the connection again
    /// for any pipelined ones.
    pub fn answer_parked(
        &mut self,
        ticket: u64,
        response: Response,
        now: Tick,
        settings: &Settings,
    ) -> Result<Option<Event<C>>, Stale> {
        let Phase::Http(http) = &mut self.phase else {
            return Err(Stale);
        };
        match http.parked.take() {
            Some((parked, request)) if parked == ticket => {
                Ok(self.respond(&request, response, now, settings))
            }
            other => {
                http.parked = other;
                Err(Stale)
            }
        }
    }

    /// Answers before any request is read, and closes: for a connection
    /// turned away as it is accepted.
    pub fn turn_away(&mut self, response: Response, now: Tick, settings: &Settings) {
        self.out.push(Chunk::Answer(response.encode(false)));
        self.start_closing(CloseMode::Linger, now, settings);
    }

    /// Refuses a request and closes; a HEAD request gets the head of the
    /// answer only (RFC 9110 9.3.2).
    fn refuse(
        &mut self,
        error: HttpError,
        head_only: bool,
        now: Tick,
        settings: &Settings,
    ) -> Event<C> {
        let response = Response::error(error.status(), error.message()).closing();
        self.out.push(Chunk::Answer(response.encode(head_only)));
        self.start_closing(CloseMode::Linger, now, settings);
        Event::Refused(error)
    }

    pub(super) fn http_deadline(&mut self, now: Tick, settings: &Settings) -> Option<Event<C>> {
        let Phase::Http(http) = &self.phase else {
            return None;
        };
        // The worker that should have answered has stopped.
        if let Some((ticket, _)) = &http.parked {
            return Some(Event::ParkExpired(*ticket));
        }
        // A keep-alive connection that simply stays quiet is closed without
        // a word; one stuck in the middle of a request is told why.
        if http.served > 0 && http.buf.is_empty() && http.awaiting_body.is_none() {
            return Some(Event::Closed(Closed::KeepAliveTimeout));
        }
        let head_only = match &http.awaiting_body {
            Some((request, _)) => request.method == "HEAD",
            None => http.buf.starts_with(b"HEAD "),
        };
        Some(self.refuse(HttpError::Timeout, head_only, now, settings))
    }
}
