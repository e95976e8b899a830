//! The gateway. STUB.
