//! Turns a stream of client bytes into WebSocket messages: frame payloads are
//! unmasked as they arrive, fragments are reassembled, and text is validated
//! as UTF-8 incrementally so an invalid sequence fails at once, not at the end
//! of a long message. With permessage-deflate, a compressed message's
//! fragments are gathered as they are and inflated once, whole, when its
//! last frame arrives.

use super::close::CloseCode;
use super::deflate::{InflateError, Inflater};
use super::fault::FrameError;
use super::frame::{apply_mask, decode_header, FrameHeader, Opcode, MAX_HEADER_LEN};

#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Checked as UTF-8 while it arrived, so it is a `String` without a
    /// second pass.
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The peer's close code, if it sent one (its reason has been checked but
    /// is not kept).
    Close(Option<CloseCode>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
    /// permessage-deflate: the message's DEFLATE bytes are gathered and
    /// inflated when it is complete.
    CompressedText,
    CompressedBinary,
}

#[derive(Debug)]
enum State {
    /// Collecting a frame header; `have` bytes of it are in `head`.
    Header {
        head: [u8; MAX_HEADER_LEN],
        have: u8,
    },
    /// Inside a payload: `done` bytes of `header.payload_len` consumed.
    Payload { header: FrameHeader, done: u64 },
    /// A close was received or a violation found: everything else is ignored.
    Closed,
}

/// The receiving half of a server-side WebSocket connection.
///
/// Nothing is allocated until a message arrives, and a finished message's
/// buffer is handed to the caller, so an idle connection holds no heap memory.
#[derive(Debug)]
pub struct Receiver {
    state: State,
    /// The data message being assembled, and what kind it is. A control
    /// frame's payload (at most 125 bytes) is read into the same buffer,
    /// after the message so far, and taken off when the frame ends: one
    /// buffer instead of two keeps every connection smaller.
    message: Vec<u8>,
    kind: Option<DataKind>,
    /// How many leading bytes of `message` are known to be valid UTF-8.
    utf8_valid: u32,
    /// Where the current control frame's payload starts in `message`.
    control_at: u32,
    /// At most u32::MAX: the counters above are 32-bit.
    max_message: u32,
    /// A whole frame arrived since `take_completed` last looked: the idle
    /// timer counts from complete frames, so a peer cannot keep itself
    /// alive with a byte of an unfinished frame now and then.
    completed: bool,
    /// Data is no longer wanted (see `drop_message`): frames are still
    /// parsed, their data payloads skipped.
    discarding: bool,
    /// permessage-deflate was negotiated: RSV1 may mark a message as
    /// compressed.
    deflate: bool,
}

