//! The names things travel under: a connection's key within its worker, and
//! a client's id across workers and instances. Typed, so that a slot index,
//! a sequence number and a worker index cannot be passed for one another,
//! and an id is parsed once, where it enters, not wherever it is used.

use std::fmt;
use std::str::FromStr;

/// A connection of one worker: its place in the worker's table, and the
/// token its socket is registered under in the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKey(pub usize);

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `INSTANCE-WORKER-SEQ`: the instance and the worker that issued it, so a
/// message for a client can be routed without a shared table, and the
/// client's number within that worker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId {
    pub instance: String,
    pub worker: usize,
    pub seq: u64,
}

impl ClientId {
    pub fn new(instance: &str, worker: usize, seq: u64) -> ClientId {
        ClientId {
            instance: instance.to_owned(),
            worker,
            seq,
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.instance, self.worker, self.seq)
    }
}

/// A string that is not `INSTANCE-WORKER-SEQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAClientId;

impl FromStr for ClientId {
    type Err = NotAClientId;

    fn from_str(id: &str) -> Result<ClientId, NotAClientId> {
        let mut parts = id.rsplitn(3, '-');
        let seq = parts.next().and_then(|s| s.parse().ok());
        let worker = parts.next().and_then(|w| w.parse().ok());
        match (seq, worker, parts.next()) {
            (Some(seq), Some(worker), Some(instance)) if !instance.is_empty() => Ok(ClientId {
                instance: instance.to_owned(),
                worker,
                seq,
            }),
            _ => Err(NotAClientId),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = ClientId::new("1a2b3c4d", 3, 42);
        assert_eq!(id.to_string(), "1a2b3c4d-3-42");
        assert_eq!("1a2b3c4d-3-42".parse(), Ok(id));
        // An instance name may hold dashes: the last two parts are numbers.
        assert_eq!(
            "a-b-1-2".parse(),
            Ok(ClientId::new("a-b", 1, 2)),
            "dashes in the instance"
        );
        for bad in ["", "x", "a-b-c", "-1-2", "a-1-", "a--2", "a-1-2x", "a-x-2"] {
            assert_eq!(bad.parse::<ClientId>(), Err(NotAClientId), "{bad}");
        }
    }
}
