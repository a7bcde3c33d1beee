//! Who is calling: the kernel-verified credentials of the peer of a connection, read when
//! the connection is accepted, and never what the client says.
//!
//! On the Unix socket:
//! - pid, uid and gid come from SO_PEERCRED (the credentials at `connect()` time).
//! - Supplementary groups, the executable and the systemd unit come from `/proc/<pid>`.
//!   To make sure those belong to the process that connected and not to a newcomer that
//!   took its pid, kmsd opens a pidfd for the pid, reads `/proc`, and then checks through
//!   the pidfd that the process is still alive (a pidfd always names one process; once it
//!   exits, its pid can be reused, but the pidfd reports the exit) and that the effective
//!   uid read from `/proc` is the SO_PEERCRED uid. If either check fails, the `/proc`
//!   facts are dropped: they are absent, and policy conditions that need them fail closed.
//! - User and group names are resolved through NSS (`getpwuid_r`, `getgrgid_r`).
//!
//! On loopback TCP ([`tcp`]): the uid is the owner of the *client's* socket as the kernel's
//! socket diagnostics report it (inet_diag, what `ss -tne` shows); the primary gid, the
//! supplementary groups and the names come from NSS for that uid (the user's membership,
//! not the process's credentials); pid, executable and unit come from the process that
//! holds the client socket, found in `/proc` only when a policy first asks for them.
//!
//! Passing a connected socket to another process is delegation: the identity stays the
//! one of the process that connected (Unix) or created the socket (TCP).

pub mod tcp;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::OwnedFd;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

pub use tcp::{process_of_socket, tcp_peer_owner, TcpPeer};

/// Why the kernel could not prove who is at the other end of a connection. The connection
/// is refused (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Only connections between two loopback addresses are looked up: the client must be on
    /// this host.
    #[error("TCP address {addr} is not a loopback address")]
    NotLoopback {
        /// The offending address (local or peer).
        addr: SocketAddr,
    },
    /// One end is IPv4 and the other IPv6: no such TCP connection exists.
    #[error("TCP addresses {local} and {peer} are of different families")]
    FamilyMismatch {
        /// Our end.
        local: SocketAddr,
        /// The client's end.
        peer: SocketAddr,
    },
    /// The netlink exchange with the kernel failed (including its deadline).
    #[error("socket diagnostics (netlink): {0}")]
    Netlink(#[from] std::io::Error),
    /// The kernel's reply could not be decoded.
    #[error("socket diagnostics reply: {0}")]
    Decode(String),
    /// No established client socket has this 4-tuple in kmsd's network namespace.
    #[error("no established TCP socket {peer} -> {local} in this network namespace")]
    NotFound {
        /// Our end.
        local: SocketAddr,
        /// The client's end.
        peer: SocketAddr,
    },
    /// The kernel answered with a socket that is not the client's established socket, or
    /// with several sockets of different owners.
    #[error("socket diagnostics for {peer} -> {local} were ambiguous: {reason}")]
    Ambiguous {
        /// Our end.
        local: SocketAddr,
        /// The client's end.
        peer: SocketAddr,
        /// What did not match.
        reason: String,
    },
}

/// Which transport carried the connection, and so which kernel facility proved the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// The Unix socket: SO_PEERCRED.
    UnixSocket,
    /// Loopback TCP: the owner of the client's socket through inet_diag.
    Tcp {
        /// Our end of the connection (the accepted socket's local address).
        local: SocketAddr,
        /// The client's end (the accepted socket's peer address).
        peer: SocketAddr,
    },
    /// Loopback TCP whose client socket the kernel could not attribute (another network
    /// namespace reaching a forwarded port): the caller is the uid a `[sigv4]` access key
    /// stands for, proven by the request's verified signature.
    SignedTcp {
        /// The client's end, as the connection shows it.
        peer: SocketAddr,
    },
}

impl Transport {
    /// `unix` or `tcp`, as in the audit record.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::UnixSocket => "unix",
            Transport::Tcp { .. } => "tcp",
            Transport::SignedTcp { .. } => "tcp-sigv4",
        }
    }

    /// The client's address, for TCP.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::UnixSocket => None,
            Transport::Tcp { peer, .. } | Transport::SignedTcp { peer } => Some(*peer),
        }
    }
}

/// The process facts of a caller: its pid, executable and systemd unit. Facts that could not
/// be determined (or verified) are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process {
    /// The process, when one process could be named.
    pub pid: Option<i32>,
    /// Path of the executable (`/proc/<pid>/exe`).
    pub exe: Option<String>,
    /// systemd unit, from the cgroup path (`/proc/<pid>/cgroup`).
    pub unit: Option<String>,
}

