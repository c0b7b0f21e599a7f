//! What the server does, still without sockets: routes, the /ws messages and
//! the client registry.

pub mod envelope;
pub mod hub;
pub mod lifecycle;
pub mod protocol;
pub mod routes;
