//! The command line: `wsload MODE --flag value ...`.

use std::net::Ipv4Addr;

pub const USAGE: &str = "\
usage:
  wsload idle   --port P [--host 127.0.0.1] [--path /ws] --conns N [--server-pid PID] [--idle-secs S (5)]
  wsload fanout --port P [--host H] [--path /ws] --subs N [--size 100] [--publish ws|http (ws)]
                [--rate R msgs/s, 0 = closed loop (0)] [--messages M] [--duration S] [--server-pid PID]
  wsload echo   --port P [--host H] [--path /echo] --conns C [--depth D (8)] [--size 100] [--duration S]
  wsload drain  --port P [--host H] [--path /ws] --conns N --server-pid PID [--rate R broadcasts/s (100)]
                [--size 100] [--duration S, the longest the drain may take (10)]
                (sends SIGTERM to PID; run the server with a short --drain-timeout)
  wsload drain-resume --port A --port-b B --server-pid PID_OF_A --conns N [--rate R (100)] [--size 100]
                [--publish-port P (B)] [--before S (1)] [--after S (1)] [--duration S, drain limit (30)]
  wsload subscribe --port P [--host H] [--path /ws] --conns N --expect M [--ready-file PATH]
                [--duration S, the longest wait for every broadcast once connected (60)]
  wsload publish --port P [--host H] --messages M [--rate R msgs/s, 0 = as fast as answered (100)]
                [--size 100] [--duration S, the longest publishing may take (60)]
  wsload channels --port P [--host H] [--path /ws] [--conns N (10000)] [--channels C (1000)]
                [--per-conn J channels each (1)] [--size 100] [--rate R msgs/s, 0 = closed loop (0)]
                [--in-flight W, closed loop (1000)] [--publish ws|http (ws)] [--messages M]
                [--duration S (10)] [--server-pid PID]
  wsload upgrade --handover PATH (--server BIN | --port P --server-pid PID --new-server BIN)
                [--new-server BIN (--server)] [--conns N (50)] [--rate R (20)] [--reconnect hint|now (hint)]
                [--redis URL] [--drain-timeout DUR (20s)] [--server-args 'ARGS'] [--log-dir DIR]
                [--before S (2)] [--after S (1)] [--size 100] [--duration S, upgrade limit (60)]
common: --sources LIST (127.0.0.1,127.0.0.2; default automatic), --concurrency K (256),
        --duration S (10), --label TEXT
idle and fanout: --deflate on|off (off): offer permessage-deflate as a browser does, inflate
        what comes compressed; fanout: --text x|words (x): the message after its marker is
        x padding, or words and numbers as in a notification's fields (compresses like JSON)
One JSON line on stdout; exit 0 valid run, 1 invalid run, 2 bad arguments.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Idle,
    Fanout,
    Echo,
    Drain,
    DrainResume,
    Subscribe,
    Publish,
    Upgrade,
    Channels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    Ws,
    Http,
}

/// upgrade: when a client that got its `shutdown_notice` reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reconnect {
    /// After the notice's `reconnect_after_ms`, as /client.js does.
    #[default]
    Hint,
    /// At once.
    Now,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Sources {
    /// 127.0.0.1 for the first 25,000 connections, then 127.0.0.2, ...
    /// (no bind at all when the server is not on loopback).
    Auto,
    /// Round-robin over these.
    List(Vec<Ipv4Addr>),
}

#[derive(Debug, Clone)]
pub struct Args {
    pub mode: Mode,
    pub host: Ipv4Addr,
    pub port: u16,
    pub path: String,
    /// `--conns` (idle, echo) or `--subs` (fanout).
    pub conns: usize,
    /// channels: how many channels the clients are spread over.
    pub channels: u32,
    /// channels: how many channels each client joins.
    pub per_conn: usize,
    /// channels: messages not yet delivered everywhere, closed loop.
    pub in_flight: usize,
    pub server_pid: Option<u32>,
    pub idle_secs: f64,
    pub size: usize,
    pub publish: Publish,
    pub rate: f64,
    pub messages: Option<u32>,
    pub duration: f64,
    pub depth: usize,
    pub sources: Sources,
    pub concurrency: usize,
    pub label: Option<String>,
    /// drain-resume: the server the clients move to.
    pub port_b: u16,
    /// drain-resume: where the publisher posts (B's port without it).
    pub publish_port: Option<u16>,
    /// drain-resume: seconds of publishing before the SIGTERM.
    pub before: f64,
    /// drain-resume: seconds of publishing after the last resume.
    pub after: f64,
    /// subscribe: written once every client is ready.
    pub ready_file: Option<String>,
    /// upgrade: the settings of the servers it starts.
    pub upgrade: UpgradeArgs,
    pub deflate: bool,
    pub text: Text,
}

