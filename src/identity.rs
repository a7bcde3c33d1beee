//! Who is calling: the kernel-verified credentials of the peer of a Unix socket
//! connection, read once when the connection is accepted, and never what the client says.
//!
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
//! Passing a connected socket to another process is delegation: the identity stays the
//! one of the process that connected.

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fd::OwnedFd;
use std::fmt;

/// The caller of one connection. Facts that could not be determined are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The connecting process, when the kernel reported it.
    pub pid: Option<i32>,
    /// Uid of the connecting process (SO_PEERCRED).
    pub uid: u32,
    /// Primary gid (SO_PEERCRED).
    pub gid: u32,
    /// Supplementary gids.
    pub groups: Option<Vec<u32>>,
    /// User name of `uid` (NSS).
    pub user: Option<String>,
    /// Name of the primary group `gid` (NSS).
    pub group: Option<String>,
    /// Names of the primary and supplementary groups that NSS knows.
    pub group_names: Option<Vec<String>>,
    /// Path of the executable (`/proc/<pid>/exe`).
    pub exe: Option<String>,
    /// systemd unit, from the cgroup path (`/proc/<pid>/cgroup`).
    pub unit: Option<String>,
}

impl Caller {
    /// A caller known only by its SO_PEERCRED credentials.
    pub fn new(pid: Option<i32>, uid: u32, gid: u32) -> Caller {
        Caller {
            pid,
            uid,
            gid,
            groups: None,
            user: None,
            group: None,
            group_names: None,
            exe: None,
            unit: None,
        }
    }

    /// Resolves every fact kmsd can learn about the peer (blocking: reads `/proc` and NSS).
    pub fn resolve(pid: Option<i32>, uid: u32, gid: u32) -> Caller {
        let mut caller = Caller::new(pid, uid, gid);
        caller.user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name);
        caller.group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map(|group| group.name);
        if let Some(pid) = pid.filter(|pid| *pid > 0) {
            let pidfd = rustix::process::Pid::from_raw(pid).and_then(|pid| {
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
            });
            let facts = ProcFacts::read(pid);
            let alive = pidfd.as_ref().is_some_and(still_running);
            caller = caller.with_proc_facts(facts, alive);
        }
        let mut gids = vec![gid];
        if let Some(groups) = &caller.groups {
            gids.extend(groups.iter().copied());
        }
        gids.sort_unstable();
        gids.dedup();
        if caller.groups.is_some() {
            caller.group_names = Some(
                gids.iter()
                    .filter_map(|gid| {
                        nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(*gid))
                            .ok()
                            .flatten()
                            .map(|group| group.name)
                    })
                    .collect(),
            );
        }
        caller
    }

    /// Adds the facts read from `/proc` only if they can be trusted: the pidfd taken
    /// before reading showed the process still running afterwards, and `/proc` agrees
    /// with SO_PEERCRED on the effective uid. Otherwise they stay absent.
    pub fn with_proc_facts(mut self, facts: Option<ProcFacts>, pidfd_alive: bool) -> Caller {
        let Some(facts) = facts else { return self };
        if !pidfd_alive {
            tracing::debug!(pid = ?self.pid, "peer exited before its /proc facts were verified; dropping them");
            return self;
        }
        if facts.euid != Some(self.uid) {
            tracing::debug!(pid = ?self.pid, "peer's /proc uid differs from SO_PEERCRED; dropping /proc facts");
            return self;
        }
        self.groups = facts.groups;
        self.exe = facts.exe;
        self.unit = facts.unit;
        self
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
        if let Some(pid) = self.pid {
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
        assert_eq!(kept.exe.as_deref(), Some("/usr/bin/app"));
        assert_eq!(kept.unit.as_deref(), Some("app.service"));
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
        assert!(me.exe.is_some());
        assert!(me.groups.is_some());
    }
}
