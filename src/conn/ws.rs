//! The WebSocket phase: frames in, data messages out as events, control
//! frames answered here, the ping and idle timers, and the slow-consumer
//! verdict.

use std::io;

use super::batch::Batch;
use super::event::{Ending, Event, Verdict};
use super::machine::Connection;
use super::settings::{Settings, Tick};
use super::state::{CloseMode, Phase};
use super::write_queue::Chunk;
use crate::proto::close::CloseCode;
use crate::proto::deflate::Inflater;
use crate::proto::frame::{encode_close, encode_frame, encode_header, Opcode};
use crate::proto::message::Message;

/// The first header bit after FIN: with permessage-deflate, "compressed".
const RSV1: u8 = 0x40;

/// An empty Ping frame, the same bytes for every client.
const EMPTY_PING: &[u8] = &[0x89, 0x00];

/// A message offered to a connection that is not (or no longer) a
/// WebSocket client: an HTTP connection takes only answers to its requests,
/// and nothing follows a Close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOpen;

impl<C: Copy> Connection<C> {
    /// Queues a data frame for a WebSocket client.
    pub fn send(&mut self, frame: Chunk) -> Result<(), NotOpen> {
        self.open()?;
        self.out.push(frame);
        Ok(())
    }

    /// Encodes and queues one frame for a WebSocket client, at the end of
    /// the last queued buffer when it can (see `WriteQueue::push_frame`).
    pub fn send_frame(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), NotOpen> {
        self.open()?;
        self.out.push_frame(opcode, payload);
        Ok(())
    }

    /// Queues one compressed message (RSV1 set) as a single frame;
    /// `compressed` is the payload `proto::deflate::Deflater` made.
    pub fn send_compressed(&mut self, opcode: Opcode, compressed: &[u8]) -> Result<(), NotOpen> {
        self.open()?;
        let (mut head, len) = encode_header(opcode, compressed.len());
        head[0] |= RSV1;
        let mut frame = Vec::with_capacity(len + compressed.len());
        frame.extend_from_slice(&head[..len]);
        frame.extend_from_slice(compressed);
        self.out.push(Chunk::Owned(frame));
        Ok(())
    }

    /// The frames of a turn's batch from frame `from` on, shared by many
    /// clients. With an empty queue, `write` is offered them first
    /// (straight to the socket: nothing allocated or queued), and only what
    /// it did not take is queued, from the first unsent byte; behind queued
    /// bytes they are queued whole. Either way by segment, one entry each.
    /// `write` answers how many bytes went out (0 for a socket that would
    /// block), or the error that ends the connection.
    pub fn send_shared(
        &mut self,
        batch: &Batch,
        from: usize,
        write: impl FnOnce() -> io::Result<usize>,
    ) -> Result<io::Result<usize>, NotOpen> {
        self.open()?;
        if !self.out.is_empty() {
            self.out.push_batch(batch, from, 0);
            return Ok(Ok(0));
        }
        let written = write();
        if let Ok(n) = written {
            self.out.push_batch(batch, from, n);
        }
        Ok(written)
    }

    fn open(&self) -> Result<(), NotOpen> {
        match self.phase {
            Phase::Ws(_) => Ok(()),
            _ => Err(NotOpen),
        }
    }

    pub(super) fn ws_receive(
        &mut self,
        input: &[u8],
        now: Tick,
        settings: &Settings,
        inflater: &mut Inflater,
    ) -> (usize, Option<Event<C>>) {
        let mut at = 0;
        loop {
            let Phase::Ws(ws) = &mut self.phase else {
                return (input.len(), None);
            };
            let (used, result) = ws.rx.feed(&input[at..], inflater);
            if ws.rx.take_completed() {
                ws.last_seen = now;
            }
            at += used;
            let message = match result {
                Ok(None) => return (at, None),
                Ok(Some(message)) => message,
                Err(error) => {
                    let code = error.close_code();
                    self.out
                        .push(Chunk::Owned(encode_close(code, code.reason())));
                    let client = self.end_ws(|_| CloseMode::Linger, now, settings);
                    let left = client.map(|client| Event::Left {
                        client,
                        why: Ending::Fault(error),
                    });
                    return (input.len(), left);
                }
            };
            match message {
                Message::Ping(payload) => self.out.push_frame(Opcode::Pong, &payload),
                Message::Pong(_) => {}
                Message::Close(code) => {
                    let reply = match code {
                        Some(code) => encode_close(code, ""),
                        None => encode_frame(Opcode::Close, &[]),
                    };
                    self.out.push(Chunk::Owned(reply));
                    // A peer that sends more after its Close is waited for
                    // until its FIN: closing with its bytes unread would make
                    // the kernel reset the connection and destroy what it
                    // has not read yet (found by the connection fuzz target).
                    let mode = if at < input.len() {
                        CloseMode::Linger
                    } else {
                        CloseMode::AfterFlush
                    };
                    let client = self.end_ws(|_| mode, now, settings);
                    let left = client.map(|client| Event::Left {
                        client,
                        why: Ending::PeerClosed,
                    });
                    return (input.len(), left);
                }
                data => return (at, Some(Event::Message(data))),
            }
            if at == input.len() {
                return (at, None);
            }
        }
    }

    pub(super) fn ws_deadline(&mut self, now: Tick, settings: &Settings) -> Option<Event<C>> {
        let Phase::Ws(ws) = &mut self.phase else {
            return None;
        };
        if settings.idle.is_some_and(|idle| now >= ws.last_seen + idle) {
            return self.close_as(
                CloseCode::NORMAL,
                "idle timeout",
                Ending::IdleTimeout,
                now,
                settings,
            );
        }
        if let Some(every) = settings.ping {
            if now >= ws.next_ping {
                ws.next_ping = now + every;
                self.out.push(Chunk::Static(EMPTY_PING));
            }
        }
        None
    }

    /// Starts a close of our own: queued messages first, then a Close frame
    /// with `code` and `reason`, then the peer's Close is awaited (within
    /// the linger).
    pub fn close(
        &mut self,
        code: CloseCode,
        reason: &'static str,
        now: Tick,
        settings: &Settings,
    ) -> Option<Event<C>> {
        self.close_as(code, reason, Ending::Server(reason), now, settings)
    }

    fn close_as(
        &mut self,
        code: CloseCode,
        reason: &str,
        why: Ending,
        now: Tick,
        settings: &Settings,
    ) -> Option<Event<C>> {
        if !self.is_ws() {
            return None;
        }
        self.out.push(Chunk::Owned(encode_close(code, reason)));
        let client = self.end_ws(CloseMode::await_close, now, settings)?;
        Some(Event::Left { client, why })
    }

    /// A client that lets its queue grow past the limit is dropped: whatever
    /// it has not started to receive is discarded, and a 1008 Close follows
    /// if no frame is half-written.
    pub(super) fn drop_slow_consumer(
        &mut self,
        now: Tick,
        settings: &Settings,
    ) -> Option<Verdict<C>> {
        if self.out.discard_unstarted() {
            self.out.push(Chunk::Owned(encode_close(
                CloseCode::POLICY_VIOLATION,
                "slow consumer",
            )));
        }
        let client = self.end_ws(CloseMode::await_close, now, settings)?;
        Some(Verdict::Dropped(Event::Left {
            client,
            why: Ending::SlowConsumer,
        }))
    }
}
