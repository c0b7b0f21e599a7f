//! Log lines on stderr, as text or as one JSON object per line.
//!
//! The level and format are process-wide and set once at start, so logging
//! from any worker needs no handle.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::config::{LogFormat, LogLevel};

static LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(LogFormat::Text as u8);

pub fn init(format: LogFormat, level: LogLevel) {
    LEVEL.store(level as u8, Ordering::Relaxed);
    FORMAT.store(format as u8, Ordering::Relaxed);
}

pub fn enabled(level: LogLevel) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// Writes one line whatever the configured level (callers check `enabled`
/// first, except for the few lines the contract always wants printed).
pub fn emit(level: LogLevel, msg: &str, fields: &[(&str, &dyn Display)]) {
    super::log_writer::write(format_line(level, msg, fields).as_bytes());
}

/// Starts writing log lines from a thread of their own (see `log_writer`).
pub fn start_writer() -> std::io::Result<()> {
    super::log_writer::start(|dropped| {
        format_line(
            LogLevel::Warn,
            "log lines dropped: stderr did not take them in time",
            &[("dropped", &dropped)],
        )
    })
}

/// One line in the configured format, newline included.
fn format_line(level: LogLevel, msg: &str, fields: &[(&str, &dyn Display)]) -> String {
    let ts = super::clock::rfc3339_now();
    let msg = redact_tokens(msg);
    let mut line = String::with_capacity(128);
    if FORMAT.load(Ordering::Relaxed) == LogFormat::Json as u8 {
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), ts.into());
        object.insert("level".into(), level_name(level).into());
        object.insert("msg".into(), msg.into_owned().into());
        for (key, value) in fields {
            let text = redact_tokens(&value.to_string()).into_owned();
            let json = match text.parse::<i64>() {
                Ok(n) => n.into(),
                Err(_) => text.into(),
            };
            object.insert((*key).into(), json);
        }
        line.push_str(&serde_json::Value::Object(object).to_string());
    } else {
        let _ = write!(line, "{ts} {:<5} {msg}", level_name(level).to_uppercase());
        for (key, value) in fields {
            let text = value.to_string();
            let text = redact_tokens(&text);
            if text.is_empty() || text.contains(char::is_whitespace) || text.contains('"') {
                let _ = write!(line, " {key}={text:?}");
            } else {
                let _ = write!(line, " {key}={text}");
            }
        }
    }
    line.push('\n');
    line
}

/// Hides the value of every `token=` in a log field: a connection token is
/// a credential, and a field that shows a request's target (today the path,
/// tomorrow perhaps its query) must never carry it, whoever adds the field.
fn redact_tokens(text: &str) -> Cow<'_, str> {
    const KEY: &str = "token=";
    if !text.contains(KEY) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let value = at + KEY.len();
        out.push_str(&rest[..value]);
        out.push_str("[redacted]");
        let end = rest[value..]
            .find(|c: char| c == '&' || c == '"' || c.is_whitespace())
            .map_or(rest.len(), |len| value + len);
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `log!(Info, "message", key = value, ...)`: fields are only formatted when
/// the level is enabled.
#[macro_export]
macro_rules! log {
    ($level:ident, $msg:expr $(, $key:ident = $value:expr)* $(,)?) => {
        if $crate::obs::log::enabled($crate::config::LogLevel::$level) {
            $crate::obs::log::emit(
                $crate::config::LogLevel::$level,
                &$msg,
                &[$((stringify!($key), &$value as &dyn ::std::fmt::Display)),*],
            );
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_redacted_wherever_they_appear() {
        assert_eq!(redact_tokens("/ws"), "/ws");
        assert_eq!(
            redact_tokens("/ws?since=1&token=eyJh.eyJz.c2ln&epoch=e"),
            "/ws?since=1&token=[redacted]&epoch=e"
        );
        assert_eq!(
            redact_tokens("token=a token=b\"x"),
            "token=[redacted] token=[redacted]\"x"
        );
        assert_eq!(redact_tokens("/ws;token="), "/ws;token=[redacted]");
    }

    #[test]
    fn a_line_never_carries_a_token() {
        let path = "/ws?token=eyJhbGciOiJIUzI1NiJ9.e30.c2ln";
        let line = format_line(LogLevel::Info, "http request", &[("path", &path)]);
        assert!(!line.contains("eyJ"), "{line}");
        assert!(line.contains("token=[redacted]"), "{line}");
    }
}
