//! Command-line and environment configuration for wsnotify.
//!
//! Every option lives in one table (`OPTIONS`) so that parsing, the
//! environment variable names and `--help` cannot drift apart.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const DURATION_EXPECTED: &str = "expected a duration like 30, 0.5, 250ms, 10s, 5m or 1h";
const REDIS_EXPECTED: &str = "expected redis://[[user]:password@]host[:port][/db]";
/// 100 years: anything longer is a mistake (e.g. milliseconds given as seconds),
/// and capping it keeps `Instant + Duration` from overflowing.
const MAX_DURATION_NANOS: u128 = 36_525 * 86_400 * 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// `host` holds an IPv6 literal without brackets so it can be handed to
/// `ToSocketAddrs` together with `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    /// A Redis 6 ACL user; without one, AUTH names only the password
    /// (the `default` user).
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("redis://"))
            .map(|_| &s[8..])
            .ok_or(REDIS_EXPECTED)?;
        // The last '@' ends the userinfo, so an unencoded '@' in a password still works.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pw) = u.split_once(':').ok_or(REDIS_EXPECTED)?;
                let user = percent_decode(user).ok_or("invalid percent-encoding in the user")?;
                let pw = percent_decode(pw).ok_or("invalid percent-encoding in the password")?;
                let user = Some(user).filter(|u| !u.is_empty());
                // A user without a password is sent as one with an empty
                // password (what a `nopass` ACL user accepts).
                let pw = Some(pw).filter(|p| !p.is_empty() || user.is_some());
                (user, pw)
            }
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or(REDIS_EXPECTED)?;
            addr.parse::<Ipv6Addr>().map_err(|_| REDIS_EXPECTED)?;
            match after {
                "" => (addr, None),
                _ => (addr, Some(after.strip_prefix(':').ok_or(REDIS_EXPECTED)?)),
            }
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let name_char = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
            if host.is_empty() || !host.bytes().all(name_char) {
                return Err(REDIS_EXPECTED.into());
            }
            (host, port)
        };
        let port = match port {
            None => 6379,
            Some(p) => int(p, 1, Some(65535)).map_err(|_| "expected a port from 1 to 65535")?,
        };
        let db = match path {
            "" => 0,
            p => int(p, 0, None).map_err(|_| "expected a database number after the host")?,
        };
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            username,
            password,
            db,
        })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub workers: usize,
    pub notify_interval: Option<Duration>,
    pub drain_timeout: Duration,
    pub force_signals: u32,
    pub drain_log_interval: Duration,
    pub max_connections: usize,
    /// WebSocket clients, and connections still in the HTTP phase, per
    /// client address; 0: no limit.
    pub max_connections_per_ip: usize,
    pub max_message_bytes: usize,
    pub max_queue_bytes: usize,
    /// What the process may hold for its clients together (their queues,
    /// the turn's broadcasts, the mail between workers), every worker
    /// included.
    pub max_total_queue_bytes: usize,
    pub ping_interval: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub header_timeout: Duration,
    pub redis: Option<RedisUrl>,
    pub redis_channel: String,
    /// Bytes waiting to be published to Redis, for the whole process.
    pub redis_max_queue_bytes: usize,
    pub admin_token: Option<String>,
    /// Lower-cased; `None` allows any origin.
    pub allowed_origins: Option<Vec<String>>,
    pub enable_echo: bool,
    pub log_format: LogFormat,
    pub log_level: LogLevel,
    /// The unix socket for hand-over between processes (see `net::handover`).
    pub handover: Option<PathBuf>,
    /// Broadcasts kept for resume; 0 turns resume off.
    pub history_size: usize,
    /// The oldest age of a broadcast kept for resume.
    pub history_ttl: Duration,
    /// Bytes the history holds at most (frames and each entry's cost);
    /// the oldest entries leave first.
    pub max_history_bytes: usize,
    /// Bytes of client messages still being received (unfinished frames
    /// and fragments) the process holds at most, split evenly by the
    /// workers; past its share a worker closes the connection holding the
    /// most with 1009.
    pub max_total_receive_bytes: usize,
    /// Channels one connection may join (its own `user:` channel aside).
    pub max_channels_per_client: usize,
    /// Distinct channels the process holds, subscribed or kept for their
    /// messages.
    pub max_channels: usize,
    /// The HMAC-SHA256 key of connection tokens; without it, a token is
    /// refused.
    pub token_secret: Option<TokenSecret>,
    /// `/ws` without a valid token is refused.
    pub require_token: bool,
    /// permessage-deflate is negotiated with clients that offer it.
    pub compression: bool,
}

/// The shortest token secret accepted: HS256 wants a key as long as its
/// hash (RFC 7518, 3.2).
pub const MIN_TOKEN_SECRET_BYTES: usize = 32;

/// The key of connection tokens. Its `Debug` shows no byte of it, so no
/// dump of the configuration can print it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    key: Box<[u8]>,
    /// Read from `--token-secret-file` rather than given as a value: a
    /// secret may come one way only.
    from_file: bool,
}

