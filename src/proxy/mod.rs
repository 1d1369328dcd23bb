//! The proxy engine: from an accepted socket to a forwarded response or a
//! tunnel.

pub mod body;
pub mod conn;
pub mod error;
pub mod headers;
pub mod http;
pub mod park;
pub mod server;
pub mod splice;
pub mod tunnel;
pub mod upgrade;
