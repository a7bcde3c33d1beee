//! Binding the Unix socket: refuse to steal a live socket, remove a stale one, then set the
//! configured mode and group on the socket file.

use nix::unistd::{chown, Group};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// Errors while preparing the listening socket.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("socket {path}: another process is already listening on it")]
    InUse { path: PathBuf },
    #[error("socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("socket group {group:?} does not exist")]
    NoSuchGroup { group: String },
    #[error("cannot give socket {path} to group {group}: {source}")]
    Chown {
        path: PathBuf,
        group: String,
        source: nix::Error,
    },
}

/// Binds `path`, removing a stale socket file only when nothing listens on it.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> Result<UnixListener, ListenerError> {
    let io = |source| ListenerError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ListenerError::InUse {
                    path: path.to_path_buf(),
                })
            }
            Err(_) => std::fs::remove_file(path).map_err(io)?,
        }
    }
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    if let Some(name) = group {
        let found =
            Group::from_name(name)
                .ok()
                .flatten()
                .ok_or_else(|| ListenerError::NoSuchGroup {
                    group: name.to_string(),
                })?;
        chown(path, None, Some(found.gid)).map_err(|source| ListenerError::Chown {
            path: path.to_path_buf(),
            group: name.to_string(),
            source,
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(listener)
}
