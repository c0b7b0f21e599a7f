//! The link to the other process of a hand-over, on the supervisor's loop:
//! reads what the peer sends and hands it to `node::peer`, and writes what
//! the workers queued for it. Non-blocking: a slow or dead peer holds up
//! no loop (the queue it leaves behind is bounded, see `peer::MAX_UNSENT`).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};

use super::handover::{Continued, Handed};
use super::wakeups::Wakeups;
use crate::log;
use crate::node::peer::{self, wire::Decoder};
use crate::node::Process;

pub struct PeerIo {
    stream: mio::net::UnixStream,
    decoder: Decoder,
    /// Bytes taken for the peer (whole messages), and how many went out.
    pending: Vec<u8>,
    written: usize,
}

/// Why the link ended.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed it: the old process exited, or the new one did.
    Closed,
    Failed(String),
    /// This side gave the peer up (it lagged too far behind).
    GivenUp,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Closed => f.write_str("the other process closed it"),
            Ended::Failed(why) => f.write_str(why),
            Ended::GivenUp => f.write_str("the other process lagged too far behind"),
        }
    }
}

impl PeerIo {
    /// `decoder`: what was read past the hand-over's lines; `first`: bytes
    /// to send before anything the workers queue.
    pub fn new(stream: UnixStream, decoder: Decoder, first: Vec<u8>) -> io::Result<PeerIo> {
        stream.set_nonblocking(true)?;
        Ok(PeerIo {
            stream: mio::net::UnixStream::from_std(stream),
            decoder,
            pending: first,
            written: 0,
        })
    }

    pub fn source(&mut self) -> &mut mio::net::UnixStream {
        &mut self.stream
    }

    /// Carries out what arrived and sends what waits; `Err` when the link
    /// is over (then `end` it).
    pub fn pump(
        &mut self,
        process: &Process,
        wakeups: &Wakeups,
        now: Instant,
    ) -> Result<(), Ended> {
        self.deliver(process, wakeups, now)?;
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Ended::Closed),
                Ok(n) => {
                    self.decoder.push(&buf[..n]);
                    self.deliver(process, wakeups, now)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Ended::Failed(format!("read failed: {e}"))),
            }
        }
        if !process.peer().linked() {
            return Err(Ended::GivenUp);
        }
        let sent = self.send(process);
        let queued = self.pending.len() - self.written + process.peer().unsent_bytes();
        let gauge = &process.stats.handover_queued_bytes;
        gauge.store(queued as u64, std::sync::atomic::Ordering::Relaxed);
        sent
    }

    fn deliver(&mut self, process: &Process, wakeups: &Wakeups, now: Instant) -> Result<(), Ended> {
        while let Some(message) = self
            .decoder
            .next_message()
            .map_err(|e| Ended::Failed(format!("unreadable message: {e}")))?
        {
            peer::receive(process, message, now, |worker| wakeups.wake_worker(worker));
        }
        Ok(())
    }

    fn send(&mut self, process: &Process) -> Result<(), Ended> {
        loop {
            if self.written == self.pending.len() {
                self.pending = process.peer().take_unsent();
                self.written = 0;
                if self.pending.is_empty() {
                    return Ok(());
                }
            }
            match self.stream.write(&self.pending[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Ended::Failed(format!("write failed: {e}"))),
            }
        }
    }

    /// The link is over: what could not be sent is delivered here (see
    /// `peer::lost`).
    pub fn end(self, process: &Process, wakeups: &Wakeups) {
        peer::lost(process, &self.pending, self.written, |worker| {
            wakeups.wake_worker(worker)
        });
    }

    /// The process is about to exit: sends what remains, waiting up to
    /// `within` for the peer to take it, so nothing this process accepted
    /// is lost on the way.
    pub fn finish(mut self, process: &Process, within: Duration) -> Result<(), Ended> {
        let stream: UnixStream = self.stream.into();
        let fail = |e: io::Error| Ended::Failed(format!("final write failed: {e}"));
        stream.set_nonblocking(false).map_err(fail)?;
        stream.set_write_timeout(Some(within)).map_err(fail)?;
        let mut rest = self.pending.split_off(self.written);
        rest.extend_from_slice(&process.peer().take_unsent());
        (&stream).write_all(&rest).map_err(fail)
    }
}

/// The supervisor's side of hand-overs: the link while there is one, and
/// where the hand-over thread passes a completed exchange.
pub struct Link {
    io: Option<PeerIo>,
    handed: Receiver<Handed>,
    token: Token,
}