/// Where a caller's process facts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProcessSource {
    /// Read when the connection was accepted (Unix socket), or set directly.
    Known(Process),
    /// Looked up on first use: the holders of a TCP socket (shared by clones, so one
    /// connection's lookup happens at most once).
    Socket(Arc<SocketProcess>),
}

/// The lazily found holder of a TCP client socket.
#[derive(Debug, PartialEq, Eq)]
struct SocketProcess {
    uid: u32,
    inode: u64,
    found: OnceLock<Process>,
}

impl SocketProcess {
    fn get(&self) -> &Process {
        self.found
            .get_or_init(|| tcp::process_facts_of_socket(self.uid, self.inode))
    }
}

/// The gid of a TCP caller whose uid has no passwd entry: no group is known. It is
/// `(gid_t)-1`, which no group can have; group principals and conditions on the
/// supplementary groups are unknown for such a caller (fail closed).
pub const NO_GID: u32 = u32::MAX;

/// The caller of one connection. Facts that could not be determined are `None`.
///
/// The process facts (pid, executable, unit) are read through [`Caller::process`],
/// [`Caller::exe`] and [`Caller::unit`]: for a TCP caller they are looked up (blocking:
/// scans `/proc`) the first time one of these is called. [`Caller::known_process`] never
/// looks anything up (the audit record and logs use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Uid of the caller (SO_PEERCRED; for TCP the owner of the client socket).
    pub uid: u32,
    /// Primary gid (SO_PEERCRED; for TCP the uid's passwd entry, or [`NO_GID`]).
    pub gid: u32,
    /// Supplementary gids (`/proc/<pid>/status`; for TCP the uid's NSS membership).
    pub groups: Option<Vec<u32>>,
    /// User name of `uid` (NSS).
    pub user: Option<String>,
    /// Name of the primary group `gid` (NSS).
    pub group: Option<String>,
    /// Names of the primary and supplementary groups that NSS knows.
    pub group_names: Option<Vec<String>>,
    /// The transport that proved the caller.
    pub transport: Transport,
    process: ProcessSource,
}

impl Caller {
    /// A caller on the Unix socket known only by its SO_PEERCRED credentials.
    pub fn new(pid: Option<i32>, uid: u32, gid: u32) -> Caller {
        Caller {
            uid,
            gid,
            groups: None,
            user: None,
            group: None,
            group_names: None,
            transport: Transport::UnixSocket,
            process: ProcessSource::Known(Process {
                pid,
                exe: None,
                unit: None,
            }),
        }
    }

    /// Resolves every fact kmsd can learn about a Unix socket peer (blocking: reads `/proc`
    /// and NSS).
    pub fn resolve(pid: Option<i32>, uid: u32, gid: u32) -> Caller {
        let mut caller = Caller::new(pid, uid, gid);
        caller.user = user_name(uid);
        caller.group = group_name(gid);
        if let Some(pid) = pid.filter(|pid| *pid > 0) {
            let pidfd = rustix::process::Pid::from_raw(pid).and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
            let facts = ProcFacts::read(pid);
            let alive = pidfd.as_ref().is_some_and(still_running);
            caller = caller.with_proc_facts(facts, alive);
        }
        if caller.groups.is_some() {
            caller.group_names = Some(group_names(gid, caller.groups.as_deref()));
        }
        caller
    }

