//! What a peer can do wrong, one type per level, each mapped here (and only
//! here) to what it costs the peer: the close code or HTTP status, the limit
//! it counts against, and the text the log shows.

use std::fmt;

use super::close::CloseCode;
use super::status::Status;
use crate::obs::metrics::Limit;

/// A broken rule of RFC 6455 in what a client sent, at the frame or message
/// level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    ReservedBits,
    UnknownOpcode,
    Unmasked,
    FragmentedControl,
    ControlTooLong,
    LengthTooLong,
    ContinuationWithoutStart,
    DataInsideFragmented,
    MessageTooBig,
    InvalidUtf8,
    CloseOneByte,
    InvalidCloseCode,
    InvalidCloseReason,
    /// RSV1 (compressed) on a control frame.
    CompressedControl,
    /// RSV1 on a continuation frame: only a message's first frame says it
    /// is compressed.
    CompressedContinuation,
    /// A compressed message that is not valid DEFLATE data.
    BadCompression,
}

impl FrameError {
    pub fn close_code(self) -> CloseCode {
        match self {
            FrameError::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            FrameError::InvalidUtf8
            | FrameError::InvalidCloseReason
            | FrameError::BadCompression => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    pub fn limit(self) -> Option<Limit> {
        match self {
            FrameError::MessageTooBig => Some(Limit::MessageTooBig),
            _ => None,
        }
    }

    /// The rule that was broken, for logs.
    pub fn rule(self) -> &'static str {
        match self {
            FrameError::ReservedBits => "reserved bits set",
            FrameError::UnknownOpcode => "unknown opcode",
            FrameError::Unmasked => "client frame not masked",
            FrameError::FragmentedControl => "fragmented control frame",
            FrameError::ControlTooLong => "control frame over 125 bytes",
            FrameError::LengthTooLong => "64-bit length with the top bit set",
            FrameError::ContinuationWithoutStart => "continuation frame without a message",
            FrameError::DataInsideFragmented => "new data frame inside a fragmented message",
            FrameError::MessageTooBig => "message over --max-message-bytes",
            FrameError::InvalidUtf8 => "text is not valid UTF-8",
            FrameError::CloseOneByte => "close payload of one byte",
            FrameError::InvalidCloseCode => "close code not allowed on the wire",
            FrameError::InvalidCloseReason => "close reason is not valid UTF-8",
            FrameError::CompressedControl => "RSV1 (compressed) on a control frame",
            FrameError::CompressedContinuation => "RSV1 (compressed) on a continuation frame",
            FrameError::BadCompression => "compressed message is not valid DEFLATE data",
        }
    }
}

/// `protocol error 1002: reserved bits set`.
impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.close_code();
        write!(f, "{} {}: {}", code.reason(), code.0, self.rule())
    }
}

/// A request this server refuses before routing it: unreadable, too large,
/// or framed in a way it does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    Malformed,
    HeadTooLarge,
    TooManyHeaders,
    VersionNotSupported,
    BadContentLength,
    ConflictingLengths,
    LengthWithTransferEncoding,
    ChunkedBody,
    BodyTooLarge,
    Timeout,
}

impl HttpError {
    pub fn status(self) -> Status {
        match self {
            HttpError::Malformed
            | HttpError::BadContentLength
            | HttpError::ConflictingLengths
            | HttpError::LengthWithTransferEncoding => Status::BAD_REQUEST,
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => Status::HEADER_TOO_LARGE,
            HttpError::VersionNotSupported => Status::VERSION_NOT_SUPPORTED,
            HttpError::ChunkedBody => Status::LENGTH_REQUIRED,
            HttpError::BodyTooLarge => Status::PAYLOAD_TOO_LARGE,
            HttpError::Timeout => Status::REQUEST_TIMEOUT,
        }
    }

    pub fn limit(self) -> Option<Limit> {
        match self {
            HttpError::Timeout => Some(Limit::HeaderTimeout),
            HttpError::ChunkedBody => Some(Limit::ChunkedBody),
            HttpError::BodyTooLarge => Some(Limit::BodyTooLarge),
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => Some(Limit::HeadTooLarge),
            _ => None,
        }
    }

    /// What the client reads in the error body.
    pub fn message(self) -> &'static str {
        match self.status().0 {
            400 => "bad request",
            408 => "request head or body not received in time",
            411 => "chunked request bodies are not supported; send Content-Length",
            413 => "request body over 64 KiB",
            431 => "request head over 8 KiB",
            505 => "only HTTP/1.x is supported",
            _ => self.status().reason(),
        }
    }

    /// The rule that was broken, for logs.
    pub fn rule(self) -> &'static str {
        match self {
            HttpError::Malformed => "malformed request head",
            HttpError::HeadTooLarge => "request head over 8 KiB",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::VersionNotSupported => "not HTTP/1.x",
            HttpError::BadContentLength => "malformed Content-Length",
            HttpError::ConflictingLengths => "conflicting Content-Length values",
            HttpError::LengthWithTransferEncoding => "Content-Length beside Transfer-Encoding",
            HttpError::ChunkedBody => "Transfer-Encoding (chunked) body",
            HttpError::BodyTooLarge => "request body over 64 KiB",
            HttpError::Timeout => "request head or body not received in time",
        }
    }
}

/// `http error 400: conflicting Content-Length values`.
impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http error {}: {}", self.status().0, self.rule())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_names_the_code_and_the_rule() {
        assert_eq!(
            FrameError::ReservedBits.to_string(),
            "protocol error 1002: reserved bits set"
        );
        assert_eq!(
            FrameError::InvalidUtf8.to_string(),
            "invalid payload 1007: text is not valid UTF-8"
        );
        assert_eq!(
            HttpError::ConflictingLengths.to_string(),
            "http error 400: conflicting Content-Length values"
        );
    }

    #[test]
    fn limits_follow_the_rule_broken() {
        assert_eq!(
            FrameError::MessageTooBig.limit(),
            Some(Limit::MessageTooBig)
        );
        assert_eq!(FrameError::Unmasked.limit(), None);
        assert_eq!(HttpError::TooManyHeaders.limit(), Some(Limit::HeadTooLarge));
        assert_eq!(HttpError::Malformed.limit(), None);
    }
}
