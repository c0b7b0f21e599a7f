//! Binding the listening sockets: one per worker, all on the same port, and
//! only on a port no other process listens on.
//!
//! Several workers each bind their own socket with SO_REUSEPORT, so the
//! kernel spreads new connections across them without a shared accept
//! lock. But SO_REUSEPORT would also let a second server of the same user,
//! started by mistake on the same port, join the group and take half the
//! connections. So before its workers bind, a server probes the port with a
//! socket without SO_REUSEPORT, which any listener on it refuses. Two
//! servers starting in the same instant could both pass the probe before
//! either listens: a short claim on the port, held from the probe until the
//! workers listen, makes wsnotify servers take their turns.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{self as unix, UnixDatagram};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// How long a server waits for another one to finish binding the same
/// port (which takes microseconds) before it goes ahead anyway.
const CLAIM_WAIT: Duration = Duration::from_secs(1);
const CLAIM_RETRY: Duration = Duration::from_millis(1);

/// Binds `workers` non-blocking listeners on `addr`, with SO_REUSEPORT if
/// there are several. With port 0 the first one picks a free port (never
/// one with a listener) and the others join it.
pub fn bind_all(addr: SocketAddr, workers: usize) -> Result<Vec<TcpListener>, String> {
    let reuse_port = workers > 1;
    let _claim = (reuse_port && addr.port() != 0).then(|| claim(addr.port()));
    if reuse_port && addr.port() != 0 {
        probe(addr).map_err(|e| cannot_listen(addr, &e))?;
    }
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listener = bind(addr, reuse_port).map_err(|e| cannot_listen(addr, &e))?;
        addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        sockets.push(listener);
    }
    Ok(sockets)
}

fn cannot_listen(addr: SocketAddr, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::AddrInUse {
        format!(
            "cannot listen on {addr}: port {} is taken: another process listens on it ({e}); one server per port",
            addr.port()
        )
    } else {
        format!("cannot listen on {addr}: {e}")
    }
}

fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // An IPv6 literal means that address family only; `::` should not
        // silently take the IPv4 port as well.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    Ok(socket)
}

fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = socket(addr)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Binds and lets go of a socket without SO_REUSEPORT: refused
/// (`AddrInUse`) if anyone listens on the port, SO_REUSEPORT or not.
fn probe(addr: SocketAddr) -> io::Result<()> {
    socket(addr)?.bind(&addr.into())
}

/// Takes the claim on `port` for the wsnotify servers of this network
/// namespace (an abstract unix socket name, which one socket at a time may
/// hold and which the kernel frees with its process), waiting while
/// another server holds it. `None` if it cannot be had: the probe alone
/// still turns away a port already listened on.
fn claim(port: u16) -> Option<UnixDatagram> {
    claim_named(&format!("wsnotify-port-{port}"))
}

fn claim_named(name: &str) -> Option<UnixDatagram> {
    let addr = unix::SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    let give_up = Instant::now() + CLAIM_WAIT;
    loop {
        match UnixDatagram::bind_addr(&addr) {
            Ok(claim) => return Some(claim),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                std::thread::sleep(CLAIM_RETRY);
            }
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn workers_share_the_port_the_first_one_picked() {
        let sockets = bind_all(loopback(0), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|p| *p == ports[0]), "{ports:?}");
    }

    #[test]
    fn a_port_listened_on_is_taken_with_or_without_several_workers() {
        for first in [1, 2] {
            let running = bind_all(loopback(0), first).unwrap();
            let addr = running[0].local_addr().unwrap();
            for workers in [1, 2] {
                let refused = bind_all(addr, workers).unwrap_err();
                assert!(
                    refused.contains(&format!("port {} is taken", addr.port())),
                    "{first} then {workers}: {refused}"
                );
            }
        }
    }

    #[test]
    fn the_claim_is_held_by_one_at_a_time_and_freed_with_it() {
        // A name of this test's own: the names are the host's.
        let name = format!("wsnotify-claim-test-{}", std::process::id());
        let first = claim_named(&name).expect("the claim");
        let started = Instant::now();
        assert!(claim_named(&name).is_none(), "held by the first");
        assert!(started.elapsed() >= CLAIM_WAIT, "it waited for it");
        drop(first);
        assert!(claim_named(&name).is_some(), "free again");
    }
}