/// fanout: what fills a message after its marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Text {
    /// `x` repeated: compresses to almost nothing.
    #[default]
    Padding,
    /// Words and numbers, as a notification's fields.
    Words,
}

/// What `upgrade` alone takes.
#[derive(Debug, Clone, Default)]
pub struct UpgradeArgs {
    /// `--handover PATH` of both servers.
    pub handover: String,
    /// The old server's binary, started by wsload (None: it runs already,
    /// `--port` and `--server-pid` name it).
    pub server: Option<String>,
    /// The new server's binary (`server` without it).
    pub new_server: Option<String>,
    pub redis: Option<String>,
    pub drain_timeout: String,
    /// More arguments for both servers, split at whitespace.
    pub server_args: Vec<String>,
    /// Where the servers' logs go (`old.log`, `new.log`); kept in memory
    /// without it.
    pub log_dir: Option<String>,
    pub reconnect: Reconnect,
}

/// Smallest `--size` for fanout: "wsl " + 10 digits + " ".
pub const MIN_FANOUT_SIZE: usize = 15;
/// Smallest `--size` for publish: "wsl " + 10 digits + " " + 20 digits + " ".
pub const MIN_STAMPED_SIZE: usize = 36;
/// Largest `--size`: the server's default message and body limit.
pub const MAX_SIZE: usize = 60 * 1024;

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("invalid value {v:?} for {flag}"))
}

fn secs(flag: &str, v: &str) -> Result<f64, String> {
    let s: f64 = num(flag, v)?;
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        return Err(format!("{flag} must be more than 0 seconds (got {v})"));
    }
    Ok(s)
}

const MODES: &str =
    "idle, fanout, echo, drain, drain-resume, subscribe, publish, upgrade, channels";
/// channels: at most this many channels per client (wsnotify's default
/// `--max-channels-per-client`).
pub const MAX_PER_CONN: usize = 100;

