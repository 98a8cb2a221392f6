//! Where the interop suite's clients are. `cargo xtask test` installs the
//! pinned ones into `target/tools` and says so in `TIMECHO_TOOLS`; Debian's
//! (nc, socat, python3, node) are on `PATH`. A missing client fails the test
//! and says how to install it: an interop check that silently skips proves
//! nothing.

use std::path::{Path, PathBuf};

/// `$TIMECHO_TOOLS`, or `<workspace>/target/tools` where xtask puts them.
pub fn tools_dir() -> PathBuf {
    std::env::var_os("TIMECHO_TOOLS").map_or_else(
        || Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/tools")).to_path_buf(),
        PathBuf::from,
    )
}

#[track_caller]
fn require(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} is missing ({} does not exist): run `cargo xtask test`, which installs \
         the interop clients into target/tools (or point TIMECHO_TOOLS at a folder that has them)",
        path.display()
    );
    path
}

/// The pinned websocat 1.x (`cargo install websocat --root target/tools/websocat`).
pub fn websocat() -> PathBuf {
    require(tools_dir().join("websocat/bin/websocat"), "websocat")
}

/// The `PYTHONPATH` holding `websockets` and `websocket-client` (pip --target).
pub fn python_path() -> PathBuf {
    let dir = tools_dir().join("python");
    require(dir.join("websockets/__init__.py"), "Python's websockets");
    require(
        dir.join("websocket/__init__.py"),
        "Python's websocket-client",
    );
    dir
}

/// The `NODE_PATH` holding node's `ws` (npm --prefix).
pub fn node_path() -> PathBuf {
    let dir = tools_dir().join("node/node_modules");
    require(dir.join("ws/package.json"), "node's ws");
    dir
}

/// A program Debian provides, found on `PATH`.
#[track_caller]
pub fn debian_program(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{program} is not on PATH: run `cargo xtask test`, which installs it \
             (apt-get install {package})"
        )
    })
}
