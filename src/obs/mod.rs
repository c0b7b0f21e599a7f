//! Observability: log lines and timestamps.

pub mod clock;
pub mod log;
pub mod metrics;
pub mod sd_notify;
