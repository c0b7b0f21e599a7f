//! What the generator asks of the operating system besides sockets: its
//! descriptor limit, and the server's memory and CPU time from /proc.

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the new soft
/// limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// The wall clock (CLOCK_REALTIME) in µs since the Unix epoch: the one
/// clock two processes share, for latencies across them.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// RssAnon of a process in KiB: its heap and stacks, without the pages of
/// its program file, which a server touches as it runs code for the first
/// time and which no connection costs.
pub fn anon_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "RssAnon")
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Whether a process has exited: gone, or a zombie its parent has not
/// reaped yet.
pub fn has_exited(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

/// Sends SIGTERM to a process.
pub fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: kill has no memory effects; a wrong pid is an error return.
    if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its last ')'. The first field after it is field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Time a process's threads have spent on a CPU, in ns: the sum of the
/// first field of /proc/PID/task/*/schedstat. Unlike utime + stime, counted
/// in clock ticks (10 ms), it resolves a phase of a fraction of a second.
/// Threads that exited are no longer counted.
pub fn run_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = None;
    for task in tasks.flatten() {
        // A thread that exits between the listing and the read is skipped.
        let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = parse_schedstat_run_ns(&schedstat) {
            total = Some(total.unwrap_or(0) + ns);
        }
    }
    total
}

fn parse_schedstat_run_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second for /proc/PID/stat times.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU time (user + system) this process has used, in microseconds.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Samples a process's CPU time (or this process's, without a pid) so that
/// the share of one core used between two samples can be computed.
pub struct CpuSample {
    pid: Option<u32>,
    at: std::time::Instant,
    us: Option<u64>,
}

impl CpuSample {
    pub fn take(pid: Option<u32>) -> CpuSample {
        let us = match pid {
            Some(pid) => cpu_ticks(pid).map(|t| t * 1_000_000 / clock_ticks_per_sec()),
            None => Some(self_cpu_us()),
        };
        CpuSample {
            pid,
            at: std::time::Instant::now(),
            us,
        }
    }

    /// CPU seconds used since this sample (None if unreadable).
    pub fn secs_since(&self) -> Option<f64> {
        let now = CpuSample::take(self.pid);
        Some(now.us?.saturating_sub(self.us?) as f64 / 1e6)
    }

    /// Percent of one core used since this sample (None if unreadable).
    pub fn percent_since(&self) -> Option<f64> {
        let now = CpuSample::take(self.pid);
        let secs = now.at.duration_since(self.at).as_secs_f64();
        let (a, b) = (self.us?, now.us?);
        if secs <= 0.0 {
            return None;
        }
        Some(b.saturating_sub(a) as f64 / 1e6 / secs * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let s = "Name:\twsnotify\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nRssAnon:\t  800 kB\nRssAnonX:\t1 kB\n";
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(1234));
        assert_eq!(parse_status_kib(s, "RssAnon"), Some(800));
        assert_eq!(parse_status_kib(s, "Threads"), None);
    }

    #[test]
    fn parses_stat_times_after_an_awkward_name() {
        let s = "42 (a) b (c)) S 1 42 42 0 -1 4194304 100 0 0 0 17 5 0 0 20 0 1 0 100 1000 50";
        assert_eq!(parse_stat_ticks(s), Some(22));
    }

    #[test]
    fn parses_schedstat_run_time() {
        assert_eq!(
            parse_schedstat_run_ns("23225491 11046067 92\n"),
            Some(23225491)
        );
        assert_eq!(parse_schedstat_run_ns(""), None);
    }

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(cpu_ticks(pid).is_some());
        assert!(run_ns(pid).unwrap() > 0);
        assert!(clock_ticks_per_sec() > 0);
    }
}