/// How long an exiting process waits for the peer to take its last bytes.
const FINAL_WRITE: Duration = Duration::from_secs(2);

impl Link {
    pub fn new(handed: Receiver<Handed>, token: Token) -> Link {
        Link {
            io: None,
            handed,
            token,
        }
    }

    /// The new process of a hand-over: continues the old one's stream and
    /// links to it, before any worker accepts a client.
    pub fn continue_from(
        &mut self,
        continued: Continued,
        process: &Process,
        registry: &Registry,
        now: Instant,
    ) {
        let Continued {
            state,
            stream,
            decoder,
            previous_instance,
        } = continued;
        peer::lead(process, &previous_instance, state, now);
        self.attach(PeerIo::new(stream, decoder, Vec::new()), process, registry);
    }

    /// Whether the hand-over thread completed an exchange: if so, this
    /// process follows the new one from now on (it sends its stream first)
    /// and its sockets are shared.
    pub fn take_handed(
        &mut self,
        process: &Process,
        wakeups: &Wakeups,
        registry: &Registry,
        now: Instant,
    ) {
        let Ok(handed) = self.handed.try_recv() else {
            return;
        };
        if let Some(older) = self.io.take() {
            // This process still carried the stream for the one before it;
            // that one now delivers unnumbered until it exits.
            log!(Warn, "handing over before the previous server finished its drain: it no longer receives the stream");
            self.end(older, process, wakeups, registry);
        }
        let state = peer::follow(process, &handed.instance, now);
        if !handed.channels && !state.channels.channels.is_empty() {
            log!(
                Warn,
                "the new server is an older release (hand-over version 2): the channels' offsets and history do not cross, a channel's resume there is too_old",
                channels = state.channels.channels.len()
            );
        }
        let mut first = b"draining\n".to_vec();
        for message in peer::state_messages(&state, handed.channels) {
            message.encode(&mut first);
        }
        log!(
            Info,
            "passing the stream to the new server",
            to_pid = handed.pid,
            epoch = state.epoch,
            offset = state.last,
            history_entries = state.entries.len(),
            channels = if handed.channels {
                state.channels.channels.len()
            } else {
                0
            },
            bytes = first.len()
        );
        process.listener.handed_over_to(handed.pid);
        self.attach(
            PeerIo::new(handed.stream, Decoder::default(), first),
            process,
            registry,
        );
        self.pump(process, wakeups, registry, now);
    }

    fn attach(&mut self, io: io::Result<PeerIo>, process: &Process, registry: &Registry) {
        let registered = io.and_then(|mut io| {
            registry
                .register(
                    io.source(),
                    self.token,
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map(|()| io)
        });
        match registered {
            Ok(io) => self.io = Some(io),
            Err(e) => {
                log!(
                    Error,
                    "cannot watch the link to the other process of the hand-over",
                    error = e
                );
                peer::lost(process, &[], 0, |_| {});
            }
        }
    }

    /// Moves what waits either way; ends the link when it is over.
    pub fn pump(
        &mut self,
        process: &Process,
        wakeups: &Wakeups,
        registry: &Registry,
        now: Instant,
    ) {
        let Some(io) = &mut self.io else {
            return;
        };
        if let Err(ended) = io.pump(process, wakeups, now) {
            let role = process.peer().role();
            if matches!(ended, Ended::Closed) && role == peer::Role::Sequencer {
                log!(
                    Info,
                    "the previous server has exited; the stream is numbered here alone"
                );
            } else {
                log!(
                    Warn,
                    "the link to the other process of the hand-over is gone",
                    reason = ended,
                    role = format!("{role:?}")
                );
            }
            if let Some(io) = self.io.take() {
                self.end(io, process, wakeups, registry);
            }
        }
    }

    fn end(&mut self, mut io: PeerIo, process: &Process, wakeups: &Wakeups, registry: &Registry) {
        let _ = registry.deregister(io.source());
        io.end(process, wakeups);
        let gauge = &process.stats.handover_queued_bytes;
        gauge.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// The process exits: the peer gets what is left for it.
    pub fn finish(self, process: &Process) {
        let Some(io) = self.io else {
            return;
        };
        if let Err(ended) = io.finish(process, FINAL_WRITE) {
            log!(
                Warn,
                "could not pass the last messages to the other process",
                reason = ended
            );
        }
    }
}
