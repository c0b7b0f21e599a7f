//! permessage-deflate negotiation, server side (RFC 7692 section 7, over the
//! `Sec-WebSocket-Extensions` grammar of RFC 6455 9.1).
//!
//! Every offer is read in order and the first one this server can meet is
//! accepted. The answer always carries both `no_context_takeover`
//! parameters: no message refers to an earlier one in either direction, so
//! a connection keeps no compression state and a broadcast is compressed
//! once for every client. An offer that cannot be met, or that breaks the
//! grammar, is declined: the connection opens without it, never refused.

use super::http::Request;

/// The only extension this server speaks.
const NAME: &str = "permessage-deflate";

/// The window the compressor always uses (32 KiB).
const SERVER_WINDOW_BITS: u8 = 15;

/// An accepted offer: what the 101 answers in `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The offer named `server_max_window_bits`; RFC 7692 7.1.2.1 wants it
    /// answered with a value no larger (ours: 15).
    echo_server_window: bool,
}

impl Agreement {
    pub fn response(self) -> &'static str {
        if self.echo_server_window {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
    }
}

/// The first permessage-deflate offer of the request this server can meet.
pub fn negotiate(req: &Request) -> Option<Agreement> {
    req.header_all("sec-websocket-extensions")
        .filter_map(|value| std::str::from_utf8(value).ok())
        .flat_map(split_outside_quotes(','))
        .find_map(|element| accept(element.trim()))
}

/// Judges one element of the list: an extension name and its parameters.
fn accept(element: &str) -> Option<Agreement> {
    let mut parts = split_outside_quotes(';')(element);
    if parts.next()?.trim() != NAME {
        return None;
    }
    let mut seen = [false; 4];
    let mut agreement = Agreement {
        echo_server_window: false,
    };
    for part in parts {
        let (name, value) = parameter(part.trim())?;
        let index = match name {
            "server_no_context_takeover" => {
                value.is_none().then_some(())?;
                0
            }
            "client_no_context_takeover" => {
                value.is_none().then_some(())?;
                1
            }
            "server_max_window_bits" => {
                // A smaller window than ours cannot be honoured: every
                // compressed broadcast is shared and made with 15 bits.
                (window_bits(value?.as_str())? == SERVER_WINDOW_BITS).then_some(())?;
                agreement.echo_server_window = true;
                2
            }
            "client_max_window_bits" => {
                // Any window the client picks inflates with ours; the
                // answer need not (and does not) name one.
                if let Some(value) = value {
                    window_bits(&value)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
    }
    Some(agreement)
}

/// `name` or `name=token` or `name="quoted"`, the quoted value unescaped.
fn parameter(text: &str) -> Option<(&str, Option<String>)> {
    let Some((name, value)) = text.split_once('=') else {
        return is_token(text).then_some((text, None));
    };
    let (name, value) = (name.trim(), value.trim());
    if !is_token(name) {
        return None;
    }
    let value = match value.strip_prefix('"') {
        Some(quoted) => unquote(quoted)?,
        None => value.to_owned(),
    };
    // RFC 6455 9.1: a quoted value must still be a token once unescaped.
    is_token(&value).then_some((name, Some(value)))
}

/// The inside of a quoted string after its opening quote, which must end
/// at its closing quote.
fn unquote(quoted: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// A window size parameter: 8 to 15, decimal, no leading zero (RFC 7692
/// 7.1.2.1 and 7.1.2.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits at `separator` where it is not inside a quoted string.
fn split_outside_quotes(separator: char) -> impl Fn(&str) -> std::vec::IntoIter<&str> {
    move |text| {
        let mut pieces = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        for (at, c) in text.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                c if c == separator && !quoted => {
                    pieces.push(&text[start..at]);
                    start = at + 1;
                }
                _ => {}
            }
        }
        pieces.push(&text[start..]);
        pieces.into_iter()
    }
}

#[cfg(test)]
mod tests;
