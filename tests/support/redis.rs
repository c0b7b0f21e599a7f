//! A real redis-server for the tests that need one: started on a free
//! loopback port without persistence, stopped when the handle drops.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{eventually, http, wait_until, Server};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    /// Extra redis-server arguments (`--requirepass`, `--user`, ...).
    args: Vec<String>,
    /// How this helper itself logs in: (user, password).
    admin: Option<(String, String)>,
}

impl Redis {
    /// Without access control, or with `--requirepass PASSWORD`.
    pub fn start(password: Option<&str>) -> Redis {
        match password {
            None => Redis::start_with(&[], None),
            Some(p) => Redis::start_with(&["--requirepass", p], Some(("default", p))),
        }
    }

    /// With these redis-server arguments; `admin` is how the helper logs in.
    pub fn start_with(args: &[&str], admin: Option<(&str, &str)>) -> Redis {
        let mut redis = Redis {
            child: None,
            port: 0,
            args: args.iter().map(|a| a.to_string()).collect(),
            admin: admin.map(|(u, p)| (u.to_owned(), p.to_owned())),
        };
        // A port found free may be taken by another process before
        // redis-server binds it: then another one.
        for _ in 0..5 {
            redis.port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if redis.try_spawn() {
                return redis;
            }
            eprintln!(
                "port {} was taken by another process; trying another",
                redis.port
            );
            redis.stop();
        }
        panic!("no free port for redis-server");
    }

    /// Starts redis-server again on its port.
    pub fn spawn(&mut self) {
        assert!(
            self.try_spawn(),
            "port {} was taken by another process",
            self.port
        );
    }

    /// Starts redis-server on `self.port` and waits until it answers; false
    /// when what answers there is another process.
    fn try_spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let pid = child.id();
        self.child = Some(child);
        eventually("redis-server answering", Duration::from_secs(10), || {
            let child = self.child.as_mut().expect("spawned");
            if child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            self.answering_pid().map(|answering| answering == pid)
        })
    }

    /// The `process_id` of the Redis that answers on the port, if one does.
    fn answering_pid(&self) -> Option<u32> {
        let reply = self.try_command(&[b"INFO", b"server"])?;
        String::from_utf8_lossy(&reply)
            .lines()
            .find_map(|l| l.strip_prefix("process_id:")?.trim().parse().ok())
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("redis-server running").id() as i32
    }

    /// SIGSTOP or SIGCONT: Redis stalls (its sockets stay open) or resumes.
    pub fn signal(&self, signal: i32) {
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// The URL for the default user: with `--requirepass`, its password.
    pub fn url(&self) -> String {
        match &self.admin {
            Some((user, p)) if user == "default" => {
                format!("redis://:{p}@127.0.0.1:{}/0", self.port)
            }
            _ => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Runs one command as the helper's user; returns the raw reply.
    pub fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        self.try_command(args).expect("connect to redis-server")
    }

    /// `command`, or None when nothing accepts on the port.
    fn try_command(&self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut out = Vec::new();
        let mut expect = 1;
        if let Some((user, password)) = &self.admin {
            out.extend(encode(&[b"AUTH", user.as_bytes(), password.as_bytes()]));
            expect += 1;
        }
        out.extend(encode(args));
        stream.write_all(&out).unwrap();
        // Enough for the small replies asked for here: read until every
        // reply has its line (or bulk) complete.
        let mut reply = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(5);
        while complete_replies(&reply) < expect && Instant::now() < end {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
            }
        }
        Some(reply)
    }

    /// Publishes raw bytes on a channel, as another program would.
    pub fn publish(&self, channel: &str, payload: &[u8]) {
        self.command(&[b"PUBLISH", channel.as_bytes(), payload]);
    }

    /// One numeric field of `INFO stats`.
    pub fn info_stat(&self, field: &str) -> u64 {
        let reply = String::from_utf8_lossy(&self.command(&[b"INFO", b"stats"])).into_owned();
        reply
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in INFO stats: {reply}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// How many replies the buffer holds in full (simple, error, integer and
/// bulk replies only).
fn complete_replies(buf: &[u8]) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(end) = buf[at..].windows(2).position(|w| w == b"\r\n") {
        let line = &buf[at..at + end];
        at += end + 2;
        if line.first() == Some(&b'$') {
            let len: i64 = String::from_utf8_lossy(&line[1..]).parse().unwrap_or(-1);
            if len >= 0 {
                if buf.len() < at + len as usize + 2 {
                    return count;
                }
                at += len as usize + 2;
            }
        }
        count += 1;
    }
    count
}

/// `GET /status`'s `redis` field: disabled, connected or reconnecting.
pub fn redis_state(server: &Server) -> String {
    let (_, _, body) = http(server.addr, "GET", "/status", &[], b"");
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    status["redis"].as_str().unwrap().to_owned()
}

pub fn wait_redis(server: &Server, state: &str) {
    wait_until(&format!("redis {state}"), Duration::from_secs(10), || {
        redis_state(server) == state
    });
}
