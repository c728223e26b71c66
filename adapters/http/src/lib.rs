//! HTTP upstream adapter.