/// Parses everything after the program name. `Ok(None)` means `--help`.
pub fn parse(argv: &[String]) -> Result<Option<Args>, String> {
    let mut it = argv.iter();
    let mode = match it.next().map(String::as_str) {
        Some("idle") => Mode::Idle,
        Some("fanout") => Mode::Fanout,
        Some("echo") => Mode::Echo,
        Some("drain") => Mode::Drain,
        Some("drain-resume") => Mode::DrainResume,
        Some("subscribe") => Mode::Subscribe,
        Some("publish") => Mode::Publish,
        Some("upgrade") => Mode::Upgrade,
        Some("channels") => Mode::Channels,
        Some("-h" | "--help" | "help") => return Ok(None),
        Some(other) => return Err(format!("unknown mode {other:?} ({MODES})")),
        None => return Err(format!("missing mode ({MODES})")),
    };
    let mut a = Args {
        mode,
        host: Ipv4Addr::LOCALHOST,
        port: 0,
        path: if mode == Mode::Echo { "/echo" } else { "/ws" }.into(),
        conns: match mode {
            Mode::Upgrade => 50,
            Mode::Channels => 10_000,
            _ => 0,
        },
        channels: 1_000,
        per_conn: 1,
        in_flight: 1_000,
        server_pid: None,
        idle_secs: 5.0,
        size: 100,
        publish: if matches!(mode, Mode::DrainResume | Mode::Upgrade) {
            Publish::Http
        } else {
            Publish::Ws
        },
        rate: match mode {
            Mode::Drain | Mode::DrainResume | Mode::Publish => 100.0,
            Mode::Upgrade => 20.0,
            _ => 0.0,
        },
        messages: None,
        duration: match mode {
            Mode::DrainResume => 30.0,
            Mode::Subscribe | Mode::Publish | Mode::Upgrade => 60.0,
            _ => 10.0,
        },
        depth: 8,
        sources: Sources::Auto,
        concurrency: 256,
        label: None,
        port_b: 0,
        publish_port: None,
        before: if mode == Mode::Upgrade { 2.0 } else { 1.0 },
        after: 1.0,
        ready_file: None,
        upgrade: UpgradeArgs {
            drain_timeout: "20s".into(),
            ..UpgradeArgs::default()
        },
        deflate: false,
        text: Text::Padding,
    };
    let mut seen = std::collections::HashSet::new();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if !flag.starts_with("--") {
            return Err(format!("unexpected argument {arg:?}"));
        }
        let allowed: &[&str] = match mode {
            Mode::Idle => &["--conns", "--server-pid", "--idle-secs", "--deflate"],
            Mode::Fanout => &[
                "--deflate",
                "--text",
                "--subs",
                "--size",
                "--publish",
                "--rate",
                "--messages",
                "--server-pid",
            ],
            Mode::Echo => &["--conns", "--depth", "--size"],
            Mode::Drain => &["--conns", "--server-pid", "--rate", "--size"],
            Mode::DrainResume => &[
                "--conns",
                "--server-pid",
                "--rate",
                "--size",
                "--port-b",
                "--publish-port",
                "--before",
                "--after",
            ],
            Mode::Subscribe => &["--conns", "--expect", "--ready-file"],
            Mode::Publish => &["--messages", "--rate", "--size"],
            Mode::Channels => &[
                "--conns",
                "--channels",
                "--per-conn",
                "--size",
                "--rate",
                "--in-flight",
                "--messages",
                "--server-pid",
                "--publish",
            ],
            Mode::Upgrade => &[
                "--conns",
                "--rate",
                "--size",
                "--server",
                "--new-server",
                "--server-pid",
                "--handover",
                "--redis",
                "--drain-timeout",
                "--server-args",
                "--log-dir",
                "--reconnect",
                "--before",
                "--after",
            ],
        };
        let common = [
            "--port",
            "--host",
            "--path",
            "--sources",
            "--concurrency",
            "--duration",
            "--label",
        ];
        if !allowed.contains(&flag.as_str()) && !common.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag} for this mode"));
        }
        if !seen.insert(flag.clone()) {
            return Err(format!("{flag} given twice"));
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        match flag.as_str() {
            "--port" => {
                a.port = num(&flag, &v)?;
                if a.port == 0 {
                    return Err("--port must be 1 to 65535".into());
                }
            }
            "--port-b" | "--publish-port" => {
                let port: u16 = num(&flag, &v)?;
                if port == 0 {
                    return Err(format!("{flag} must be 1 to 65535"));
                }
                if flag == "--port-b" {
                    a.port_b = port;
                } else {
                    a.publish_port = Some(port);
                }
            }
            "--before" => a.before = secs(&flag, &v)?,
            "--after" => a.after = secs(&flag, &v)?,
            "--host" => a.host = num(&flag, &v)?,
            "--path" => {
                if !v.starts_with('/') || v.bytes().any(|b| b <= b' ' || b == 0x7F) {
                    return Err(format!("invalid value {v:?} for --path"));
                }
                a.path = v;
            }
            "--conns" | "--subs" => {
                a.conns = num(&flag, &v)?;
                if a.conns == 0 || a.conns > 1_000_000 {
                    return Err(format!("{flag} must be 1 to 1000000"));
                }
            }
            "--server-pid" => a.server_pid = Some(num(&flag, &v)?),
            "--idle-secs" => a.idle_secs = secs(&flag, &v)?,
            "--duration" => a.duration = secs(&flag, &v)?,
            "--size" => {
                a.size = num(&flag, &v)?;
                if a.size == 0 || a.size > MAX_SIZE {
                    return Err(format!("--size must be 1 to {MAX_SIZE}"));
                }
            }
            "--deflate" => {
                a.deflate = match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("invalid value {v:?} for --deflate (on, off)")),
                }
            }
            "--text" => {
                a.text = match v.as_str() {
                    "x" => Text::Padding,
                    "words" => Text::Words,
                    _ => return Err(format!("invalid value {v:?} for --text (x, words)")),
                }
            }
            "--publish" => {
                a.publish = match v.as_str() {
                    "ws" => Publish::Ws,
                    "http" => Publish::Http,
                    _ => return Err(format!("invalid value {v:?} for --publish (ws, http)")),
                }
            }
            "--rate" => {
                a.rate = num(&flag, &v)?;
                if !(a.rate.is_finite() && a.rate >= 0.0 && a.rate <= 10_000_000.0) {
                    return Err(format!("invalid value {v:?} for --rate"));
                }
            }
            "--messages" | "--expect" => {
                let m: u32 = num(&flag, &v)?;
                if m == 0 || m > 100_000_000 {
                    return Err(format!("{flag} must be 1 to 100000000"));
                }
                a.messages = Some(m);
            }
            "--ready-file" => {
                if v.is_empty() {
                    return Err("--ready-file needs a path".into());
                }
                a.ready_file = Some(v);
            }
            "--channels" => {
                a.channels = num(&flag, &v)?;
                if a.channels == 0 || a.channels > 1_000_000 {
                    return Err("--channels must be 1 to 1000000".into());
                }
            }
            "--per-conn" => {
                a.per_conn = num(&flag, &v)?;
                if a.per_conn == 0 || a.per_conn > MAX_PER_CONN {
                    return Err(format!("--per-conn must be 1 to {MAX_PER_CONN}"));
                }
            }
            "--in-flight" => {
                a.in_flight = num(&flag, &v)?;
                if a.in_flight == 0 || a.in_flight > 1_000_000 {
                    return Err("--in-flight must be 1 to 1000000".into());
                }
            }
            "--depth" => {
                a.depth = num(&flag, &v)?;
                if a.depth == 0 || a.depth > 4096 {
                    return Err("--depth must be 1 to 4096".into());
                }
            }
            "--sources" => {
                let list: Result<Vec<Ipv4Addr>, _> =
                    v.split(',').map(|s| s.trim().parse()).collect();
                match list {
                    Ok(l) if !l.is_empty() => a.sources = Sources::List(l),
                    _ => return Err(format!("invalid value {v:?} for --sources")),
                }
            }
            "--concurrency" => {
                a.concurrency = num(&flag, &v)?;
                if a.concurrency == 0 {
                    return Err("--concurrency must be at least 1".into());
                }
            }
            "--label" => a.label = Some(v),
            "--handover" | "--server" | "--new-server" | "--redis" | "--drain-timeout"
            | "--log-dir" => {
                if v.is_empty() {
                    return Err(format!("{flag} needs a value"));
                }
                let u = &mut a.upgrade;
                match flag.as_str() {
                    "--handover" => u.handover = v,
                    "--server" => u.server = Some(v),
                    "--new-server" => u.new_server = Some(v),
                    "--redis" => u.redis = Some(v),
                    "--drain-timeout" => u.drain_timeout = v,
                    _ => u.log_dir = Some(v),
                }
            }
            "--server-args" => {
                a.upgrade.server_args = v.split_whitespace().map(String::from).collect()
            }
            "--reconnect" => {
                a.upgrade.reconnect = match v.as_str() {
                    "hint" => Reconnect::Hint,
                    "now" => Reconnect::Now,
                    _ => return Err(format!("invalid value {v:?} for --reconnect (hint, now)")),
                }
            }
            _ => unreachable!("flag list checked above"),
        }
    }
    if mode == Mode::Upgrade {
        check_upgrade(&a)?;
    } else if a.port == 0 {
        return Err("--port is required".into());
    }
    match mode {
        Mode::Subscribe if a.messages.is_none() => {
            return Err("--expect is required (the broadcasts to wait for)".into())
        }
        Mode::Publish if a.messages.is_none() => return Err("--messages is required".into()),
        Mode::Publish if a.size < MIN_STAMPED_SIZE => {
            return Err(format!(
                "--size must be at least {MIN_STAMPED_SIZE} for publish (the marker \"wsl <seq> <time> \")"
            ))
        }
        _ => {}
    }
    if a.conns == 0 && mode != Mode::Publish {
        let name = if mode == Mode::Fanout {
            "--subs"
        } else {
            "--conns"
        };
        return Err(format!("{name} is required"));
    }
    if mode == Mode::DrainResume {
        if a.port_b == 0 {
            return Err("--port-b is required (the server the clients move to)".into());
        }
        if a.server_pid.is_none() {
            return Err("--server-pid is required (the server that is sent SIGTERM)".into());
        }
        if a.rate <= 0.0 {
            return Err("--rate must be above 0 for drain-resume".into());
        }
    }
    if mode == Mode::Channels {
        if a.channels as usize > a.conns * a.per_conn {
            return Err(format!(
                "--conns {} × --per-conn {} leave some of the {} channels without a member",
                a.conns, a.per_conn, a.channels
            ));
        }
        if (a.channels as usize) < a.per_conn {
            return Err("--channels must be at least --per-conn".into());
        }
    }
    if matches!(
        mode,
        Mode::Fanout | Mode::Drain | Mode::DrainResume | Mode::Upgrade | Mode::Channels
    ) && a.size < MIN_FANOUT_SIZE
    {
        return Err(format!(
            "--size must be at least {MIN_FANOUT_SIZE} for fanout and drain (the marker \"wsl <seq> \")"
        ));
    }
    if mode == Mode::Drain && a.server_pid.is_none() {
        return Err("--server-pid is required for drain (it gets the SIGTERM)".into());
    }
    Ok(Some(a))
}

