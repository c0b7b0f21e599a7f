//! Log lines leave through a bounded buffer and a thread of their own, so a
//! worker never waits for stderr: a log pipe nobody reads (a stuck
//! collector, a terminal on hold) fills in 64 KiB and would then stop every
//! client of the worker that logs next. Past `CAPACITY` lines are dropped
//! and counted (`wsnotify_log_lines_dropped_total`), and once stderr takes
//! lines again the writer says how many were lost.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of log lines that may wait for stderr: some 2,500 lines, seconds
/// of a busy server's info log.
const CAPACITY: usize = 256 * 1024;

struct Pending {
    /// The lines waiting, in order.
    bytes: Vec<u8>,
    /// Lines dropped since the writer last reported it.
    dropped: u64,
    /// The writer holds lines it took and has not written yet.
    writing: bool,
}

/// `None` until `start`: until then lines are written at once, on the
/// calling thread.
static PENDING: Mutex<Option<Pending>> = Mutex::new(None);
/// Signalled when lines arrive (for the writer) and when the writer is
/// done with what it took (for `flush`).
static CHANGED: Condvar = Condvar::new();
static DROPPED_TOTAL: AtomicU64 = AtomicU64::new(0);

fn pending() -> MutexGuard<'static, Option<Pending>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the writer thread; `report` words the line that says how many
/// lines were dropped. Called once, after the environment is no longer
/// edited (see `net::listen_fds::take`).
pub fn start(report: fn(u64) -> String) -> std::io::Result<()> {
    let mut guard = pending();
    if guard.is_some() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(report))?;
    *guard = Some(Pending {
        bytes: Vec::new(),
        dropped: 0,
        writing: false,
    });
    Ok(())
}

/// Lines dropped since the start because stderr did not take them.
pub fn dropped_total() -> u64 {
    DROPPED_TOTAL.load(Ordering::Relaxed)
}

/// Queues one line (newline included), or writes it at once before
/// `start`. Never waits for stderr once the writer runs.
pub fn write(line: &[u8]) {
    let mut guard = pending();
    let Some(pending) = guard.as_mut() else {
        drop(guard);
        let _ = std::io::stderr().lock().write_all(line);
        return;
    };
    if pending.bytes.len() + line.len() > CAPACITY {
        pending.dropped += 1;
        DROPPED_TOTAL.fetch_add(1, Ordering::Relaxed);
        return;
    }
    pending.bytes.extend_from_slice(line);
    CHANGED.notify_all();
}

/// Waits until every queued line is written, at most `limit`: the process
/// is about to exit, and a stderr that takes nothing must not hold it.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut guard = pending();
    while let Some(pending) = guard.as_ref() {
        if pending.bytes.is_empty() && !pending.writing {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        guard = CHANGED
            .wait_timeout(guard, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The writer: takes what is queued, writes it, then says how many lines
/// were dropped meanwhile, if any.
fn write_lines(report: fn(u64) -> String) {
    let mut batch = Vec::new();
    loop {
        let dropped = {
            let mut guard = pending();
            loop {
                match guard.as_mut() {
                    Some(p) if !p.bytes.is_empty() || p.dropped > 0 => break,
                    _ => guard = CHANGED.wait(guard).unwrap_or_else(|e| e.into_inner()),
                }
            }
            let Some(p) = guard.as_mut() else {
                continue;
            };
            std::mem::swap(&mut batch, &mut p.bytes);
            p.writing = true;
            std::mem::take(&mut p.dropped)
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&batch);
        if dropped > 0 {
            let _ = stderr.write_all(report(dropped).as_bytes());
        }
        drop(stderr);
        batch.clear();
        if let Some(p) = pending().as_mut() {
            p.writing = false;
        }
        CHANGED.notify_all();
    }
}