impl Receiver {
    /// `deflate`: permessage-deflate was negotiated.
    pub fn new(max_message: usize, deflate: bool) -> Receiver {
        Receiver {
            state: State::Header {
                head: [0; MAX_HEADER_LEN],
                have: 0,
            },
            message: Vec::new(),
            kind: None,
            utf8_valid: 0,
            control_at: 0,
            max_message: u32::try_from(max_message).unwrap_or(u32::MAX),
            completed: false,
            discarding: false,
            deflate,
        }
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflate(&self) -> bool {
        self.deflate
    }

    /// The server is closing and waits only for the peer's Close: the
    /// message being received is given back now, and later data frames are
    /// parsed without being kept, so a closing connection holds no buffer
    /// for data nobody will read.
    pub fn drop_message(&mut self) {
        self.message = Vec::new();
        self.utf8_valid = 0;
        self.control_at = 0;
        self.discarding = true;
    }

    /// Heap bytes held for the message being received (its buffer's
    /// capacity: what the allocator really gave it).
    pub fn held(&self) -> usize {
        self.message.capacity()
    }

    /// Whether a whole frame (data, fragment or control) has arrived since
    /// the last call.
    pub fn take_completed(&mut self) -> bool {
        std::mem::take(&mut self.completed)
    }

    /// Consumes bytes from `input` until one message is complete or the input
    /// runs out. Returns how many bytes were used and the message, if any.
    /// After an error or a Close, the receiver ignores all further input.
    /// `inflater` (the worker's one) inflates a compressed message.
    pub fn feed(
        &mut self,
        input: &[u8],
        inflater: &mut Inflater,
    ) -> (usize, Result<Option<Message>, FrameError>) {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match &mut self.state {
                State::Closed => return (input.len(), Ok(None)),
                State::Header { head, have } => {
                    let have_n = usize::from(*have);
                    let take = rest.len().min(MAX_HEADER_LEN - have_n);
                    head[have_n..have_n + take].copy_from_slice(&rest[..take]);
                    let filled = have_n + take;
                    match decode_header(&head[..filled]) {
                        Err(code) => return (input.len(), Err(self.fail(code))),
                        Ok(None) => {
                            *have = filled as u8;
                            return (input.len(), Ok(None));
                        }
                        Ok(Some((header, header_len))) => {
                            used += header_len - have_n;
                            if let Err(code) = self.start_frame(&header) {
                                return (input.len(), Err(self.fail(code)));
                            }
                            self.state = State::Payload { header, done: 0 };
                        }
                    }
                }
                State::Payload { header, done } => {
                    let header = *header;
                    let remaining = header.payload_len - *done;
                    let take = rest
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let offset = (*done % 4) as usize;
                    *done += take as u64;
                    let finished = *done == header.payload_len;
                    used += take;
                    if let Err(code) = self.take_payload(&header, &rest[..take], offset) {
                        return (input.len(), Err(self.fail(code)));
                    }
                    if !finished {
                        return (used, Ok(None));
                    }
                    self.state = State::Header {
                        head: [0; MAX_HEADER_LEN],
                        have: 0,
                    };
                    self.completed = true;
                    match self.finish_frame(&header, inflater) {
                        Err(code) => return (input.len(), Err(self.fail(code))),
                        Ok(Some(message)) => {
                            if matches!(message, Message::Close(_)) {
                                // What follows a Close is the caller's to
                                // judge (a peer still sending), not ours.
                                self.state = State::Closed;
                                return (used, Ok(Some(message)));
                            }
                            return (used, Ok(Some(message)));
                        }
                        Ok(None) if used == input.len() => return (used, Ok(None)),
                        Ok(None) => {}
                    }
                }
            }
        }
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.state = State::Closed;
        self.message = Vec::new();
        error
    }

