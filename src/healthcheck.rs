//! `wsnotify healthcheck [URL]`: a built-in HTTP probe, so that a `FROM
//! scratch` image (no shell, no curl) can still have a Docker HEALTHCHECK or
//! a Kubernetes exec probe.
//!
//! One blocking HTTP/1.1 GET over `std::net::TcpStream`, bounded by
//! [`TIMEOUT`] in all (resolve, connect, write, read). Exit code 0 when the
//! answer is 200, 1 for anything else (another status, no answer, a bad
//! URL); one line on stdout (healthy) or stderr (not). `/health` answers 503
//! while the server drains, so the probe fails during a drain: that is what
//! a readiness check wants, and what a liveness check must not use.
//!
//! Without a URL it probes `http://127.0.0.1:8000/health`, taking the port
//! from `WSNOTIFY_PORT` and the address from `WSNOTIFY_HOST` when they are
//! set (an unspecified bind address, `0.0.0.0` or `::`, is probed on the
//! loopback address of its family), so in a container configured through
//! variables the probe finds the server without arguments.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The whole probe's budget: below Docker's and Kubernetes' probe timeouts
/// as usually set, long enough for a loaded server on the same host.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The most of the answer that is read; `/health` answers in a few dozen bytes.
const MAX_RESPONSE: usize = 16 * 1024;

pub const USAGE: &str = "\
usage: wsnotify healthcheck [URL]

GETs URL (default http://127.0.0.1:$WSNOTIFY_PORT/health, port 8000 when the
variable is unset; WSNOTIFY_HOST is honoured too) and exits 0 on a 200, 1
otherwise. A URL without a path probes /health. Only http:// URLs.
";

/// Where to send the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host as written in the URL, without brackets (a name or a literal).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// The `Host` header value: the authority as written, brackets included.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `http://HOST[:PORT][/PATH]`. HOST is a name, an IPv4 literal or a
/// bracketed IPv6 literal; PORT defaults to 80; an empty path is `/health`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "unsupported scheme {scheme:?} in {url:?}: only http:// is probed"
            ))
        }
        None => {
            return Err(format!(
                "{url:?} is not a URL like http://127.0.0.1:8000/health"
            ))
        }
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    // The fragment is never sent.
    let path = path.split('#').next().unwrap_or("");
    let path = match path {
        "" => "/health".to_string(),
        p if p.starts_with('?') => format!("/health{p}"),
        p => p.to_string(),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{url:?}: the path has spaces or control characters"
        ));
    }
    if authority.contains('@') {
        return Err(format!("{url:?}: user information is not supported"));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: unclosed [ in the host"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{url:?}: {host:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{url:?}: expected :PORT after ]"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    let valid_name = |b: u8| b.is_ascii_alphanumeric() || b"-._".contains(&b);
    if !host.contains(':') && !host.bytes().all(valid_name) {
        return Err(format!("{url:?}: {host:?} is not a host name or address"));
    }
    let port = match port {
        None => 80,
        Some(p) => {
            parse_port(p).ok_or_else(|| format!("{url:?}: {p:?} is not a port from 1 to 65535"))?
        }
    };
    Ok(Target {
        host: host.to_string(),
        port,
        path,
    })
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&n| n != 0)
}

/// The URL probed when none is given, from `WSNOTIFY_HOST` and
/// `WSNOTIFY_PORT` as `env` returns them (empty counts as unset).
pub fn default_url<F: Fn(&str) -> Option<String>>(env: F) -> Result<String, String> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let port = match var("WSNOTIFY_PORT") {
        None => 8000,
        Some(p) => parse_port(p.trim()).ok_or_else(|| {
            format!("WSNOTIFY_PORT={p:?} names no port to probe; pass the URL instead")
        })?,
    };
    let host = match var("WSNOTIFY_HOST") {
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Some(h) => {
            let trimmed = h.trim();
            let bare = trimmed
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(trimmed);
            match bare.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Ok(IpAddr::V6(a)) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                Ok(a) => a,
                Err(_) => {
                    return Err(format!(
                        "WSNOTIFY_HOST={h:?} is not an IP address; pass the URL instead"
                    ))
                }
            }
        }
    };
    Ok(format!("http://{}/health", SocketAddr::new(host, port)))
}

/// Sends the GET and returns the status code and the first line of the body.
pub fn probe(target: &Target, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {} ms", timeout.as_millis()))
    };
    let authority = target.authority();
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
        .collect();
    let mut last_error = format!("{} resolves to no address", target.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: wsnotify-healthcheck/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        crate::config::VERSION
    );
    stream
        .set_write_timeout(Some(left()?))
        .and_then(|_| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("cannot send the request to {authority}: {e}"))?;

    let mut response = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        if let Some(done) = complete(&response) {
            response.truncate(done);
            break;
        }
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| format!("socket error: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() >= MAX_RESPONSE {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no answer from {authority} within {} ms",
                    timeout.as_millis()
                ))
            }
            Err(e) => return Err(format!("cannot read the answer from {authority}: {e}")),
        }
    }
    parse_response(&response).ok_or_else(|| {
        if response.is_empty() {
            format!("{authority} closed the connection without an answer")
        } else {
            format!("{authority} sent no HTTP answer")
        }
    })
}

/// The length of a complete response in `bytes` (head plus Content-Length
/// bytes of body), once it is all there; `None` while more is to come (a
/// response without Content-Length ends when the server closes).
fn complete(bytes: &[u8]) -> Option<usize> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let length: usize = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    (bytes.len() >= head_end + length).then_some(head_end + length)
}

