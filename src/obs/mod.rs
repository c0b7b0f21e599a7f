//! Observability: log lines and timestamps.

pub mod clock;
pub mod log;
pub mod log_writer;
pub mod metrics;
pub mod sd_notify;