impl TokenSecret {
    pub(crate) fn new(key: &[u8], from_file: bool) -> Result<TokenSecret, String> {
        if key.len() < MIN_TOKEN_SECRET_BYTES {
            return Err(format!(
                "expected a secret of at least {MIN_TOKEN_SECRET_BYTES} bytes"
            ));
        }
        Ok(TokenSecret {
            key: key.into(),
            from_file,
        })
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret({} bytes, redacted)", self.key.len())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8000,
            workers: 1,
            notify_interval: Some(Duration::from_secs(10)),
            drain_timeout: Duration::from_secs(30 * 60),
            force_signals: 3,
            drain_log_interval: Duration::from_secs(5),
            max_connections: 10_000,
            max_connections_per_ip: 0,
            max_message_bytes: 65_536,
            max_queue_bytes: 1_048_576,
            max_total_queue_bytes: 67_108_864,
            ping_interval: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(75)),
            header_timeout: Duration::from_secs(10),
            redis: None,
            redis_channel: "wsnotify".to_string(),
            redis_max_queue_bytes: 8_388_608,
            admin_token: None,
            allowed_origins: None,
            enable_echo: false,
            log_format: LogFormat::Text,
            log_level: LogLevel::Info,
            handover: None,
            history_size: 1000,
            max_history_bytes: 33_554_432,
            max_total_receive_bytes: 33_554_432,
            max_channels_per_client: 100,
            max_channels: 16_384,
            history_ttl: Duration::from_secs(300),
            token_secret: None,
            require_token: false,
            compression: true,
        }
    }
}

