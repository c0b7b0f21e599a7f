//! Where the listening sockets come from: bound here, inherited through
//! socket activation, or handed over by the server that ran before. The
//! origin decides how the drain ends accepting (see `listener_state.rs`).

use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;

use super::handover::{self, Taken};
use crate::config::Config;
use crate::node::listener_state::Origin;

/// The sockets this process serves.
pub struct Listeners {
    pub sockets: Vec<TcpListener>,
    pub origin: Origin,
    /// The previous server, waiting for word that this one serves.
    pub previous: Option<Taken>,
}

impl Listeners {
    /// Inherited sockets first (with the running server's stream if
    /// `--handover` names one); else, with `--handover`, the running
    /// server's sockets and stream; else binds `--host`/`--port`, one socket per worker.
    pub fn acquire(config: &Config, inherited: Option<Vec<OwnedFd>>) -> Result<Listeners, String> {
        if let Some(fds) = inherited {
            // The sockets are shared already; a running server at
            // `--handover` still passes its stream (its copies of the
            // sockets are dropped).
            let previous = match &config.handover {
                Some(path) => handover::take_over(path)?.map(|mut taken| {
                    taken.fds.clear();
                    taken
                }),
                None => None,
            };
            return Ok(Listeners::shared(fds, Origin::Inherited, previous));
        }
        if let Some(path) = &config.handover {
            if let Some(mut taken) = handover::take_over(path)? {
                let fds = std::mem::take(&mut taken.fds);
                return Ok(Listeners::shared(fds, Origin::HandedOver, Some(taken)));
            }
        }
        let addr = SocketAddr::new(config.host, config.port);
        let sockets = super::listen::bind_all(addr, config.workers)?;
        Ok(Listeners {
            sockets,
            origin: Origin::Bound,
            previous: None,
        })
    }

    fn shared(fds: Vec<OwnedFd>, origin: Origin, previous: Option<Taken>) -> Listeners {
        Listeners {
            sockets: fds.into_iter().map(TcpListener::from).collect(),
            origin,
            previous,
        }
    }

    /// The sockets worker `id` accepts on. Bound sockets are one per worker
    /// (SO_REUSEPORT spreads connections over them); shared ones are served
    /// by every worker, since their number was chosen by someone else and
    /// each must be emptied by somebody.
    pub fn for_worker(&self, id: usize) -> std::io::Result<Vec<mio::net::TcpListener>> {
        let mine: Vec<&TcpListener> = match self.origin {
            Origin::Bound => self.sockets.get(id).into_iter().collect(),
            Origin::Inherited | Origin::HandedOver => self.sockets.iter().collect(),
        };
        mine.into_iter()
            .map(|socket| {
                let copy = socket.try_clone()?;
                copy.set_nonblocking(true)?;
                Ok(mio::net::TcpListener::from_std(copy))
            })
            .collect()
    }

    /// Every distinct address served, the first as the `listening on` line
    /// names it.
    pub fn addresses(&self) -> Result<Vec<SocketAddr>, String> {
        let mut addrs = Vec::new();
        for socket in &self.sockets {
            let addr = socket
                .local_addr()
                .map_err(|e| format!("cannot read a listening address: {e}"))?;
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        Ok(addrs)
    }
}
