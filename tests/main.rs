//! The end-to-end tests: the real `timecho` binary (`CARGO_BIN_EXE_timecho`),
//! started as users start it and spoken to over real sockets, terminals,
//! browsers and balancers. One test binary with one support tree, so the
//! helpers are compiled and linked once; each suite is a module named for what
//! it covers (`cargo test -p timecho --test end_to_end gateway::`).
//!
//! The suites that need more than the Rust toolchain say what is missing and
//! how to get it: `cargo xtask test` installs all of it (docs/testing.md).

mod support;

mod abuse_support;
mod browser_support;
mod interop_support;

mod abuse;
mod api_contract;
mod assets;
mod browser;
mod client;
mod clock;
mod clock_steps;
mod deployed;
mod flapping_upstream;
mod gateway;
mod hostile_http;
mod hostile_logs;
mod hostile_signin;
mod interop;
mod line_framing;
mod listen_names;
mod ping;
mod reconnect_storm;
mod scale_out;
mod security;
mod session_store;
mod tcp;
mod time_format;
mod unix_udp;