    /// Rules that depend on the frame's place in the message sequence, and
    /// on what was negotiated.
    fn start_frame(&mut self, header: &FrameHeader) -> Result<(), FrameError> {
        if header.rsv1 {
            match header.opcode {
                _ if !self.deflate => return Err(FrameError::ReservedBits),
                Opcode::Continuation => return Err(FrameError::CompressedContinuation),
                Opcode::Close | Opcode::Ping | Opcode::Pong => {
                    return Err(FrameError::CompressedControl)
                }
                Opcode::Text | Opcode::Binary => {}
            }
        }
        match header.opcode {
            Opcode::Continuation if self.kind.is_none() => {
                Err(FrameError::ContinuationWithoutStart)
            }
            Opcode::Text | Opcode::Binary if self.kind.is_some() => {
                Err(FrameError::DataInsideFragmented)
            }
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                match (header.opcode, header.rsv1) {
                    (Opcode::Text, false) => self.kind = Some(DataKind::Text),
                    (Opcode::Binary, false) => self.kind = Some(DataKind::Binary),
                    (Opcode::Text, true) => self.kind = Some(DataKind::CompressedText),
                    (Opcode::Binary, true) => self.kind = Some(DataKind::CompressedBinary),
                    _ => {}
                }
                // Compressed bytes count against the same bound: what the
                // receiver holds stays within it either way.
                let total = (self.message.len() as u64).saturating_add(header.payload_len);
                if total > u64::from(self.max_message) {
                    return Err(FrameError::MessageTooBig);
                }
                // Nothing is reserved for the announced length: a peer could
                // announce a large frame and send nothing, so memory grows
                // only with the bytes that really arrive.
                Ok(())
            }
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                // The message is at most max_message (u32) bytes long here.
                self.control_at = self.message.len() as u32;
                Ok(())
            }
        }
    }

    fn take_payload(
        &mut self,
        header: &FrameHeader,
        chunk: &[u8],
        offset: usize,
    ) -> Result<(), FrameError> {
        if self.discarding && !header.opcode.is_control() {
            return Ok(());
        }
        let start = self.message.len();
        self.message.extend_from_slice(chunk);
        apply_mask(&mut self.message[start..], header.mask, offset);
        if !header.opcode.is_control() && self.kind == Some(DataKind::Text) {
            self.check_utf8_prefix()?;
        }
        Ok(())
    }

    /// Validates the bytes added since the last check, allowing only an
    /// incomplete sequence at the very end (it may finish in the next chunk).
    fn check_utf8_prefix(&mut self) -> Result<(), FrameError> {
        match std::str::from_utf8(&self.message[self.utf8_valid as usize..]) {
            Ok(_) => self.utf8_valid = self.message.len() as u32,
            Err(e) if e.error_len().is_none() => self.utf8_valid += e.valid_up_to() as u32,
            Err(_) => return Err(FrameError::InvalidUtf8),
        }
        Ok(())
    }

    fn finish_frame(
        &mut self,
        header: &FrameHeader,
        inflater: &mut Inflater,
    ) -> Result<Option<Message>, FrameError> {
        match header.opcode {
            Opcode::Ping => Ok(Some(Message::Ping(self.take_control()))),
            Opcode::Pong => Ok(Some(Message::Pong(self.take_control()))),
            Opcode::Close => {
                let payload = self.take_control();
                parse_close(&payload).map(|code| Some(Message::Close(code)))
            }
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                if !header.fin {
                    return Ok(None);
                }
                if self.discarding {
                    self.kind = None;
                    return Ok(None);
                }
                if let Some(DataKind::CompressedText | DataKind::CompressedBinary) = self.kind {
                    return self.inflate(inflater).map(Some);
                }
                // Validated as it arrived: only an unfinished sequence at the
                // end can be left.
                let complete = self.utf8_valid as usize == self.message.len();
                let data = std::mem::take(&mut self.message);
                self.utf8_valid = 0;
                match self.kind.take() {
                    Some(DataKind::Text) if !complete => Err(FrameError::InvalidUtf8),
                    Some(DataKind::Text) => {
                        // SAFETY: every byte was checked by
                        // `check_utf8_prefix` as it arrived, and `complete`
                        // says no sequence is left unfinished.
                        Ok(Some(Message::Text(unsafe {
                            String::from_utf8_unchecked(data)
                        })))
                    }
                    _ => Ok(Some(Message::Binary(data))),
                }
            }
        }
    }
}

impl Receiver {
    /// The compressed message just completed, inflated: no larger than the
    /// bound (inflating stops there), and text checked as UTF-8 whole.
    fn inflate(&mut self, inflater: &mut Inflater) -> Result<Message, FrameError> {
        let compressed = std::mem::take(&mut self.message);
        self.utf8_valid = 0;
        let kind = self.kind.take();
        let data = inflater
            .inflate(&compressed, self.max_message as usize)
            .map_err(|error| match error {
                InflateError::TooBig => FrameError::MessageTooBig,
                InflateError::Corrupt => FrameError::BadCompression,
            })?;
        match kind {
            Some(DataKind::CompressedText) => String::from_utf8(data)
                .map(Message::Text)
                .map_err(|_| FrameError::InvalidUtf8),
            _ => Ok(Message::Binary(data)),
        }
    }

