//! Where this process's listening sockets came from, and whether another
//! process serves them too (which decides how the drain ends accepting).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Bound,
    Inherited,
    HandedOver,
}

impl Origin {
    /// As `/status` and the `listening on` line name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Bound => "bound",
            Origin::Inherited => "inherited",
            Origin::HandedOver => "handed_over",
        }
    }
}

/// The process-wide view of its listening sockets.
///
/// The rule: a process whose sockets another process also serves (it
/// inherited them, received them in a hand-over, or gave them away in one)
/// stops accepting the moment it drains. Connections still queued in the
/// kernel then go to the other process, which accepts from the same
/// sockets, so nobody is refused. A process that bound its sockets and
/// kept them alone has nobody to leave its queue to: if it stopped
/// accepting, queued clients would hang until their own timeout, so it
/// accepts on and answers upgrades 503 with Retry-After, as a drain always
/// did.
#[derive(Debug)]
pub struct ListenerState {
    pub origin: Origin,
    shared: AtomicBool,
    /// The pid of the server the sockets were handed over to (0: none).
    handed_to: AtomicU32,
}

impl ListenerState {
    pub fn new(origin: Origin) -> ListenerState {
        ListenerState {
            origin,
            shared: AtomicBool::new(origin != Origin::Bound),
            handed_to: AtomicU32::new(0),
        }
    }

    /// Whether another process serves these sockets too (see the rule above).
    pub fn is_shared(&self) -> bool {
        self.shared.load(Ordering::Acquire)
    }

    /// A hand-over completed: `pid` serves the sockets now.
    pub fn handed_over_to(&self, pid: u32) {
        self.handed_to.store(pid, Ordering::Release);
        self.shared.store(true, Ordering::Release);
    }

    pub fn successor(&self) -> Option<u32> {
        Some(self.handed_to.load(Ordering::Acquire)).filter(|&pid| pid != 0)
    }
}
