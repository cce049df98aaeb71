//! Benchmarks live in benches/benches; the end-to-end harness in src/bin/e2e.rs with its
//! helpers in src/e2e.
//!
//! The synthetic inputs (SQLite-like pages, valid WAL bytes) are the ones ltx-codec's property
//! tests use (from `test-support`), so both measure and test the same shapes of data.

pub use test_support::synth;

pub mod e2e;
