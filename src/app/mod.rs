//! What the server does, still without sockets: routes, the /ws messages,
//! publishing, the client registry and the worker's lifecycle. Every
//! decision here is a function of its inputs (events, a snapshot, the time
//! given), returning what the shell is to carry out.

pub mod bad_request;
pub mod channel_history;
pub mod channel_name;
pub mod channel_protocol;
pub mod channel_refusal;
pub mod envelope;
#[cfg(test)]
mod fixtures;
pub mod history;
pub mod hub;
pub mod lifecycle;
pub mod messages;
pub mod protocol;
pub mod publish;
pub mod routes;
pub mod snapshot;
pub mod status;
pub mod token;