    /// The control payload just read, taken off the end of `message`.
    fn take_control(&mut self) -> Vec<u8> {
        let at = self.control_at as usize;
        if at == 0 {
            std::mem::take(&mut self.message)
        } else {
            self.message.split_off(at)
        }
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseCode>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::CloseOneByte),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(FrameError::InvalidCloseCode);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::InvalidCloseReason);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        crate::proto::frame::masked((u8::from(fin) << 7) | opcode, payload, MASK)
    }

    /// Feeds `bytes` in chunks of `chunk` bytes and collects every outcome.
    fn run(bytes: &[u8], chunk: usize, max: usize) -> (Vec<Message>, Option<CloseCode>) {
        run_with(bytes, chunk, max, false)
    }

    pub(super) fn run_with(
        bytes: &[u8],
        chunk: usize,
        max: usize,
        deflate: bool,
    ) -> (Vec<Message>, Option<CloseCode>) {
        let mut rx = Receiver::new(max, deflate);
        let mut inflater = Inflater::new();
        let mut messages = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            let mut at = 0;
            while at < piece.len() {
                let (used, result) = rx.feed(&piece[at..], &mut inflater);
                at += used;
                match result {
                    Ok(Some(m)) => messages.push(m),
                    Ok(None) => {}
                    Err(error) => return (messages, Some(error.close_code())),
                }
            }
        }
        (messages, None)
    }

    fn every_split(bytes: &[u8], max: usize) -> (Vec<Message>, Option<CloseCode>) {
        let whole = run(bytes, bytes.len(), max);
        for chunk in 1..bytes.len().min(20) {
            assert_eq!(run(bytes, chunk, max), whole, "chunk size {chunk}");
        }
        whole
    }

    #[test]
    fn single_frame_text_and_binary() {
        let mut bytes = frame(true, 1, b"Hello");
        bytes.extend(frame(true, 2, &[0, 1, 2]));
        let (msgs, err) = every_split(&bytes, 1024);
        assert_eq!(err, None);
        assert_eq!(
            msgs,
            vec![
                Message::Text("Hello".into()),
                Message::Binary(vec![0, 1, 2])
            ]
        );
    }

    #[test]
    fn empty_messages() {
        let mut bytes = frame(true, 1, b"");
        bytes.extend(frame(true, 2, b""));
        let (msgs, err) = every_split(&bytes, 1024);
        assert_eq!(err, None);
        assert_eq!(
            msgs,
            vec![Message::Text(String::new()), Message::Binary(vec![])]
        );
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mut bytes = frame(false, 1, b"Hel");
        bytes.extend(frame(true, 9, b"p"));
        bytes.extend(frame(false, 0, b"l"));
        bytes.extend(frame(true, 10, b""));
        bytes.extend(frame(true, 0, b"o"));
        let (msgs, err) = every_split(&bytes, 1024);
        assert_eq!(err, None);
        assert_eq!(
            msgs,
            vec![
                Message::Ping(b"p".to_vec()),
                Message::Pong(vec![]),
                Message::Text("Hello".into())
            ]
        );
    }

    #[test]
    fn continuation_without_start_is_a_protocol_error() {
        assert_eq!(
            every_split(&frame(true, 0, b"x"), 64).1,
            Some(CloseCode::PROTOCOL_ERROR)
        );
    }

    #[test]
    fn new_message_inside_fragmented_one_is_a_protocol_error() {
        let mut bytes = frame(false, 1, b"a");
        bytes.extend(frame(true, 1, b"b"));
        assert_eq!(every_split(&bytes, 64).1, Some(CloseCode::PROTOCOL_ERROR));
        let mut bytes = frame(false, 2, b"a");
        bytes.extend(frame(false, 2, b"b"));
        assert_eq!(every_split(&bytes, 64).1, Some(CloseCode::PROTOCOL_ERROR));
    }

    #[test]
    fn message_size_limit_counts_all_fragments() {
        let exact = frame(true, 2, &[0u8; 10]);
        assert_eq!(every_split(&exact, 10).1, None);
        let mut bytes = frame(false, 2, &[0u8; 6]);
        bytes.extend(frame(true, 0, &[0u8; 5]));
        let (_, err) = every_split(&bytes, 10);
        assert_eq!(err, Some(CloseCode::MESSAGE_TOO_BIG));
    }

    #[test]
    fn oversized_frame_fails_before_its_payload_arrives() {
        let mut rx = Receiver::new(100, false);
        let head = &frame(true, 2, &[0u8; 1000])[..8];
        assert_eq!(
            rx.feed(head, &mut Inflater::new()).1,
            Err(FrameError::MessageTooBig)
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_inside_a_fragment() {
        // The invalid byte comes in the first fragment of a message that
        // never finishes: it must be refused without waiting for the end.
        let bytes = frame(false, 1, b"ok\xFFmore");
        assert_eq!(every_split(&bytes, 64).1, Some(CloseCode::INVALID_PAYLOAD));
    }

    #[test]
    fn invalid_utf8_fails_fast_inside_a_frame() {
        let mut rx = Receiver::new(1 << 20, false);
        let full = frame(
            true,
            1,
            &[
                b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80".as_slice(),
                &[b'a'; 1000],
            ]
            .concat(),
        );
        // Only the first 20 bytes (header + the invalid prefix) are fed.
        let (_, result) = rx.feed(&full[..22], &mut Inflater::new());
        assert_eq!(result, Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn utf8_sequence_split_across_fragments_is_accepted() {
        let text = "κόσμε€𝄞";
        let bytes_of = text.as_bytes();
        for split in 1..bytes_of.len() {
            let mut bytes = frame(false, 1, &bytes_of[..split]);
            bytes.extend(frame(true, 0, &bytes_of[split..]));
            let (msgs, err) = every_split(&bytes, 1024);
            assert_eq!(err, None, "split at {split}");
            assert_eq!(msgs, vec![Message::Text(text.to_owned())]);
        }
    }

    #[test]
    fn truncated_utf8_at_end_of_message_is_invalid() {
        let bytes = frame(true, 1, b"abc\xE2\x82");
        assert_eq!(every_split(&bytes, 64).1, Some(CloseCode::INVALID_PAYLOAD));
    }

    #[test]
    fn binary_messages_are_not_utf8_checked() {
        let (msgs, err) = every_split(&frame(true, 2, b"\xFF\xFE"), 64);
        assert_eq!(err, None);
        assert_eq!(msgs, vec![Message::Binary(b"\xFF\xFE".to_vec())]);
    }

    #[test]
    fn close_with_and_without_code() {
        let (msgs, _) = every_split(&frame(true, 8, b""), 64);
        assert_eq!(msgs, vec![Message::Close(None)]);
        let (msgs, _) = every_split(&frame(true, 8, b"\x03\xE8bye"), 64);
        assert_eq!(msgs, vec![Message::Close(Some(CloseCode::NORMAL))]);
    }

    #[test]
    fn close_payload_rules() {
        assert_eq!(
            every_split(&frame(true, 8, b"\x03"), 64).1,
            Some(CloseCode::PROTOCOL_ERROR)
        );
        for code in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let bytes = frame(true, 8, &code.to_be_bytes());
            assert_eq!(
                every_split(&bytes, 64).1,
                Some(CloseCode::PROTOCOL_ERROR),
                "{code}"
            );
        }
        let bytes = frame(true, 8, b"\x03\xE8\xFF");
        assert_eq!(every_split(&bytes, 64).1, Some(CloseCode::INVALID_PAYLOAD));
    }

    #[test]
    fn input_after_close_is_ignored() {
        let mut bytes = frame(true, 8, b"\x03\xE8");
        bytes.extend(frame(true, 1, b"late"));
        let (msgs, err) = every_split(&bytes, 64);
        assert_eq!(err, None);
        assert_eq!(msgs, vec![Message::Close(Some(CloseCode::NORMAL))]);
    }

    #[test]
    fn idle_receiver_holds_no_heap_memory() {
        let mut rx = Receiver::new(1 << 20, false);
        let (_, r) = rx.feed(&frame(true, 1, &[b'x'; 4000]), &mut Inflater::new());
        assert!(matches!(r, Ok(Some(Message::Text(_)))));
        assert_eq!(rx.message.capacity(), 0);
    }

    #[test]
    fn a_receiver_that_drops_its_message_keeps_nothing_but_still_reads_a_close() {
        use crate::proto::frame::masked;

        let mut rx = Receiver::new(1 << 20, false);
        let frame = masked(0x81, &[b'x'; 60_000], [1, 2, 3, 4]);
        let (used, result) = rx.feed(&frame[..30_000], &mut Inflater::new());
        assert_eq!((used, result), (30_000, Ok(None)));
        assert!(rx.held() >= 29_000);
        rx.drop_message();
        assert_eq!(rx.held(), 0);
        let mut rest = frame[30_000..].to_vec();
        rest.extend(masked(0x82, &[7; 50_000], [5, 6, 7, 8]));
        rest.extend(masked(0x88, &[0x03, 0xE8], [9, 9, 9, 9]));
        let mut input = &rest[..];
        let mut got = Vec::new();
        while !input.is_empty() {
            let (used, result) = rx.feed(input, &mut Inflater::new());
            input = &input[used..];
            assert!(rx.held() <= 125, "{}", rx.held());
            if let Some(message) = result.unwrap() {
                got.push(message);
            }
        }
        assert_eq!(got, [Message::Close(Some(CloseCode::NORMAL))]);
    }
}

#[cfg(test)]
mod compressed_tests;
