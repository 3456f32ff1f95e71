//! The Jupyter messaging protocol as pure data: headers, messages, wire framing, signing,
//! request and reply contents, and the connection file. No sockets and no interpreter here.

pub mod connection;
pub mod content;
pub mod header;
pub mod sign;
pub mod wire;

pub use connection::{ConnectionError, ConnectionInfo, Transport};
pub use header::{kernel_session, now_iso8601, Header};
pub use sign::Signer;
pub use wire::{Message, WireError, DELIMITER};

/// The messaging protocol version this kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.3";
