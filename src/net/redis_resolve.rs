//! Resolving the Redis host name without blocking the event loop: a name
//! lookup (`getaddrinfo`) can take seconds when DNS is slow, and every
//! client of the worker would wait that long. Each lookup runs on a thread
//! of its own, which stores the addresses and wakes the worker; an address
//! literal needs no thread.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};

/// Wakes the worker that owns the link (its `mio::Waker`).
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// How a host name becomes addresses; the system resolver outside tests.
pub type Resolve = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

pub fn system_resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// One lookup in flight or done. Dropping it before it is done leaves the
/// thread to finish and its answer unread (a lookup cannot be cancelled).
#[derive(Debug)]
pub struct Lookup {
    answer: Arc<OnceLock<io::Result<Vec<SocketAddr>>>>,
}

impl Lookup {
    pub fn start(host: &str, port: u16, resolve: Resolve, wake: &Wake) -> io::Result<Lookup> {
        let answer = Arc::new(OnceLock::new());
        if let Ok(ip) = host.parse::<IpAddr>() {
            let _ = answer.set(Ok(vec![SocketAddr::new(ip, port)]));
            return Ok(Lookup { answer });
        }
        let slot = Arc::clone(&answer);
        let wake = Arc::clone(wake);
        let host = host.to_owned();
        std::thread::Builder::new()
            .name("redis-resolve".into())
            .spawn(move || {
                let _ = slot.set(resolve(&host, port));
                wake();
            })?;
        Ok(Lookup { answer })
    }

    pub fn is_done(&self) -> bool {
        self.answer.get().is_some()
    }

    /// The addresses, once the lookup is done.
    pub fn addresses(&self) -> Option<io::Result<Vec<SocketAddr>>> {
        self.answer.get().map(|answer| match answer {
            Ok(addrs) if addrs.is_empty() => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no address for the Redis host",
            )),
            Ok(addrs) => Ok(addrs.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn slow(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_millis(300));
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    #[test]
    fn a_slow_lookup_returns_at_once_and_wakes_when_done() {
        let (tx, rx) = mpsc::sync_channel(1);
        let wake: Wake = Arc::new(move || {
            let _ = tx.try_send(());
        });
        let started = Instant::now();
        let lookup = Lookup::start("redis.example", 6379, slow, &wake).unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(!lookup.is_done());
        rx.recv_timeout(Duration::from_secs(5)).expect("woken");
        assert_eq!(
            lookup.addresses().unwrap().unwrap(),
            [SocketAddr::from(([127, 0, 0, 1], 6379))]
        );
    }

    #[test]
    fn an_address_literal_needs_no_lookup() {
        let wake: Wake = Arc::new(|| panic!("no thread for a literal"));
        let lookup = Lookup::start("::1", 7000, slow, &wake).unwrap();
        assert!(lookup.is_done());
        assert_eq!(
            lookup.addresses().unwrap().unwrap(),
            [SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 7000))]
        );
    }
}
