//! The WebSocket phase of a connection: frames in, messages dispatched,
//! control frames answered, and the close handshake.

use std::net::SocketAddr;

use super::conn::{CloseMode, Phase};
use super::worker::{Worker, READS_PER_EVENT};
use super::write_queue::Chunk;
use crate::app::hub;
use crate::app::protocol;
use crate::app::routes::Endpoint;
use crate::log;
use crate::obs::metrics;
use crate::proto::close::CloseCode;
use crate::proto::frame::{encode_close, encode_frame, Opcode};
use crate::proto::message::{Message, Receiver};

/// An empty Ping frame, the same bytes for every client.
const EMPTY_PING: &[u8] = &[0x89, 0x00];

impl Worker {
    pub(super) fn read_ws(&mut self, key: usize) {
        for _ in 0..READS_PER_EVENT {
            let n = match self.read_once(key) {
                None | Some(0) => return,
                Some(n) => n,
            };
            let scratch = std::mem::take(&mut self.scratch);
            self.feed_ws(key, &scratch[..n]);
            self.scratch = scratch;
            if !self.conns.get(key).is_some_and(|c| c.is_ws()) {
                // Closing now: its reader takes the rest (the FIN may be
                // waiting already, and no new event would announce it).
                self.read_later(key);
                return;
            }
        }
        self.read_later(key);
    }

