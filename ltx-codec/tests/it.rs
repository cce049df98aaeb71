//! The integration tests of `ltx-codec`: one test binary, one module per area (linking one
//! binary instead of one per file is most of what building the tests costs).

mod interop_litestream;
mod prop;
mod vectors;
