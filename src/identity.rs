//! Who is calling: the kernel-verified credentials of the peer of a Unix socket
//! connection (SO_PEERCRED), read once when the connection is accepted.
//!
//! Passing a connected socket to another process is delegation: the identity stays the
//! one of the process that connected.

use std::fmt;

/// The caller of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The connecting process, when the kernel reported it.
    pub pid: Option<i32>,
    pub uid: u32,
    pub gid: u32,
}

impl Caller {
    /// The superuser, who administers the daemon.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} (gid {}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, ", pid {pid}")?;
        }
        f.write_str(")")
    }
}
