//! How the threads of the process wake each other: one waker per worker
//! loop (mail, the drain, a hand-over, a finished Redis lookup), and one for
//! the supervisor (a worker finished, the sockets were handed over).

use std::sync::atomic::{AtomicUsize, Ordering};

use mio::Waker;

#[derive(Debug)]
pub struct Wakeups {
    workers: Vec<Waker>,
    supervisor: Waker,
    finished: AtomicUsize,
}

impl Wakeups {
    pub fn new(workers: Vec<Waker>, supervisor: Waker) -> Wakeups {
        Wakeups {
            workers,
            supervisor,
            finished: AtomicUsize::new(0),
        }
    }

    pub fn wake_worker(&self, worker: usize) {
        if let Some(waker) = self.workers.get(worker) {
            let _ = waker.wake();
        }
    }

    /// Wakes every worker loop, so each sees a change of process state.
    pub fn wake_workers(&self) {
        for waker in &self.workers {
            let _ = waker.wake();
        }
    }

    pub fn wake_supervisor(&self) {
        let _ = self.supervisor.wake();
    }

    /// A worker has finished; the supervisor counts and reaps it.
    pub fn worker_finished(&self) {
        self.finished.fetch_add(1, Ordering::AcqRel);
        self.wake_supervisor();
    }

    pub fn finished_workers(&self) -> usize {
        self.finished.load(Ordering::Acquire)
    }
}
