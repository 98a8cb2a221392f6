//! The WebSocket side of the gateway: the upgrade (who may open a session,
//! and with which subprotocol), the handshake answered by hand so that the
//! socket can be wrapped, the close gate that holds a client's Close until
//! it has been answered, and the session's protocol layer that is renewed at
//! rest. What a session does with its frames is the relay's.

pub mod close_gate;
pub mod handshake;
pub mod session_socket;
pub mod upgrade;