impl Config {
    pub fn origin_allowed(&self, origin: &str) -> bool {
        match &self.allowed_origins {
            None => true,
            Some(list) => list.contains(&normalize_origin(origin.trim())),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Takes a value; the string is the placeholder shown in `--help`.
    Value(&'static str),
    /// Takes a value that no error message may repeat.
    Secret(&'static str),
    /// Takes no value on the command line; its variable takes a boolean.
    Flag,
}

/// On failure returns the reason, which `parse` prefixes with the value and
/// where it came from.
type Setter = fn(&mut Config, &str) -> Result<(), String>;

struct Opt {
    name: &'static str,
    kind: Kind,
    default: &'static str,
    help: &'static str,
    set: Setter,
}

impl Opt {
    fn env_name(&self) -> String {
        format!(
            "WSNOTIFY_{}",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }
}

// Kept one entry per two lines so the table reads like the SPEC's.
#[rustfmt::skip]
static OPTIONS: &[Opt] = &[
    Opt { name: "host", kind: Kind::Value("ADDR"), default: "0.0.0.0", help: "address to bind (IPv4 or IPv6 literal)",
        set: |c, v| assign(&mut c.host, ip(v)) },
    Opt { name: "port", kind: Kind::Value("N"), default: "8000", help: "port to listen on; 0 picks a free one; one server per port (taken: exit 1)",
        set: |c, v| assign(&mut c.port, int(v, 0, Some(65535))) },
    Opt { name: "workers", kind: Kind::Value("N"), default: "1", help: "event-loop threads sharing the port (1 to 256)",
        set: |c, v| assign(&mut c.workers, int(v, 1, Some(256))) },
    Opt { name: "notify-interval", kind: Kind::Value("DUR"), default: "10s", help: "periodic notification period; 0 disables",
        set: |c, v| assign(&mut c.notify_interval, optional_duration(v)) },
    Opt { name: "drain-timeout", kind: Kind::Value("DUR"), default: "30m", help: "how long a drain waits for clients; 0 closes them at once",
        set: |c, v| assign(&mut c.drain_timeout, duration(v)) },
    Opt { name: "force-signals", kind: Kind::Value("N"), default: "3", help: "the N-th SIGINT/SIGTERM forces an immediate exit (at least 2)",
        set: |c, v| assign(&mut c.force_signals, int(v, 2, None)) },
    Opt { name: "drain-log-interval", kind: Kind::Value("DUR"), default: "5s", help: "how often drain progress is logged (must be > 0)",
        set: |c, v| assign(&mut c.drain_log_interval, positive_duration(v)) },
    Opt { name: "max-connections", kind: Kind::Value("N"), default: "10000", help: "WebSocket clients per process",
        set: |c, v| assign(&mut c.max_connections, int(v, 1, None)) },
    Opt { name: "max-connections-per-ip", kind: Kind::Value("N"), default: "0", help: "WebSocket clients, and connections in the HTTP phase, per client address; 0: no limit",
        set: |c, v| assign(&mut c.max_connections_per_ip, int(v, 0, None)) },
    Opt { name: "max-message-bytes", kind: Kind::Value("N"), default: "65536", help: "largest client message",
        set: |c, v| assign(&mut c.max_message_bytes, int(v, 1, None)) },
    Opt { name: "max-queue-bytes", kind: Kind::Value("N"), default: "1048576", help: "bytes queued for a client before it is a slow consumer",
        set: |c, v| assign(&mut c.max_queue_bytes, int(v, 1, None)) },
    Opt { name: "max-total-queue-bytes", kind: Kind::Value("N"), default: "67108864", help: "bytes queued for all clients together, between workers included, before the largest queues are dropped",
        set: |c, v| assign(&mut c.max_total_queue_bytes, int(v, 1, None)) },
    Opt { name: "ping-interval", kind: Kind::Value("DUR"), default: "30s", help: "server ping period; 0 disables",
        set: |c, v| assign(&mut c.ping_interval, optional_duration(v)) },
    Opt { name: "idle-timeout", kind: Kind::Value("DUR"), default: "75s", help: "close idle connections after this long; 0 disables",
        set: |c, v| assign(&mut c.idle_timeout, optional_duration(v)) },
    Opt { name: "header-timeout", kind: Kind::Value("DUR"), default: "10s", help: "time allowed for the request head (must be > 0)",
        set: |c, v| assign(&mut c.header_timeout, positive_duration(v)) },
    Opt { name: "redis", kind: Kind::Value("URL"), default: "none", help: "redis://[[user]:password@]host[:port][/db] to subscribe to",
        set: |c, v| assign(&mut c.redis, v.parse().map(Some)) },
    Opt { name: "redis-channel", kind: Kind::Value("NAME"), default: "wsnotify", help: "Redis Pub/Sub channel",
        set: |c, v| assign(&mut c.redis_channel, channel(v)) },
    Opt { name: "redis-max-queue-bytes", kind: Kind::Value("N"), default: "8388608", help: "bytes waiting for a slow Redis before publications are dropped",
        set: |c, v| assign(&mut c.redis_max_queue_bytes, int(v, 1, None)) },
    Opt { name: "admin-token", kind: Kind::Value("TOKEN"), default: "none", help: "token required by the admin endpoints",
        set: |c, v| assign(&mut c.admin_token, token(v).map(Some)) },
    Opt { name: "allowed-origins", kind: Kind::Value("LIST"), default: "any", help: "comma-separated Origin values to accept",
        set: |c, v| assign(&mut c.allowed_origins, origins(v).map(Some)) },
    Opt { name: "enable-echo", kind: Kind::Flag, default: "off", help: "echo client messages back",
        set: |c, v| assign(&mut c.enable_echo, boolean(v)) },
    Opt { name: "log-format", kind: Kind::Value("text|json"), default: "text", help: "log output format",
        set: |c, v| assign(&mut c.log_format, one_of(v, &[("text", LogFormat::Text), ("json", LogFormat::Json)])) },
    Opt { name: "log-level", kind: Kind::Value("LEVEL"), default: "info", help: "error, warn, info, debug or trace",
        set: |c, v| assign(&mut c.log_level, one_of(v, &[("error", LogLevel::Error), ("warn", LogLevel::Warn),
            ("info", LogLevel::Info), ("debug", LogLevel::Debug), ("trace", LogLevel::Trace)])) },
    Opt { name: "handover", kind: Kind::Value("PATH"), default: "none", help: "unix socket for handing the listening sockets to the next process",
        set: |c, v| assign(&mut c.handover, socket_path(v).map(Some)) },
    Opt { name: "history-size", kind: Kind::Value("N"), default: "1000", help: "broadcasts kept for resume (up to 1000000); 0 turns resume off",
        set: |c, v| assign(&mut c.history_size, int(v, 0, Some(1_000_000))) },
    Opt { name: "history-ttl", kind: Kind::Value("DUR"), default: "5m", help: "the oldest age of a broadcast kept for resume (must be > 0)",
        set: |c, v| assign(&mut c.history_ttl, positive_duration(v)) },
    Opt { name: "max-total-receive-bytes", kind: Kind::Value("N"), default: "33554432", help: "bytes of client messages still being received, all connections together; past it the connection holding the most is closed with 1009",
        set: |c, v| assign(&mut c.max_total_receive_bytes, int(v, 1, None)) },
    Opt { name: "max-channels-per-client", kind: Kind::Value("N"), default: "100", help: "channels one connection may join (its own user: channel does not count)",
        set: |c, v| assign(&mut c.max_channels_per_client, int(v, 1, None)) },
    Opt { name: "max-channels", kind: Kind::Value("N"), default: "16384", help: "distinct channels the process holds, subscribed or kept for their messages; past it a subscribe to a new channel is refused and a message to one is not kept",
        set: |c, v| assign(&mut c.max_channels, int(v, 1, None)) },
    Opt { name: "max-history-bytes", kind: Kind::Value("N"), default: "33554432", help: "bytes the resume history holds at most, for everyone and every channel together; past it the oldest entries leave first",
        set: |c, v| assign(&mut c.max_history_bytes, int(v, 0, None)) },
    Opt { name: "token-secret", kind: Kind::Secret("SECRET"), default: "none", help: "HMAC-SHA256 key of connection tokens, at least 32 bytes",
        set: |c, v| { c.token_secret = Some(secret_given(c, v)?); Ok(()) } },
    Opt { name: "token-secret-file", kind: Kind::Value("PATH"), default: "none", help: "the token secret read from a file (surrounding whitespace trimmed)",
        set: |c, v| { c.token_secret = Some(secret_file(c, v)?); Ok(()) } },
    Opt { name: "require-token", kind: Kind::Flag, default: "off", help: "refuse /ws without a valid token (401)",
        set: |c, v| assign(&mut c.require_token, boolean(v)) },
    Opt { name: "compression", kind: Kind::Value("on|off"), default: "on", help: "permessage-deflate for clients that offer it",
        set: |c, v| assign(&mut c.compression, one_of(v, &[("on", true), ("off", false)])) },
];

fn assign<T>(field: &mut T, value: Result<T, String>) -> Result<(), String> {
    *field = value?;
    Ok(())
}

fn ip(v: &str) -> Result<IpAddr, String> {
    // Brackets are how IPv6 hosts usually appear next to a port, so tolerate them.
    let bare = v.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    bare.unwrap_or(v)
        .parse()
        .map_err(|_| "expected an IPv4 or IPv6 address".into())
}

fn channel(v: &str) -> Result<String, String> {
    let ok = !v.is_empty() && !v.contains(char::is_whitespace);
    ok.then(|| v.to_string())
        .ok_or_else(|| "expected a non-empty name without whitespace".into())
}

fn token(v: &str) -> Result<String, String> {
    (!v.is_empty())
        .then(|| v.to_string())
        .ok_or_else(|| "expected a non-empty token".into())
}

const SECRET_TWICE: &str =
    "the token secret is given both by --token-secret and by --token-secret-file; give it one way";

fn secret_given(c: &Config, v: &str) -> Result<TokenSecret, String> {
    if c.token_secret.as_ref().is_some_and(|s| s.from_file) {
        return Err(SECRET_TWICE.into());
    }
    TokenSecret::new(v.as_bytes(), false)
}

fn secret_file(c: &Config, v: &str) -> Result<TokenSecret, String> {
    if c.token_secret.as_ref().is_some_and(|s| !s.from_file) {
        return Err(SECRET_TWICE.into());
    }
    let bytes = std::fs::read(v).map_err(|e| format!("cannot read it: {e}"))?;
    TokenSecret::new(bytes.trim_ascii(), true)
}

fn origins(v: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = v
        .split(',')
        .map(|item| normalize_origin(item.trim()))
        .filter(|item| !item.is_empty())
        .collect();
    if list.is_empty() {
        return Err("expected a comma-separated list of origins".into());
    }
    Ok(list)
}

/// Scheme and host compare case-insensitively and an Origin carries no path,
/// so lower-casing the whole value is enough.
fn normalize_origin(origin: &str) -> String {
    origin.to_ascii_lowercase()
}

/// A unix socket path leaves room in `sun_path` (108 bytes) for the
/// temporary name it is bound under before it is renamed into place.
const MAX_SOCKET_PATH: usize = 90;

fn socket_path(v: &str) -> Result<PathBuf, String> {
    let ok = !v.is_empty() && v.len() <= MAX_SOCKET_PATH && !v.contains('\0');
    ok.then(|| PathBuf::from(v))
        .ok_or_else(|| format!("expected a path of 1 to {MAX_SOCKET_PATH} bytes"))
}

fn one_of<T: Copy>(v: &str, choices: &[(&str, T)]) -> Result<T, String> {
    let v = v.to_ascii_lowercase();
    match choices.iter().find(|(name, _)| *name == v) {
        Some(&(_, value)) => Ok(value),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("expected one of {}", names.join(", ")))
        }
    }
}

/// Parses a non-negative integer in `min..=max` (`None`: up to the type's limit).
fn int<T: FromStr + PartialOrd + fmt::Display>(
    v: &str,
    min: T,
    max: Option<T>,
) -> Result<T, String> {
    let expected = || match &max {
        Some(max) => format!("expected an integer from {min} to {max}"),
        None => format!("expected an integer of at least {min}"),
    };
    // Checked up front because `parse` would accept a leading '+'.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    match v.parse::<T>() {
        Ok(n) if n >= min && max.as_ref().map_or(true, |max| n <= *max) => Ok(n),
        _ => Err(expected()),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected a boolean: 1/0, true/false or yes/no".into()),
    }
}

fn duration(v: &str) -> Result<Duration, String> {
    parse_duration(v).ok_or_else(|| DURATION_EXPECTED.to_string())
}

fn optional_duration(v: &str) -> Result<Option<Duration>, String> {
    duration(v).map(|d| Some(d).filter(|d| !d.is_zero()))
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    match duration(v)? {
        d if d.is_zero() => Err(format!("{DURATION_EXPECTED}, greater than 0")),
        d => Ok(d),
    }
}

/// Plain seconds (`1800`, `0.5`) or a number with `ms`, `s`, `m` or `h`.
/// Uses integer arithmetic on the decimal digits so `0.1` is exactly 100 ms.
pub fn parse_duration(s: &str) -> Option<Duration> {
    const SEC: u128 = 1_000_000_000;
    let units = [
        ("ms", SEC / 1000),
        ("s", SEC),
        ("m", 60 * SEC),
        ("h", 3600 * SEC),
    ];
    let (num, unit) = units
        .iter()
        .find_map(|&(suffix, unit)| Some((s.strip_suffix(suffix)?, unit)))
        .unwrap_or((s, SEC));
    let (whole, frac) = match num.split_once('.') {
        Some((_, "")) => return None,
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) {
        return None;
    }
    // Digits past the 18th are below a nanosecond even for hours.
    let frac = &frac[..frac.len().min(18)];
    let frac_nanos = match frac {
        "" => 0,
        f => f.parse::<u128>().ok()? * unit / 10u128.pow(f.len() as u32),
    };
    let nanos = whole.parse::<u128>().ok()?.checked_mul(unit)? + frac_nanos;
    (nanos <= MAX_DURATION_NANOS).then(|| Duration::from_nanos(nanos as u64))
}

/// A dash followed by a non-digit. Lets `--port -1` report a bad value rather
/// than a missing one, while `--port --help` still sees `--help`.
fn looks_like_option(arg: &str) -> bool {
    let mut chars = arg.chars();
    chars.next() == Some('-')
        && chars
            .next()
            .is_some_and(|c| !c.is_ascii_digit() && c != '.')
}

/// `args` excludes the program name. `env` looks up an environment variable.
///
/// `--help`/`--version` anywhere win over every other problem. A variable
/// whose option is also given as a flag is not consulted at all, so a stale
/// bad value in the environment cannot block an explicit flag.
pub fn parse<I, F>(args: I, env: F) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
    F: Fn(&str) -> Option<String>,
{
    let args: Vec<String> = args.into_iter().collect();
    let mut given: Vec<(&Opt, String)> = Vec::new();
    let mut first_error = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            _ if first_error.is_some() => continue,
            _ => {}
        }
        let (name, inline) = arg
            .split_once('=')
            .map_or((arg.as_str(), None), |(n, v)| (n, Some(v)));
        let opt = name
            .strip_prefix("--")
            .and_then(|n| OPTIONS.iter().find(|o| o.name == n));
        let value = match (opt.map(|o| o.kind), inline) {
            (None, _) if matches!(name, "--help" | "--version") => {
                Err(format!("{name} takes no value"))
            }
            (None, _) if looks_like_option(name) => {
                Err(format!("unknown option {name} (see --help)"))
            }
            (None, _) => Err(format!("unexpected argument {arg:?} (see --help)")),
            (Some(Kind::Flag), None) => Ok("true".to_string()),
            (Some(Kind::Flag), Some(_)) => Err(format!("{name} takes no value")),
            (Some(Kind::Value(_) | Kind::Secret(_)), Some(v)) => Ok(v.to_string()),
            (Some(Kind::Value(_) | Kind::Secret(_)), None) => match args.get(i) {
                Some(next) if !looks_like_option(next) => {
                    i += 1;
                    Ok(next.clone())
                }
                _ => Err(format!("{name} needs a value")),
            },
        };
        match (opt, value) {
            (Some(opt), Ok(value)) => given.push((opt, value)),
            (_, value) => first_error = value.err().map(ConfigError),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }

    let mut config = Config::default();
    let mut apply = |opt: &Opt, value: &str, source: &str| {
        (opt.set)(&mut config, value).map_err(|why| match opt.kind {
            Kind::Secret(_) => ConfigError(format!("invalid value for {source}: {why}")),
            _ => ConfigError(format!("invalid value {value:?} for {source}: {why}")),
        })
    };
    for opt in OPTIONS
        .iter()
        .filter(|o| !given.iter().any(|(g, _)| g.name == o.name))
    {
        let var = opt.env_name();
        if let Some(value) = env(&var) {
            apply(opt, &value, &var)?;
        }
    }
    // In command-line order, so the last of a repeated flag wins.
    for (opt, value) in &given {
        apply(opt, value, &format!("--{}", opt.name))?;
    }
    // Every /ws client would be refused: a setup mistake, not a policy.
    if config.require_token && config.token_secret.is_none() {
        return Err(ConfigError(
            "--require-token needs --token-secret or --token-secret-file".into(),
        ));
    }
    Ok(Command::Run(Box::new(config)))
}

pub fn help_text() -> String {
    let usage = |o: &Opt| match o.kind {
        Kind::Value(meta) | Kind::Secret(meta) => format!("--{} {meta}", o.name),
        Kind::Flag => format!("--{}", o.name),
    };
    let extra = [
        ("-h, --help", "print this help and exit"),
        ("-V, --version", "print the version and exit"),
    ];
    let rows: Vec<(String, String, String)> = OPTIONS
        .iter()
        .map(|o| {
            (
                usage(o),
                o.env_name(),
                format!("{} (default: {})", o.help, o.default),
            )
        })
        .chain(extra.map(|(flag, help)| (flag.into(), String::new(), help.into())))
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut out = format!(
        "wsnotify {VERSION} - WebSocket notification server\n\n\
         Usage: wsnotify [OPTIONS]\n\n\
         Every option can also be set by the variable shown; a flag beats the\n\
         variable, the variable beats the default.\n\n"
    );
    for (flag, var, help) in rows {
        out += &format!("  {flag:w0$}  {var:w1$}  {help}\n");
    }
    out + "\nDurations: seconds (1800, 0.5) or a number with ms, s, m or h (250ms, 10s, 5m, 1h).\n\
           Booleans in variables: 1/0, true/false, yes/no (any case).\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], vars: &[(&str, &str)]) -> Result<Config, String> {
        let args = args.iter().map(|s| s.to_string());
        let env = |k: &str| Some(vars.iter().find(|(n, _)| *n == k)?.1.to_string());
        match parse(args, env) {
            Ok(Command::Run(c)) => Ok(*c),
            Ok(other) => Err(format!("unexpected {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn ok(args: &[&str]) -> Config {
        run(args, &[]).unwrap()
    }

    fn err(args: &[&str]) -> String {
        run(args, &[]).unwrap_err()
    }

    fn var(name: &str, value: &str) -> Result<Config, String> {
        run(&[], &[(name, value)])
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn defaults() {
        let c = ok(&[]);
        assert_eq!(c, Config::default());
        assert_eq!(
            (c.host, c.port, c.workers),
            ("0.0.0.0".parse().unwrap(), 8000, 1)
        );
        assert_eq!(
            (c.notify_interval, c.drain_timeout),
            (Some(secs(10)), secs(1800))
        );
        assert_eq!((c.force_signals, c.drain_log_interval), (3, secs(5)));
        assert_eq!(
            (c.max_connections, c.max_message_bytes, c.max_queue_bytes),
            (10000, 65536, 1048576)
        );
        assert_eq!(
            (c.ping_interval, c.idle_timeout),
            (Some(secs(30)), Some(secs(75)))
        );
        assert_eq!(
            (c.header_timeout, c.redis, c.redis_channel.as_str()),
            (secs(10), None, "wsnotify")
        );
        assert_eq!(
            (c.max_connections_per_ip, c.redis_max_queue_bytes),
            (0, 8 * 1024 * 1024)
        );
        assert_eq!(c.max_total_queue_bytes, 64 * 1024 * 1024);
        assert_eq!(
            (c.admin_token, c.allowed_origins, c.enable_echo),
            (None, None, false)
        );
        assert_eq!(
            (c.log_format, c.log_level),
            (LogFormat::Text, LogLevel::Info)
        );
        assert!(LogLevel::Error < LogLevel::Warn && LogLevel::Debug < LogLevel::Trace);
        assert_eq!(c.handover, None);
        assert_eq!((c.history_size, c.history_ttl), (1000, secs(300)));
        assert!(c.compression);
    }

    #[test]
    fn help_defaults_match_config_default() {
        for o in OPTIONS
            .iter()
            .filter(|o| !matches!(o.default, "none" | "any" | "off"))
        {
            let mut c = Config::default();
            (o.set)(&mut c, o.default).unwrap();
            assert_eq!(c, Config::default(), "--{}", o.name);
        }
    }

    type Check = fn(&Config) -> bool;

    #[rustfmt::skip]
    const EVERY_OPTION: &[(&str, &str, Check)] = &[
        ("host", "::1", |c| c.host == IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ("port", "0", |c| c.port == 0),
        ("workers", "256", |c| c.workers == 256),
        ("notify-interval", "0", |c| c.notify_interval.is_none()),
        ("drain-timeout", "0", |c| c.drain_timeout.is_zero()),
        ("force-signals", "2", |c| c.force_signals == 2),
        ("drain-log-interval", "250ms", |c| c.drain_log_interval == Duration::from_millis(250)),
        ("max-connections", "1", |c| c.max_connections == 1),
        ("max-connections-per-ip", "3", |c| c.max_connections_per_ip == 3),
        ("max-message-bytes", "7", |c| c.max_message_bytes == 7),
        ("max-queue-bytes", "9", |c| c.max_queue_bytes == 9),
        ("max-total-queue-bytes", "4096", |c| c.max_total_queue_bytes == 4096),
        ("ping-interval", "1m", |c| c.ping_interval == Some(secs(60))),
        ("idle-timeout", "0", |c| c.idle_timeout.is_none()),
        ("header-timeout", "2", |c| c.header_timeout == secs(2)),
        ("redis", "redis://r", |c| c.redis.as_ref().is_some_and(|r| r.host == "r")),
        ("redis-channel", "news", |c| c.redis_channel == "news"),
        ("redis-max-queue-bytes", "4096", |c| c.redis_max_queue_bytes == 4096),
        ("admin-token", "s3cret", |c| c.admin_token.as_deref() == Some("s3cret")),
        ("allowed-origins", "https://a.example", |c| c.allowed_origins == Some(vec!["https://a.example".into()])),
        ("enable-echo", "1", |c| c.enable_echo),
        ("log-format", "json", |c| c.log_format == LogFormat::Json),
        ("log-level", "trace", |c| c.log_level == LogLevel::Trace),
        ("handover", "/run/wsnotify/handover.sock", |c| c.handover == Some(PathBuf::from("/run/wsnotify/handover.sock"))),
        ("history-size", "0", |c| c.history_size == 0),
        ("max-history-bytes", "4096", |c| c.max_history_bytes == 4096),
        ("max-channels-per-client", "3", |c| c.max_channels_per_client == 3),
        ("max-channels", "5", |c| c.max_channels == 5),
        ("max-total-receive-bytes", "4096", |c| c.max_total_receive_bytes == 4096),
        ("history-ttl", "30s", |c| c.history_ttl == secs(30)),
        ("token-secret", "0123456789abcdef0123456789abcdef", |c| c.token_secret.as_ref().is_some_and(|s| s.key() == b"0123456789abcdef0123456789abcdef")),
        ("token-secret-file", SECRET_FILE, |c| c.token_secret.as_ref().is_some_and(|s| s.key() == SECRET_IN_FILE)),
        ("require-token", "1", |c| c.require_token),
        ("compression", "off", |c| !c.compression),
    ];

    /// A test secret in a file, with whitespace around it.
    const SECRET_FILE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/token-secret.txt"
    );
    const SECRET_IN_FILE: &[u8] = b"test-only secret: wsnotify tokens/e2e 0123456789";

    #[test]
    fn every_option_by_flag_by_equals_and_by_variable() {
        assert_eq!(EVERY_OPTION.len(), OPTIONS.len());
        for &(name, value, check) in EVERY_OPTION {
            // --require-token is refused without a secret to check tokens with.
            let secret: &[(&str, &str)] = match name {
                "require-token" => &[("WSNOTIFY_TOKEN_SECRET_FILE", SECRET_FILE)],
                _ => &[],
            };
            let ok = |args: &[&str]| run(args, secret).unwrap();
            let flag = format!("--{name}");
            if matches!(name, "enable-echo" | "require-token") {
                assert!(check(&ok(&[&flag])));
            } else {
                assert!(check(&ok(&[&flag, value])), "{flag} {value}");
                assert!(check(&ok(&[&format!("{flag}={value}")])), "{flag}={value}");
            }
            let name = format!("WSNOTIFY_{}", name.to_uppercase().replace('-', "_"));
            let vars = [&[(name.as_str(), value)], secret].concat();
            assert!(check(&run(&[], &vars).unwrap()), "{name}={value}");
        }
    }

    #[test]
    fn flag_beats_variable_and_last_flag_wins() {
        let c = run(&["--port", "1", "--port=2"], &[("WSNOTIFY_PORT", "3")]).unwrap();
        assert_eq!(c.port, 2);
        // The shadowed variable is not even validated.
        assert_eq!(
            run(&["--port", "1"], &[("WSNOTIFY_PORT", "x")]).map(|c| c.port),
            Ok(1)
        );
        assert_eq!(
            run(&[], &[("WSNOTIFY_PORT", "3"), ("WSNOTIFY_BOGUS", "?")]).map(|c| c.port),
            Ok(3)
        );
        let echo = run(&["--enable-echo"], &[("WSNOTIFY_ENABLE_ECHO", "0")]);
        assert_eq!(echo.map(|c| c.enable_echo), Ok(true));
    }

    #[test]
    fn booleans() {
        let forms = "1 true TRUE yes Yes".split(' ').map(|v| (v, true));
        for (v, want) in forms.chain("0 false False no NO".split(' ').map(|v| (v, false))) {
            let echo = var("WSNOTIFY_ENABLE_ECHO", v).map(|c| c.enable_echo);
            assert_eq!(echo, Ok(want), "{v}");
        }
        assert_eq!(
            var("WSNOTIFY_ENABLE_ECHO", "on").unwrap_err(),
            r#"invalid value "on" for WSNOTIFY_ENABLE_ECHO: expected a boolean: 1/0, true/false or yes/no"#
        );
        assert_eq!(err(&["--enable-echo=yes"]), "--enable-echo takes no value");
    }

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let good = [
            ("1800", secs(1800)),
            ("0.5", ms(500)),
            ("0.1", ms(100)),
            ("250ms", ms(250)),
        ];
        let more = [
            ("1.5ms", Duration::from_micros(1500)),
            ("10s", secs(10)),
            ("5m", secs(300)),
        ];
        let rest = [
            ("1.5m", secs(90)),
            ("1h", secs(3600)),
            ("0", Duration::ZERO),
            ("876600h", secs(3_155_760_000)),
        ];
        for (s, want) in good.into_iter().chain(more).chain(rest) {
            assert_eq!(parse_duration(s), Some(want), "{s}");
        }
        let bad = "-1 -0.5s NaN inf 1e3 +5 5. .5 1.2.3 s 5d 1S 876601h 99999999999999999999999999999999999999999h";
        for s in bad.split(' ').chain(["", "10 s"]) {
            assert_eq!(parse_duration(s), None, "{s:?}");
        }
        assert_eq!(
            var("WSNOTIFY_DRAIN_TIMEOUT", "x").unwrap_err(),
            r#"invalid value "x" for WSNOTIFY_DRAIN_TIMEOUT: expected a duration like 30, 0.5, 250ms, 10s, 5m or 1h"#
        );
        assert!(err(&["--ping-interval", "-5"])
            .starts_with(r#"invalid value "-5" for --ping-interval"#));
    }

    #[test]
    fn lower_bounds() {
        assert!(err(&["--header-timeout", "0"])
            .starts_with(r#"invalid value "0" for --header-timeout: "#));
        assert!(err(&["--drain-log-interval=0s"]).ends_with("greater than 0"));
        assert!(err(&["--history-ttl", "0"]).ends_with("greater than 0"));
        assert!(err(&["--history-size", "1000001"]).ends_with("from 0 to 1000000"));
        let workers = r#"invalid value "0" for --workers: expected an integer from 1 to 256"#;
        assert_eq!(err(&["--workers", "0"]), workers);
        assert!(err(&["--workers", "257"]).ends_with("from 1 to 256"));
        let signals = r#"invalid value "1" for --force-signals: expected an integer of at least 2"#;
        assert_eq!(err(&["--force-signals", "1"]), signals);
        for opt in [
            "--max-connections",
            "--max-message-bytes",
            "--max-queue-bytes",
            "--redis-max-queue-bytes",
        ] {
            assert!(err(&[opt, "0"]).ends_with("at least 1"), "{opt}");
        }
    }

    #[test]
    fn bad_values() {
        let port = r#"invalid value "abc" for --port: expected an integer from 0 to 65535"#;
        assert_eq!(err(&["--port", "abc"]), port);
        assert_eq!(err(&["--port", "-1"]), port.replace("abc", "-1"));
        for (opt, value) in [
            ("--port", "65536"),
            ("--port", "+1"),
            ("--host", "localhost"),
            ("--redis-channel", "a b"),
        ] {
            assert!(
                err(&[opt, value]).contains(&format!("for {opt}: expected")),
                "{opt} {value}"
            );
        }
        for arg in [
            "--redis-channel=",
            "--admin-token=",
            "--log-format=xml",
            "--log-level=x",
            "--handover=",
        ] {
            let opt = arg.split('=').next().unwrap_or_default();
            assert!(
                err(&[arg]).contains(&format!("for {opt}: expected")),
                "{arg}"
            );
        }
        assert!(err(&["--handover", &"x".repeat(91)]).ends_with("a path of 1 to 90 bytes"));
        assert_eq!(
            ok(&["--host", "[::]"]).host,
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
        assert_eq!(ok(&["--log-level", "WARN"]).log_level, LogLevel::Warn);
        assert!(var("WSNOTIFY_WORKERS", "0")
            .unwrap_err()
            .contains("for WSNOTIFY_WORKERS: expected"));
    }

    #[test]
    fn argument_errors() {
        assert_eq!(err(&["--foo"]), "unknown option --foo (see --help)");
        assert_eq!(err(&["--foo=1"]), "unknown option --foo (see --help)");
        assert_eq!(err(&["-x"]), "unknown option -x (see --help)");
        assert_eq!(
            err(&["serve"]),
            r#"unexpected argument "serve" (see --help)"#
        );
        assert_eq!(err(&["--port"]), "--port needs a value");
        assert_eq!(err(&["--port", "--workers", "2"]), "--port needs a value");
        assert_eq!(err(&["--version=1"]), "--version takes no value");
    }

    #[test]
    fn help_and_version_win() {
        let cmd = |args: &[&str]| parse(args.iter().map(|s| s.to_string()), |_| Some("bad".into()));
        assert_eq!(cmd(&["--help"]), Ok(Command::Help));
        assert_eq!(cmd(&["--foo", "--port", "x", "-h"]), Ok(Command::Help));
        assert_eq!(cmd(&["--port", "-V"]), Ok(Command::Version));
        assert_eq!(cmd(&["--version", "--help"]), Ok(Command::Version));
        let help = help_text();
        assert!(
            help.contains("Usage: wsnotify [OPTIONS]")
                && help.contains("Durations:")
                && help.contains("Booleans")
        );
        for o in OPTIONS {
            let line = help
                .lines()
                .find(|l| l.starts_with(&format!("  --{} ", o.name)))
                .unwrap();
            assert!(
                line.contains(&o.env_name())
                    && line.ends_with(&format!("(default: {})", o.default))
            );
        }
    }

    #[test]
    fn token_secrets_one_way_long_enough_and_never_shown() {
        let short = "0123456789abcdef0123456789abcde";
        let said = err(&["--token-secret", short]);
        assert_eq!(
            said,
            "invalid value for --token-secret: expected a secret of at least 32 bytes"
        );
        let said = var("WSNOTIFY_TOKEN_SECRET", short).unwrap_err();
        assert!(said.starts_with("invalid value for WSNOTIFY_TOKEN_SECRET: "));
        assert!(!said.contains(short));
        let long = "0123456789abcdef0123456789abcdef";
        let twice = [
            run(
                &["--token-secret", long, "--token-secret-file", SECRET_FILE],
                &[],
            ),
            run(
                &["--token-secret-file", SECRET_FILE, "--token-secret", long],
                &[],
            ),
            run(
                &["--token-secret-file", SECRET_FILE],
                &[("WSNOTIFY_TOKEN_SECRET", long)],
            ),
            run(
                &[],
                &[
                    ("WSNOTIFY_TOKEN_SECRET", long),
                    ("WSNOTIFY_TOKEN_SECRET_FILE", SECRET_FILE),
                ],
            ),
        ];
        for said in twice {
            let said = said.unwrap_err();
            assert!(said.ends_with("give it one way"), "{said}");
            assert!(!said.contains(long), "{said}");
        }
        let last = ok(&["--token-secret", &"a".repeat(40), "--token-secret", long]);
        assert_eq!(
            last.token_secret.unwrap().key(),
            long.as_bytes(),
            "the last flag wins"
        );
        let flag = run(&["--token-secret", long], &[("WSNOTIFY_TOKEN_SECRET", "x")]);
        assert_eq!(flag.unwrap().token_secret.unwrap().key(), long.as_bytes());
        let missing = err(&["--token-secret-file", "/nonexistent/secret"]);
        assert!(
            missing.starts_with(
                r#"invalid value "/nonexistent/secret" for --token-secret-file: cannot read it: "#
            ),
            "{missing}"
        );
        let config = ok(&["--token-secret", long]);
        assert!(!format!("{config:?}").contains(long), "no dump shows it");
        assert!(!help_text().contains(long));
        let strict = run(
            &["--token-secret", long],
            &[("WSNOTIFY_REQUIRE_TOKEN", "yes")],
        );
        assert!(strict.unwrap().require_token);
        assert!(!var("WSNOTIFY_REQUIRE_TOKEN", "0").unwrap().require_token);
        assert_eq!(
            var("WSNOTIFY_REQUIRE_TOKEN", "yes").unwrap_err(),
            "--require-token needs --token-secret or --token-secret-file",
            "every client would be refused"
        );
        assert!(var("WSNOTIFY_REQUIRE_TOKEN", "maybe").is_err());
    }

    #[test]
    fn a_short_secret_file_is_refused_without_showing_it() {
        let path =
            std::env::temp_dir().join(format!("wsnotify-short-secret-{}", std::process::id()));
        std::fs::write(&path, "  too short\n").unwrap();
        let said = err(&["--token-secret-file", path.to_str().unwrap()]);
        std::fs::remove_file(&path).unwrap();
        assert!(
            said.ends_with("expected a secret of at least 32 bytes"),
            "{said}"
        );
        assert!(!said.contains("too short"));
    }

    #[test]
    fn redis_urls() -> Result<(), String> {
        let r = |host: &str, port, password: Option<&str>, db| {
            Ok(RedisUrl {
                host: host.into(),
                port,
                username: None,
                password: password.map(String::from),
                db,
            })
        };
        let user = |name: &str, password: &str| {
            Ok(RedisUrl {
                host: "h".into(),
                port: 6379,
                username: Some(name.into()),
                password: Some(password.into()),
                db: 0,
            })
        };
        assert_eq!("redis://localhost".parse(), r("localhost", 6379, None, 0));
        assert_eq!(
            "redis://10.0.0.1:6380/".parse(),
            r("10.0.0.1", 6380, None, 0)
        );
        assert_eq!("redis://:pw@h:1/5".parse(), r("h", 1, Some("pw"), 5));
        assert_eq!("redis://:@h".parse(), r("h", 6379, None, 0));
        assert_eq!(
            "REDIS://user:p%40ss@h/2".parse(),
            Ok(RedisUrl {
                db: 2,
                ..user("user", "p@ss")?
            })
        );
        assert_eq!("redis://al%3Ace:s%20c:r@h".parse(), user("al:ce", "s c:r"));
        assert_eq!("redis://nopass:@h".parse(), user("nopass", ""));
        assert_eq!("redis://:a@b@h".parse(), r("h", 6379, Some("a@b"), 0));
        assert_eq!("redis://[::1]".parse(), r("::1", 6379, None, 0));
        assert_eq!(
            "redis://:pw@[fe80::1]:7000/3".parse(),
            r("fe80::1", 7000, Some("pw"), 3)
        );
        let bad = "http://h redis:/h redis:// redis://:pw@ redis://h:0 redis://h:70000 redis://h: redis://h:x \
                   redis://h/x redis://h/-1 redis://::1 redis://[::1 redis://[zz] redis://[::1]x redis://user@h \
                   redis://:%zz@h redis://%zz:pw@h redis://h?x";
        for s in bad.split_whitespace() {
            assert!(s.parse::<RedisUrl>().is_err(), "{s}");
        }
        assert_eq!(
            err(&["--redis", "redis://h:99999"]),
            r#"invalid value "redis://h:99999" for --redis: expected a port from 1 to 65535"#
        );
        assert!(var("WSNOTIFY_REDIS", "http://x")
            .unwrap_err()
            .contains("for WSNOTIFY_REDIS: expected"));
        Ok(())
    }

    #[test]
    fn allowed_origins() {
        let c = ok(&[
            "--allowed-origins",
            " HTTPS://App.Example.com , ,http://localhost:3000,",
        ]);
        let want = ["https://app.example.com", "http://localhost:3000"].map(String::from);
        assert_eq!(c.allowed_origins.as_deref(), Some(&want[..]));
        assert!(
            c.origin_allowed("https://APP.example.COM")
                && c.origin_allowed("http://localhost:3000")
        );
        assert!(
            !c.origin_allowed("http://localhost:3001") && !c.origin_allowed("https://evil.example")
        );
        assert!(ok(&[]).origin_allowed("https://anything"));
        assert!(err(&["--allowed-origins", " , "]).contains("for --allowed-origins: expected"));
    }
}
