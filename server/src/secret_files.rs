//! Files that hold secrets (TLS keys, the session key, users' password
//! hashes, bearer tokens) should be readable by the server's user alone; one
//! that others can read is worth a warning at start-up, before anyone copies it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::config::ServeConfig;
use crate::signin::AuthSource;
use crate::tls::CertSource;

/// Every secret file the configuration names, with what it holds.
fn secret_files(config: &ServeConfig) -> Vec<(&'static str, PathBuf)> {
    let mut files = Vec::new();
    if let Some(CertSource::Files { key, .. }) = &config.tls {
        files.push(("TLS key", key.clone()));
    }
    if let Some(gw) = &config.gateway {
        if let Some(key) = &gw.session_key {
            files.push(("session key", key.clone()));
        }
        for source in &gw.auth {
            match source {
                AuthSource::Basic(path) => files.push(("users file", path.clone())),
                AuthSource::Token(path) => files.push(("tokens file", path.clone())),
            }
        }
    }
    files
}

/// Whether users other than the owner may read `path`.
fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

/// Warns about each secret file that others may read.
pub fn warn_if_exposed(config: &ServeConfig) {
    for (what, path) in secret_files(config) {
        if readable_by_others(&path) {
            warn!(
                "the {what} {} can be read by other users; restrict it with: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_or_world_readable_files_are_exposed() {
        let path = std::env::temp_dir().join(format!("timecho-secret-{}", std::process::id()));
        std::fs::write(&path, "k").unwrap();
        for (mode, exposed) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&path), exposed, "{mode:o}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(
            !readable_by_others(&path),
            "a missing file is reported elsewhere"
        );
    }
}
