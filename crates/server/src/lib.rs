//! The admin server. STUB.