/// `upgrade` starts the old server itself, or takes a running one.
fn check_upgrade(a: &Args) -> Result<(), String> {
    let u = &a.upgrade;
    if u.handover.is_empty() {
        return Err("--handover is required (the PATH both servers are given)".into());
    }
    match (&u.server, a.port, a.server_pid) {
        (Some(_), 0, None) => {}
        (Some(_), _, _) => {
            return Err("--server starts the old server: give no --port or --server-pid".into())
        }
        (None, p, Some(_)) if p != 0 && u.new_server.is_some() => {}
        (None, _, _) => {
            return Err(
                "give --server BIN, or --port, --server-pid and --new-server for a running server"
                    .into(),
            )
        }
    }
    if a.rate <= 0.0 {
        return Err("--rate must be above 0 for upgrade".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Args>, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn parses_each_mode_with_defaults() {
        let a = p("idle --port 80 --conns 10").unwrap().unwrap();
        assert_eq!(a.mode, Mode::Idle);
        assert_eq!(a.path, "/ws");
        assert_eq!(a.idle_secs, 5.0);
        assert_eq!(a.concurrency, 256);
        let a = p("fanout --port 80 --subs 5 --publish=http --rate 1000 --messages 7")
            .unwrap()
            .unwrap();
        assert_eq!(a.publish, Publish::Http);
        assert_eq!(a.rate, 1000.0);
        assert_eq!(a.messages, Some(7));
        assert_eq!(a.size, 100);
        let a = p("echo --port 80 --conns 2 --depth 1 --sources 127.0.0.1,127.0.0.3 --label x")
            .unwrap()
            .unwrap();
        assert_eq!(a.path, "/echo");
        assert_eq!(a.depth, 1);
        assert_eq!(
            a.sources,
            Sources::List(vec![
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(127, 0, 0, 3)
            ])
        );
        assert_eq!(a.label.as_deref(), Some("x"));
        let a = p("drain-resume --port 80 --port-b 81 --server-pid 9 --conns 3 --after 2.5")
            .unwrap()
            .unwrap();
        assert_eq!(a.mode, Mode::DrainResume);
        assert_eq!((a.port, a.port_b, a.publish_port), (80, 81, None));
        assert_eq!(
            (a.rate, a.before, a.after, a.duration),
            (100.0, 1.0, 2.5, 30.0)
        );
        assert_eq!(a.publish, Publish::Http);
        let a = p("drain --port 80 --conns 3 --server-pid 9")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.mode, a.rate, a.server_pid),
            (Mode::Drain, 100.0, Some(9))
        );
        let a = p("subscribe --port 80 --conns 4 --expect 20 --ready-file /tmp/r")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.mode, a.conns, a.messages, a.duration),
            (Mode::Subscribe, 4, Some(20), 60.0)
        );
        assert_eq!(a.ready_file.as_deref(), Some("/tmp/r"));
        let a = p("publish --port 80 --messages 5").unwrap().unwrap();
        assert_eq!(
            (a.mode, a.conns, a.messages, a.rate, a.size),
            (Mode::Publish, 0, Some(5), 100.0, 100)
        );
        let a = p("publish --port 80 --messages 5 --rate 0 --size 36")
            .unwrap()
            .unwrap();
        assert_eq!((a.rate, a.size), (0.0, 36));
    }

    #[test]
    fn parses_channels() {
        let a = p("channels --port 80").unwrap().unwrap();
        assert_eq!(a.mode, Mode::Channels);
        assert_eq!(
            (
                a.conns,
                a.channels,
                a.per_conn,
                a.in_flight,
                a.rate,
                a.duration
            ),
            (10_000, 1_000, 1, 1_000, 0.0, 10.0)
        );
        let a = p("channels --port 80 --conns 300 --channels 100 --per-conn 3 --in-flight 5 --server-pid 9")
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.conns, a.channels, a.per_conn, a.in_flight, a.server_pid),
            (300, 100, 3, 5, Some(9))
        );
        for bad in [
            "channels --port 80 --conns 10 --channels 100",
            "channels --port 80 --conns 10 --channels 2 --per-conn 3",
            "channels --port 80 --per-conn 0",
            "channels --port 80 --per-conn 101",
            "channels --port 80 --in-flight 0",
            "channels --port 80 --size 14",
            "channels --port 80 --publish smtp",
            "fanout --port 80 --subs 1 --channels 3",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_upgrade() {
        let a = p("upgrade --handover /tmp/h.sock --server /bin/wsnotify")
            .unwrap()
            .unwrap();
        assert_eq!(a.mode, Mode::Upgrade);
        assert_eq!((a.conns, a.rate, a.before, a.after), (50, 20.0, 2.0, 1.0));
        assert_eq!(a.publish, Publish::Http);
        let u = &a.upgrade;
        assert_eq!(u.handover, "/tmp/h.sock");
        assert_eq!(u.server.as_deref(), Some("/bin/wsnotify"));
        assert_eq!((u.new_server.as_deref(), u.redis.as_deref()), (None, None));
        assert_eq!(
            (u.reconnect, u.drain_timeout.as_str()),
            (Reconnect::Hint, "20s")
        );
        let mut argv: Vec<String> =
            "upgrade --handover h --port 80 --server-pid 9 --new-server /b \
                                     --conns 2000 --reconnect now --redis redis://127.0.0.1:6400"
                .split_whitespace()
                .map(String::from)
                .collect();
        argv.extend([
            "--server-args".into(),
            "--workers 2  --log-level warn".into(),
        ]);
        let a = parse(&argv).unwrap().unwrap();
        let u = &a.upgrade;
        assert_eq!((a.port, a.server_pid, a.conns), (80, Some(9), 2000));
        assert_eq!(u.reconnect, Reconnect::Now);
        assert_eq!(u.redis.as_deref(), Some("redis://127.0.0.1:6400"));
        assert_eq!(u.server_args, ["--workers", "2", "--log-level", "warn"]);
        for bad in [
            "upgrade --server /b",
            "upgrade --handover h",
            "upgrade --handover h --server /b --port 80",
            "upgrade --handover h --port 80 --server-pid 9",
            "upgrade --handover h --server /b --reconnect later",
            "upgrade --handover h --server /b --rate 0",
            "upgrade --handover h --server /b --ready-file x",
            "fanout --port 1 --subs 1 --handover h",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [
            "",
            "flood --port 1 --conns 1",
            "idle --conns 1",
            "idle --port 1",
            "idle --port 0 --conns 1",
            "idle --port 1 --conns 1 --subs 3",
            "idle --port 1 --conns 1 --conns 2",
            "fanout --port 1 --subs 1 --publish smtp",
            "fanout --port 1 --subs 1 --size 10",
            "echo --port 1 --conns 1 --depth 0",
            "echo --port 1 --conns 1 --duration 0",
            "echo --port 1 --conns 1 --sources 1.2.3",
            "echo --port 1 --conns 1 --label",
            "echo --port 1 --conns 1 stray",
            "drain-resume --port 1 --server-pid 2 --conns 1",
            "drain-resume --port 1 --port-b 2 --conns 1",
            "drain-resume --port 1 --port-b 2 --server-pid 3 --conns 1 --rate 0",
            "drain-resume --port 1 --port-b 2 --server-pid 3 --conns 1 --publish ws",
            "fanout --port 1 --subs 1 --port-b 2",
            "subscribe --port 1 --conns 1",
            "subscribe --port 1 --expect 1",
            "subscribe --port 1 --conns 1 --expect 0",
            "subscribe --port 1 --conns 1 --expect 1 --ready-file=",
            "subscribe --port 1 --conns 1 --expect 1 --messages 1",
            "publish --port 1",
            "publish --port 1 --messages 1 --size 35",
            "publish --port 1 --messages 1 --conns 3",
            "publish --port 1 --messages 1 --expect 1",
            "fanout --port 1 --subs 1 --ready-file /tmp/r",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert!(
            p("drain --port 1 --conns 1").is_err(),
            "drain needs the pid"
        );
        assert!(p("--help").unwrap().is_none());
    }
}
