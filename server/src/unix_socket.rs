//! Binding a unix socket path safely: a stale file left by a crashed server is
//! replaced, a socket that a running server still answers on is never stolen.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

#[derive(Debug, thiserror::Error)]
pub enum UnixBindError {
    #[error("{0} is in use by a running server; stop it or choose another --unix path")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot listen on unix socket {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// Removes the socket file when the listener is done with it, if the file is
/// still the one this listener created: another server may have been started
/// on the same path after ours was deleted, and its file is not ours to remove.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device and inode of the file `bind` made.
    id: Option<(u64, u64)>,
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), UnixBindError> {
    use std::os::unix::fs::FileTypeExt;
    let io_err = |e| UnixBindError::Io(path.to_owned(), e);
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(UnixBindError::NotASocket(path.to_owned()))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(UnixBindError::InUse(path.to_owned())),
            // Nobody answers: the file is left over from a server that died.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let file = SocketFile {
        path: path.to_owned(),
        id: file_id(path),
    };
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("timecho-{}-{name}.sock", std::process::id()))
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_live_one_is_not() {
        let path = temp_path("stale");
        let _ = std::fs::remove_file(&path);
        // A socket file with nobody listening, as a crashed server leaves it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let (live, file) = bind(&path).expect("stale file is replaced");
        assert!(matches!(bind(&path), Err(UnixBindError::InUse(_))));
        drop(live);
        drop(file);
        assert!(!path.exists(), "socket file removed with the listener");
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let path = temp_path("file");
        std::fs::write(&path, b"data").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(async { bind(&path).unwrap_err() });
        assert!(matches!(err, UnixBindError::NotASocket(_)));
        std::fs::remove_file(&path).unwrap();
    }
}
