//! Benchmarks live in benches/benches; the end-to-end harness in src/bin.