    pub(super) fn feed_ws(&mut self, key: usize, mut input: &[u8]) {
        while !input.is_empty() {
            let now = self.now;
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let Phase::Ws(ws) = &mut conn.phase else {
                return;
            };
            ws.last_seen = now;
            let (used, result) = ws.rx.feed(input);
            input = &input[used..];
            match result {
                Ok(None) => {}
                Ok(Some(message)) => {
                    let close = matches!(message, Message::Close(_));
                    self.on_message(key, message);
                    if close && !input.is_empty() {
                        self.peer_still_sending(key);
                    }
                }
                Err(code) => {
                    if code == CloseCode::MESSAGE_TOO_BIG {
                        self.shared.stats.limit_hit("message_too_big");
                    }
                    log!(
                        Debug,
                        "protocol violation",
                        client = self.client_label(key),
                        code = code.0
                    );
                    self.send(key, Chunk::Owned(encode_close(code, code.reason())));
                    self.leave_ws(key, code.reason());
                    self.start_closing(key, CloseMode::Linger);
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, key: usize, message: Message) {
        let Some(Phase::Ws(ws)) = self.conns.get(key).map(|c| &c.phase) else {
            return;
        };
        let endpoint = ws.endpoint;
        match message {
            Message::Text(data) if endpoint == Endpoint::Echo => {
                self.echo(key, Opcode::Text, &data)
            }
            Message::Binary(data) if endpoint == Endpoint::Echo => {
                self.echo(key, Opcode::Binary, &data)
            }
            Message::Text(data) => {
                metrics::add(&self.shared.stats.messages_received, 1);
                self.on_client_text(key, &data);
            }
            Message::Binary(_) => {
                metrics::add(&self.shared.stats.messages_received, 1);
                self.send_json(
                    key,
                    &protocol::error("binary messages are not supported; send JSON text"),
                );
            }
            Message::Ping(payload) => self.send_frame_bytes(key, Opcode::Pong, &payload),
            Message::Pong(_) => {}
            Message::Close(code) => {
                let reply = match code {
                    Some(code) => encode_close(code, ""),
                    None => encode_frame(Opcode::Close, &[]),
                };
                self.send(key, Chunk::Owned(reply));
                self.leave_ws(key, "client closed");
                self.start_closing(key, CloseMode::AfterFlush);
            }
        }
    }

    fn echo(&mut self, key: usize, opcode: Opcode, data: &[u8]) {
        metrics::add(&self.shared.stats.messages_received, 1);
        metrics::add(&self.shared.stats.messages_sent, 1);
        self.send_frame_bytes(key, opcode, data);
    }

    /// Registers a new WebSocket client: counted, and on `/ws` given an id
    /// and its welcome.
    pub(super) fn join(&mut self, key: usize, peer: SocketAddr) {
        // Broadcasts made before this client joined are not for it, and
        // nothing may come before its welcome.
        self.deliver_broadcasts();
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let Phase::Ws(ws) = &conn.phase else {
            return;
        };
        self.shared.stats.connection_opened(self.id);
        self.clients += 1;
        if ws.endpoint == Endpoint::Echo {
            log!(
                Debug,
                "echo client connected",
                peer = peer,
                worker = self.id
            );
            return;
        }
        let seq = self.hub.join(key);
        self.shared.notify_client_joined();
        if let Some(Phase::Ws(ws)) = self.conns.get_mut(key).map(|c| &mut c.phase) {
            ws.seq = seq;
        }
        let id = hub::format_id(&self.shared.instance, self.id, seq);
        log!(
            Info,
            "client connected",
            client = id,
            peer = peer,
            worker = self.id
        );
        self.send_json(key, &protocol::welcome(&id, self.id));
        self.notify_late_joiner(key);
    }

    /// Takes a connection out of the WebSocket phase: it no longer counts as
    /// a client and gets no more messages. Returns its receiver, for a close
    /// that still awaits the peer's Close.
    pub(super) fn leave_ws(&mut self, key: usize, why: &str) -> Option<Receiver> {
        let label = self.client_label(key);
        let until = self.now + self.linger_ticks;
        let conn = self.conns.get_mut(key)?;
        if !conn.is_ws() {
            return None;
        }
        let left = std::mem::replace(
            &mut conn.phase,
            Phase::Closing {
                until,
                write_shut: false,
                mode: CloseMode::Linger,
            },
        );
        let Phase::Ws(ws) = left else {
            return None;
        };
        self.closing += 1;
        let peer = conn.peer_label();
        if ws.endpoint == Endpoint::Notify {
            self.hub.leave(ws.seq);
            self.shared.notify_client_left();
        }
        self.shared.stats.connection_closed(self.id);
        self.clients -= 1;
        if ws.endpoint == Endpoint::Notify {
            log!(
                Info,
                "client disconnected",
                client = label,
                peer = peer,
                reason = why,
                remaining = self.shared.stats.active()
            );
        } else {
            log!(Debug, "echo client disconnected", peer = peer, reason = why);
        }
        Some(ws.rx)
    }

    /// Starts a close of our own: queued messages first, then a Close frame
    /// with `code`, then the peer's Close is awaited (for a bounded time).
    pub(super) fn close_ws(&mut self, key: usize, code: CloseCode, reason: &str) {
        self.send(key, Chunk::Owned(encode_close(code, reason)));
        if let Some(rx) = self.leave_ws(key, reason) {
            self.start_closing(key, CloseMode::AwaitClose(rx));
        }
    }

    pub(super) fn on_ws_deadline(&mut self, key: usize) {
        let now = self.now;
        let Some(Phase::Ws(ws)) = self.conns.get_mut(key).map(|c| &mut c.phase) else {
            return;
        };
        if self
            .idle_ticks
            .is_some_and(|idle| now >= ws.last_seen + idle)
        {
            self.shared.stats.limit_hit("idle_timeout");
            self.close_ws(key, CloseCode::NORMAL, "idle timeout");
            return;
        }
        if let Some(every) = self.ping_ticks {
            if now >= ws.next_ping {
                ws.next_ping = now + every;
                self.send(key, Chunk::Static(EMPTY_PING));
            }
        }
    }

    /// A client that lets its queue grow past `--max-queue-bytes` is
    /// dropped: whatever it has not started to receive is discarded, and a
    /// 1008 Close follows if no frame is half-written.
    pub(super) fn drop_slow_consumer(&mut self, key: usize) {
        metrics::add(&self.shared.stats.slow_consumers_dropped, 1);
        let label = self.client_label(key);
        log!(Warn, "dropping slow consumer", client = label);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.out.discard_unstarted() {
            conn.out.push(Chunk::Owned(encode_close(
                CloseCode::POLICY_VIOLATION,
                "slow consumer",
            )));
        }
        if let Some(rx) = self.leave_ws(key, "slow consumer") {
            self.start_closing(key, CloseMode::AwaitClose(rx));
        }
    }

    /// The client id for logs, or the peer address for echo connections.
    pub(super) fn client_label(&self, key: usize) -> String {
        match self.conns.get(key) {
            Some(conn) => match &conn.phase {
                Phase::Ws(ws) if ws.endpoint == Endpoint::Notify => {
                    hub::format_id(&self.shared.instance, self.id, ws.seq)
                }
                _ => conn.peer_label(),
            },
            None => String::new(),
        }
    }
}
