//! HTTP/1.1 request heads (parsed with httparse) and response encoding.

use std::fmt::Write as _;

pub use super::fault::HttpError;
pub use super::status::Status;

/// Request heads larger than this are refused with 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// More headers than this is a 431 too: nobody legitimate sends that many.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Option<String>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The first header with this name (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Every value of a header, for headers that may repeat.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether a comma-separated header (such as `Connection`) contains
    /// `token`, compared case-insensitively, across repeated headers.
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name).any(|value| {
            value
                .split(|&b| b == b',')
                .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// Whether the client asked to keep the connection open after the answer.
    pub fn wants_keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        self.minor_version >= 1 || self.header_has_token("connection", "keep-alive")
    }
}

/// The outcome of looking for a complete request head at the start of a
/// buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed.
    Partial,
    /// A full head of `len` bytes; anything after it belongs to the body or to
    /// the next protocol.
    Complete { request: Request, len: usize },
    /// The head can never be valid: answer with the error's status and
    /// close.
    Invalid(HttpError),
}

pub fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            Head::Invalid(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Head::Partial,
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD_BYTES => {
            Head::Invalid(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Complete(len)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q.to_owned())),
                None => (target, None),
            };
            let request = Request {
                method: req.method.unwrap_or("").to_owned(),
                path: path.to_owned(),
                query,
                minor_version: req.version.unwrap_or(1),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
            };
            Head::Complete { request, len }
        }
        Err(httparse::Error::TooManyHeaders) => Head::Invalid(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => Head::Invalid(HttpError::VersionNotSupported),
        Err(_) => Head::Invalid(HttpError::Malformed),
    }
}

/// How the body after a head is framed.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyLength {
    Fixed(usize),
    Invalid(HttpError),
}

/// Reads `Content-Length`, refusing what request smuggling is made of:
/// conflicting lengths, a length beside `Transfer-Encoding`, and chunked
/// bodies (an API of small JSON bodies has no need for them).
pub fn body_length(req: &Request) -> BodyLength {
    if req.header_all("transfer-encoding").next().is_some() {
        if req.header_all("content-length").next().is_some() {
            return BodyLength::Invalid(HttpError::LengthWithTransferEncoding);
        }
        return BodyLength::Invalid(HttpError::ChunkedBody);
    }
    let mut length: Option<u64> = None;
    for value in req.header_all("content-length") {
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 18 {
                return BodyLength::Invalid(HttpError::BadContentLength);
            }
            let n: u64 = item.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0'));
            match length {
                Some(previous) if previous != n => {
                    return BodyLength::Invalid(HttpError::ConflictingLengths)
                }
                _ => length = Some(n),
            }
        }
    }
    match length {
        Some(n) if n > MAX_BODY_BYTES as u64 => BodyLength::Invalid(HttpError::BodyTooLarge),
        Some(n) => BodyLength::Fixed(n as usize),
        None => BodyLength::Fixed(0),
    }
}

/// An HTTP response about to be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Whether the connection closes after this response.
    pub close: bool,
}

impl Response {
    pub fn new(status: Status, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            close: false,
        }
    }

    pub fn json(status: Status, body: &serde_json::Value) -> Response {
        let mut text = body.to_string();
        text.push('\n');
        Response::new(status, "application/json", text)
    }

    /// The JSON error body every failure uses: `{"error": "..."}`.
    pub fn error(status: Status, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message }))
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// Whether this answer can only be followed by closing the connection,
    /// because the request was unreadable or its body was not consumed.
    pub fn must_close(status: Status) -> bool {
        matches!(status.0, 400 | 408 | 411 | 413 | 431 | 505)
    }

    pub fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nServer: wsnotify\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n",
            self.status.0,
            self.status.reason(),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if self.close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_head(buf) {
            Head::Complete { request, len } => (request, len),
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn parses_method_path_query_and_headers() {
        let (req, len) = complete(b"GET /status?x=1 HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n");
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/status");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.minor_version, 1);
        assert_eq!(req.header("x-y"), Some("z"));
        assert_eq!(req.header("HOST"), Some("a"));
        assert_eq!(len, 47);
    }

    #[test]
    fn head_split_over_many_reads() {
        let full = b"POST /broadcast HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}";
        let head_len = full.len() - 2;
        for cut in 0..head_len {
            assert_eq!(parse_head(&full[..cut]), Head::Partial, "cut at {cut}");
        }
        let (_, len) = complete(full);
        assert_eq!(len, head_len, "the body after the head is left alone");
    }

    #[test]
    fn head_over_eight_kib_is_431() {
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(parse_head(&big), Head::Invalid(HttpError::HeadTooLarge));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_head(&big), Head::Invalid(HttpError::HeadTooLarge));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            head.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&head), Head::Invalid(HttpError::TooManyHeaders));
    }

    #[test]
    fn garbage_is_400_and_other_versions_505() {
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00\x01"),
            Head::Invalid(HttpError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Head::Invalid(HttpError::VersionNotSupported)
        );
        assert_eq!(
            parse_head(b"GET /\0 HTTP/1.1\r\n\r\n"),
            Head::Invalid(HttpError::Malformed)
        );
    }

    #[test]
    fn connection_tokens_are_case_insensitive_lists() {
        let (req, _) = complete(b"GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n");
        assert!(req.header_has_token("connection", "upgrade"));
        let (req, _) =
            complete(b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nconnection: UPGRADE\r\n\r\n");
        assert!(req.header_has_token("Connection", "upgrade"));
        let (req, _) = complete(b"GET / HTTP/1.1\r\nConnection: upgraded\r\n\r\n");
        assert!(!req.header_has_token("connection", "upgrade"));
    }

    #[test]
    fn keep_alive_defaults_by_version() {
        let (req, _) = complete(b"GET / HTTP/1.1\r\n\r\n");
        assert!(req.wants_keep_alive());
        let (req, _) = complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!req.wants_keep_alive());
        let (req, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!req.wants_keep_alive());
        let (req, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(req.wants_keep_alive());
    }

    #[test]
    fn body_length_rules() {
        let len = |head: &[u8]| body_length(&complete(head).0);
        assert_eq!(len(b"POST / HTTP/1.1\r\n\r\n"), BodyLength::Fixed(0));
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            BodyLength::Fixed(12)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n"),
            BodyLength::Fixed(65536)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"),
            BodyLength::Invalid(HttpError::BodyTooLarge)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            BodyLength::Invalid(HttpError::ConflictingLengths)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            BodyLength::Fixed(5)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            BodyLength::Invalid(HttpError::BadContentLength)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            BodyLength::Invalid(HttpError::BadContentLength)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            BodyLength::Invalid(HttpError::ChunkedBody)
        );
        assert_eq!(
            len(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            BodyLength::Invalid(HttpError::LengthWithTransferEncoding)
        );
    }

    #[test]
    fn responses_encode_with_length_and_close() {
        let r = Response::error(Status::NOT_FOUND, "not found")
            .with_header("X-A", "b")
            .closing();
        let text = String::from_utf8(r.encode(false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Type: application/json\r\n"));
        assert!(text.contains("X-A: b\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"not found\"}\n"));
        assert!(text.contains("Content-Length: 22\r\n"));
        let head = String::from_utf8(r.encode(true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }
}
