//! Harnesses for wsframe's fuzz targets. Each target in `fuzz_targets/` is one line calling
//! into a module here; `tests/fuzz_regressions.rs` includes the same modules by path, so
//! every crash replays in `cargo test` through exactly the code that found it.

pub mod alloc_count;
pub mod connection;
pub mod differential;
pub mod frame_parse;
pub mod handshake;
pub mod wire;
