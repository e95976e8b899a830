//! The journal. STUB.