    /// The caller of a loopback TCP connection whose client socket the kernel attributed to
    /// `peer.uid` ([`tcp_peer_owner`]). Blocking (NSS): the primary gid is the uid's passwd
    /// entry, the supplementary groups its NSS membership (`getgrouplist`), since a TCP
    /// peer has no SO_PEERCRED. The process facts are looked up later, on first use.
    pub fn resolve_tcp(peer: &TcpPeer) -> Caller {
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(peer.uid))
            .ok()
            .flatten();
        let (gid, groups) = match &user {
            Some(user) => {
                let groups = std::ffi::CString::new(user.name.as_bytes())
                    .ok()
                    .and_then(|name| nix::unistd::getgrouplist(&name, user.gid).ok())
                    .map(|gids| {
                        let mut gids: Vec<u32> = gids
                            .into_iter()
                            .map(|gid| gid.as_raw())
                            .filter(|gid| *gid != user.gid.as_raw())
                            .collect();
                        gids.sort_unstable();
                        gids.dedup();
                        gids
                    });
                (user.gid.as_raw(), groups)
            }
            None => (NO_GID, None),
        };
        let group = (gid != NO_GID).then(|| group_name(gid)).flatten();
        let group_names = groups
            .as_deref()
            .map(|groups| group_names(gid, Some(groups)));
        Caller {
            uid: peer.uid,
            gid,
            groups,
            user: user.map(|user| user.name),
            group,
            group_names,
            transport: Transport::Tcp {
                local: peer.local,
                peer: peer.peer,
            },
            process: ProcessSource::Socket(Arc::new(SocketProcess {
                uid: peer.uid,
                inode: peer.inode,
                found: OnceLock::new(),
            })),
        }
    }

    /// The caller a verified `[sigv4]` signature names on a TCP connection from `peer`:
    /// `uid`, its primary gid and NSS groups as for [`Caller::resolve_tcp`], and no process
    /// (the kernel showed none), so Exe and Unit principals never apply. Blocking (NSS).
    pub fn from_signed_uid(uid: u32, peer: SocketAddr) -> Caller {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut caller = Caller::resolve_tcp(&TcpPeer {
            uid,
            inode: 0,
            local: loopback,
            peer,
        });
        caller.transport = Transport::SignedTcp { peer };
        caller.process = ProcessSource::Known(Process::default());
        caller
    }

    /// [`tcp_peer_owner`] then [`Caller::resolve_tcp`]: everything a TCP connection costs
    /// at accept time (blocking: netlink and NSS).
    pub fn from_tcp(local: SocketAddr, peer: SocketAddr) -> Result<Caller, IdentityError> {
        Ok(Caller::resolve_tcp(&tcp_peer_owner(local, peer)?))
    }

    /// Adds the facts read from `/proc` only if they can be trusted: the pidfd taken
    /// before reading showed the process still running afterwards, and `/proc` agrees
    /// with SO_PEERCRED on the effective uid. Otherwise they stay absent.
    pub fn with_proc_facts(mut self, facts: Option<ProcFacts>, pidfd_alive: bool) -> Caller {
        let Some(facts) = facts else { return self };
        let pid = self.known_process().and_then(|p| p.pid);
        if !pidfd_alive {
            tracing::debug!(
                ?pid,
                "peer exited before its /proc facts were verified; dropping them"
            );
            return self;
        }
        if facts.euid != Some(self.uid) {
            tracing::debug!(
                ?pid,
                "peer's /proc uid differs from SO_PEERCRED; dropping /proc facts"
            );
            return self;
        }
        self.groups = facts.groups;
        self.process = ProcessSource::Known(Process {
            pid,
            exe: facts.exe,
            unit: facts.unit,
        });
        self
    }

    /// Sets the process facts (no lookup will happen): for callers built by hand.
    pub fn set_process(&mut self, process: Process) {
        self.process = ProcessSource::Known(process);
    }

    /// The process facts; for a TCP caller, looked up now if not yet (blocking: scans
    /// `/proc` for the holder of the client socket, see [`process_of_socket`]).
    pub fn process(&self) -> &Process {
        match &self.process {
            ProcessSource::Known(process) => process,
            ProcessSource::Socket(socket) => socket.get(),
        }
    }

    /// The process facts known so far, without any lookup: `None` for a TCP caller whose
    /// process was not needed yet.
    pub fn known_process(&self) -> Option<&Process> {
        match &self.process {
            ProcessSource::Known(process) => Some(process),
            ProcessSource::Socket(socket) => socket.found.get(),
        }
    }

    /// The executable (may look it up, see [`Caller::process`]).
    pub fn exe(&self) -> Option<&str> {
        self.process().exe.as_deref()
    }

    /// The systemd unit (may look it up, see [`Caller::process`]).
    pub fn unit(&self) -> Option<&str> {
        self.process().unit.as_deref()
    }

    /// The superuser, who administers the daemon.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Every gid of the caller that is known (primary first).
    pub fn all_gids(&self) -> Vec<u32> {
        let mut gids = vec![self.gid];
        if let Some(groups) = &self.groups {
            gids.extend(groups.iter().copied().filter(|g| *g != self.gid));
        }
        gids
    }
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}

fn group_name(gid: u32) -> Option<String> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|group| group.name)
}

/// The NSS names of the primary and supplementary gids, sorted by gid; gids NSS does not
/// know are left out.
fn group_names(gid: u32, groups: Option<&[u32]>) -> Vec<String> {
    let mut gids = vec![gid];
    gids.extend(groups.unwrap_or_default().iter().copied());
    gids.sort_unstable();
    gids.dedup();
    gids.into_iter().filter_map(group_name).collect()
}

/// Whether the process behind a pidfd is still running: a pidfd becomes readable when
/// its process exits. Any error counts as "not running" (fail closed).
pub fn still_running(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(0) => true,
        Ok(_) => false,
        Err(_) => false,
    }
}

