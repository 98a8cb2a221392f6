//! The page is embedded from `web/dist`, which `cargo xtask web` fills. The folder
//! must exist for the embedding to compile, so a plain `cargo build` creates it
//! empty; the server then says how to build the page instead of serving one.

fn main() {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    if let Err(e) = std::fs::create_dir_all(&dist) {
        println!("cargo::warning=cannot create {}: {e}", dist.display());
    }
    println!("cargo::rerun-if-changed=../web/dist");
    println!("cargo::rerun-if-changed=build.rs");
}
