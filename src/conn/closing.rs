//! The end of a connection: our last bytes out, the peer's side of the
//! close, and a bounded wait so no peer can hold a socket open.

use super::event::{Closed, Event};
use super::machine::Connection;
use super::state::{CloseMode, Closing, Phase};
use crate::proto::deflate::Inflater;
use crate::proto::message::Message;

impl<C: Copy> Connection<C> {
    /// What a closing peer still sends: its Close when we await one,
    /// otherwise nothing that matters until it closes. Uses everything.
    pub(super) fn closing_receive(&mut self, input: &[u8], inflater: &mut Inflater) -> usize {
        let Phase::Closing(closing) = &mut self.phase else {
            return input.len();
        };
        if input.is_empty() {
            return 0;
        }
        match &mut closing.mode {
            // The peer sent more after its Close: it is waited for until its
            // FIN (see `Verdict::CheckQuiet`).
            CloseMode::AfterFlush => closing.mode = CloseMode::Linger,
            CloseMode::Linger => {}
            CloseMode::AwaitClose(rx) => {
                let mut rest = input;
                while !rest.is_empty() {
                    let (used, result) = rx.feed(rest, inflater);
                    rest = &rest[used..];
                    if matches!(result, Ok(Some(Message::Close(_))) | Err(_)) {
                        closing.mode = if rest.is_empty() {
                            CloseMode::AfterFlush
                        } else {
                            CloseMode::Linger
                        };
                        break;
                    }
                }
            }
        }
        input.len()
    }

    /// A read found nothing waiting. A connection that only waited for its
    /// queue to empty is done once it has.
    pub fn input_quiet(&mut self) -> Option<Event<C>> {
        match &self.phase {
            Phase::Closing(Closing {
                mode: CloseMode::AfterFlush,
                ..
            }) if self.out.is_empty() => Some(Event::Closed(Closed::Done)),
            _ => None,
        }
    }
}
