//! wsnotify: a WebSocket notification server with a graceful drain.
//!
//! The crate is a library so that fuzz targets and benchmarks can reach the
//! protocol core; the server itself is `main.rs`.

pub mod app;
pub mod config;
pub mod conn;
pub mod healthcheck;
pub mod ids;
pub mod net;
pub mod node;
pub mod obs;
pub mod per_ip;
pub mod proto;
pub mod rand;
