//! Binding the Unix socket: refuse to steal a live socket, remove a stale one, then set the
//! configured mode and group on the socket file.
//!
//! What may be at the path: nothing (bind); a socket that refuses connections (stale: left
//! by a kmsd that died, so it is removed and bound again); anything else is refused and
//! left untouched: a live socket (another kmsd serves on it), a regular file, a directory,
//! a symbolic link (never followed), a FIFO or a device, or a socket whose liveness cannot
//! be told (for example, no permission to connect).

use nix::unistd::{chown, Group};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// Errors while preparing the listening socket.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// A live process already listens on the socket path.
    #[error("socket {path}: another process is already listening on it")]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path.
    #[error(
        "socket {path}: refusing to replace {found} there; remove it or set another `socket` path"
    )]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there (`a regular file`, ...).
        found: &'static str,
    },
    /// A socket is at the path but a connect test gave no clear answer.
    #[error("socket {path}: a socket is there, but kmsd cannot tell whether it is in use ({source}); left untouched")]
    Unknown {
        /// The socket path.
        path: PathBuf,
        /// What the connect test returned.
        source: std::io::Error,
    },
    /// The socket could not be bound, removed or set up.
    #[error("socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configured socket group does not exist.
    #[error("socket group {group:?} does not exist")]
    NoSuchGroup {
        /// The group name.
        group: String,
    },
    /// The socket could not be given to its group.
    #[error("cannot give socket {path} to group {group}: {source}")]
    Chown {
        /// The socket path.
        path: PathBuf,
        /// The group name.
        group: String,
        /// The underlying error.
        source: nix::Error,
    },
}

/// What is at a path, in words, for errors.
fn describe(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a file of unknown type"
    }
}

/// Makes room for the socket at `path`: removes a stale socket (one that refuses
/// connections), refuses everything else (see the module documentation).
fn clear_stale_socket(path: &Path) -> Result<(), ListenerError> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenerError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file_type = metadata.file_type();
    if !file_type.is_socket() {
        return Err(ListenerError::NotASocket {
            path: path.to_path_buf(),
            found: describe(file_type),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenerError::InUse {
            path: path.to_path_buf(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing a stale socket file (nothing listens on it)");
            std::fs::remove_file(path).map_err(|source| ListenerError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(ListenerError::Unknown {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Binds `path`, removing a stale socket file only when it is a socket nothing listens on.
pub fn bind_socket(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> Result<UnixListener, ListenerError> {
    let io = |source| ListenerError::Io {
        path: path.to_path_buf(),
        source,
    };
    clear_stale_socket(path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_stale_sockets_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file survives, byte for byte.
        let file = dir.path().join("file.sock");
        std::fs::write(&file, b"precious").unwrap();
        let err = bind_socket(&file, 0o600, None).unwrap_err().to_string();
        assert!(
            err.contains("a regular file") && err.contains("file.sock"),
            "{err}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"precious");
        // A directory and a symbolic link (even to a stale socket) are refused.
        let sub = dir.path().join("dir.sock");
        std::fs::create_dir(&sub).unwrap();
        let err = bind_socket(&sub, 0o600, None).unwrap_err().to_string();
        assert!(err.contains("a directory"), "{err}");
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&stale, &link).unwrap();
        let err = bind_socket(&link, 0o600, None).unwrap_err().to_string();
        assert!(err.contains("a symbolic link"), "{err}");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        // A live socket is refused; a stale one is replaced.
        let live = dir.path().join("live.sock");
        let _listening = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert!(matches!(
            bind_socket(&live, 0o600, None),
            Err(ListenerError::InUse { .. })
        ));
        let listener = bind_socket(&stale, 0o600, None).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&stale).is_ok());
        drop(listener);
        let mode = std::fs::metadata(&stale).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
