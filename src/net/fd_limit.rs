//! The open-file limit: every client is a descriptor, so the soft limit
//! (often 1024) and not `--max-connections` would otherwise decide how many
//! clients fit.

/// Descriptors the process needs besides its clients: stdio, the
/// supervisor's poll, waker and signal pipe, and a few HTTP API callers.
const BASE_RESERVE: u64 = 32;
/// Per worker: listener, poll, waker and two Redis sockets, rounded up.
const WORKER_RESERVE: u64 = 8;

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft
/// limit in force afterwards (the old one if raising failed, with the
/// error).
pub fn raise_to_hard() -> (u64, Option<std::io::Error>) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return (u64::MAX, Some(std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= limit.rlim_max {
        return (limit.rlim_cur, None);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return (limit.rlim_cur, Some(std::io::Error::last_os_error()));
    }
    (raised.rlim_cur, None)
}

/// Descriptors needed to hold `max_connections` clients on `workers`
/// workers.
pub fn needed(max_connections: usize, workers: usize) -> u64 {
    max_connections as u64 + BASE_RESERVE + WORKER_RESERVE * workers as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ten_thousand_clients_do_not_fit_in_1024() {
        assert!(needed(10_000, 1) > 1024);
        assert!(needed(10_000, 4) <= 65_536);
    }

    #[test]
    fn reserve_grows_with_workers() {
        assert_eq!(needed(100, 2) - needed(100, 1), WORKER_RESERVE);
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        let (soft, error) = raise_to_hard();
        assert!(error.is_none(), "{error:?}");
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        assert_eq!(soft, limit.rlim_cur);
        assert_eq!(limit.rlim_cur, limit.rlim_max);
    }
}