/// What `/proc/<pid>` says about a process (unverified until checked against a pidfd).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcFacts {
    /// Effective uid (`Uid:` line of `status`).
    pub euid: Option<u32>,
    /// Supplementary gids (`Groups:` line of `status`).
    pub groups: Option<Vec<u32>>,
    /// Target of `/proc/<pid>/exe`.
    pub exe: Option<String>,
    /// The systemd unit from `/proc/<pid>/cgroup`.
    pub unit: Option<String>,
}

impl ProcFacts {
    /// Reads `/proc/<pid>`. Unreadable entries are absent: `/proc/<pid>/exe` of another
    /// uid cannot be read by a kmsd without CAP_SYS_PTRACE (e.g. running as user `kmsd`).
    pub fn read(pid: i32) -> Option<ProcFacts> {
        let base = format!("/proc/{pid}");
        let status = std::fs::read_to_string(format!("{base}/status")).ok()?;
        let (euid, groups) = parse_status(&status);
        let exe = std::fs::read_link(format!("{base}/exe"))
            .ok()
            .and_then(|path| path.to_str().map(str::to_string))
            // A deleted or replaced executable is not the one a policy names.
            .filter(|path| !path.ends_with(" (deleted)"));
        let unit = std::fs::read_to_string(format!("{base}/cgroup"))
            .ok()
            .and_then(|text| unit_from_cgroup(&text));
        Some(ProcFacts {
            euid,
            groups,
            exe,
            unit,
        })
    }
}

/// The effective uid and the supplementary groups from `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> (Option<u32>, Option<Vec<u32>>) {
    let mut euid = None;
    let mut groups = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            euid = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok());
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<Vec<u32>>>();
        }
    }
    (euid, groups)
}

/// The systemd unit of a process from `/proc/<pid>/cgroup`: the innermost `.service` or
/// `.scope` component of the unified (v2) hierarchy path, or of the `name=systemd` one.
pub fn unit_from_cgroup(text: &str) -> Option<String> {
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .or_else(|| {
            text.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                (controllers == "name=systemd").then_some(path)
            })
        })?;
    path.split('/')
        .rev()
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
        .map(str::to_string)
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(user) = &self.user {
            write!(f, " ({user})")?;
        }
        write!(f, " (gid {}", self.gid)?;
        if let Some(pid) = self.known_process().and_then(|p| p.pid) {
            write!(f, ", pid {pid}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths() {
        let cases = [
            ("0::/system.slice/nginx.service\n", Some("nginx.service")),
            (
                "0::/system.slice/docker.service/inner\n",
                Some("docker.service"),
            ),
            (
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n",
                Some("backup.service"),
            ),
            (
                "0::/user.slice/user-1000.slice/session-3.scope\n",
                Some("session-3.scope"),
            ),
            ("0::/\n", None),
            ("0::/init.scope\n", Some("init.scope")),
            (
                "12:cpu:/x\n1:name=systemd:/system.slice/cron.service\n",
                Some("cron.service"),
            ),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(unit_from_cgroup(text).as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn status_lines() {
        let text = "Name:\tx\nUid:\t1000\t1001\t1000\t1000\nGid:\t5\t5\t5\t5\nGroups:\t4 24 27 \n";
        assert_eq!(parse_status(text), (Some(1001), Some(vec![4, 24, 27])));
        assert_eq!(parse_status("Groups:\t\n"), (None, Some(vec![])));
    }

    fn facts() -> ProcFacts {
        ProcFacts {
            euid: Some(1000),
            groups: Some(vec![5]),
            exe: Some("/usr/bin/app".into()),
            unit: Some("app.service".into()),
        }
    }

    #[test]
    fn proc_facts_only_kept_while_the_pidfd_shows_the_process_alive() {
        let base = Caller::new(Some(42), 1000, 1000);
        let kept = base.clone().with_proc_facts(Some(facts()), true);
        assert_eq!(kept.exe(), Some("/usr/bin/app"));
        assert_eq!(kept.unit(), Some("app.service"));
        assert_eq!(kept.process().pid, Some(42));
        // The process exited (its pid may now be someone else's): nothing is attributed.
        let dead = base.clone().with_proc_facts(Some(facts()), false);
        assert_eq!(dead, base);
        // /proc disagrees with the kernel's peer credentials: dropped.
        let mut other = facts();
        other.euid = Some(0);
        assert_eq!(base.clone().with_proc_facts(Some(other), true), base);
        assert_eq!(base.clone().with_proc_facts(None, true), base);
    }

    #[test]
    fn pidfd_reports_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
        assert!(still_running(&pidfd));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!still_running(&pidfd));
    }

    #[test]
    fn resolves_this_process() {
        let me = Caller::resolve(
            Some(std::process::id() as i32),
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert!(me.exe().is_some());
        assert_eq!(me.transport, Transport::UnixSocket);
        assert!(me.groups.is_some());
    }
}