/// The status code and the body's first line (at most 200 characters).
fn parse_response(bytes: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(bytes);
    let status_line = text.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.lines().next().unwrap_or("").trim())
        .unwrap_or("");
    Some((code, body.chars().take(200).collect()))
}

/// The subcommand: `args` are the arguments after `healthcheck`.
pub fn main<I: IntoIterator<Item = String>>(args: I) -> ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    let url = match args.as_slice() {
        [flag] if flag == "-h" || flag == "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        [] => match default_url(|name| std::env::var(name).ok()) {
            Ok(url) => url,
            Err(e) => return unhealthy(&e),
        },
        [url] if !url.starts_with('-') => url.clone(),
        _ => return unhealthy(&format!("bad arguments {args:?}\n{USAGE}")),
    };
    let target = match parse_url(&url) {
        Ok(target) => target,
        Err(e) => return unhealthy(&e),
    };
    match probe(&target, TIMEOUT) {
        Ok((200, body)) => {
            println!("healthy: {url} answered 200 {body}");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => unhealthy(&format!("{url} answered {code} {body}")),
        Err(e) => unhealthy(&format!("{url}: {e}")),
    }
}

fn unhealthy(why: &str) -> ExitCode {
    eprintln!("unhealthy: {}", why.trim_end());
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, path: &str) -> Target {
        Target {
            host: host.into(),
            port,
            path: path.into(),
        }
    }

    #[test]
    fn parses_urls() {
        let cases = [
            (
                "http://127.0.0.1:8000/health",
                target("127.0.0.1", 8000, "/health"),
            ),
            (
                "http://127.0.0.1:8000",
                target("127.0.0.1", 8000, "/health"),
            ),
            ("http://127.0.0.1:8000/", target("127.0.0.1", 8000, "/")),
            (
                "HTTP://localhost/status",
                target("localhost", 80, "/status"),
            ),
            ("http://[::1]:9000/health", target("::1", 9000, "/health")),
            ("http://[::1]", target("::1", 80, "/health")),
            (
                "http://h.example:1/a/b?x=1#frag",
                target("h.example", 1, "/a/b?x=1"),
            ),
            (
                "http://h:8000?verbose",
                target("h", 8000, "/health?verbose"),
            ),
            (
                "http://wsnotify-1:65535/health",
                target("wsnotify-1", 65535, "/health"),
            ),
        ];
        for (url, want) in cases {
            assert_eq!(parse_url(url), Ok(want), "{url}");
        }
    }

    #[test]
    fn rejects_bad_urls() {
        for url in [
            "",
            "127.0.0.1:8000/health",
            "https://127.0.0.1/health",
            "ws://127.0.0.1/ws",
            "http://",
            "http://:8000/health",
            "http://host:0/health",
            "http://host:65536/",
            "http://host:80a/",
            "http://host:/",
            "http://[::1/health",
            "http://[nope]:80/",
            "http://[::1]8000/",
            "http://user@host/",
            "http://ho st/",
            "http://host/a b",
        ] {
            assert!(parse_url(url).is_err(), "{url:?} should be rejected");
        }
    }

    #[test]
    fn host_header_brackets_ipv6() {
        assert_eq!(target("::1", 80, "/").authority(), "[::1]:80");
        assert_eq!(target("a.b", 8000, "/").authority(), "a.b:8000");
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn default_url_follows_the_server_variables() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "http://127.0.0.1:8000/health"),
            (&[("WSNOTIFY_PORT", "9001")], "http://127.0.0.1:9001/health"),
            (&[("WSNOTIFY_PORT", "")], "http://127.0.0.1:8000/health"),
            (
                &[("WSNOTIFY_HOST", "0.0.0.0")],
                "http://127.0.0.1:8000/health",
            ),
            (&[("WSNOTIFY_HOST", "::")], "http://[::1]:8000/health"),
            (
                &[("WSNOTIFY_HOST", "[::]"), ("WSNOTIFY_PORT", "80")],
                "http://[::1]:80/health",
            ),
            (
                &[("WSNOTIFY_HOST", "10.1.2.3")],
                "http://10.1.2.3:8000/health",
            ),
            (
                &[("WSNOTIFY_HOST", "fd00::5")],
                "http://[fd00::5]:8000/health",
            ),
        ];
        for (vars, want) in cases {
            assert_eq!(default_url(env(vars)).as_deref(), Ok(*want), "{vars:?}");
            assert!(parse_url(want).is_ok(), "{want}");
        }
        for vars in [
            &[("WSNOTIFY_PORT", "0")][..],
            &[("WSNOTIFY_PORT", "http")],
            &[("WSNOTIFY_PORT", "70000")],
            &[("WSNOTIFY_HOST", "localhost")],
        ] {
            assert!(default_url(env(vars)).is_err(), "{vars:?}");
        }
    }

    #[test]
    fn reads_status_and_body() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(complete(ok), Some(ok.len()));
        assert_eq!(complete(&ok[..ok.len() - 1]), None);
        assert_eq!(parse_response(ok), Some((200, r#"{"status":"ok"}"#.into())));
        let draining = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\r\n{\"status\":\"draining\"}\n";
        assert_eq!(parse_response(draining).map(|r| r.0), Some(503));
        assert_eq!(complete(draining), None, "no Content-Length: read to EOF");
        assert_eq!(parse_response(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_response(b"HTTP/1.1 20 OK\r\n\r\n"), None);
        assert_eq!(parse_response(b""), None);
    }
}
