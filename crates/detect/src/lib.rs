//! Detection (placeholder, being written).
