//! Who is at the other end of a loopback TCP connection, as the kernel says: the owner
//! (uid) and inode of the *client's* socket, from the socket diagnostics (NETLINK_SOCK_DIAG,
//! inet_diag, what `ss -tne` shows), and, only when asked, the process that holds that
//! socket (`/proc/<pid>/fd`, verified through a pidfd).
//!
//! The client's socket is looked up by its exact 4-tuple: its source is our peer address,
//! its destination our local address. Only connections between loopback addresses are
//! looked up, in kmsd's own network namespace. Anything but exactly one established socket
//! with that tuple (or several answers that all name the same owner) is an error: the
//! connection is to be refused.
//!
//! The uid inet_diag reports is the socket's owner: the fsuid of the process that created
//! the socket (not of the one that connected it, nor of one it was passed to later).

use super::{still_running, IdentityError, ProcFacts, Process};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP, TCP_ESTABLISHED};
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponseHeader, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The deadline of one netlink exchange with the kernel.
pub const NETLINK_DEADLINE: Duration = Duration::from_secs(1);

/// `INET_DIAG_NOCOOKIE`: look the socket up by its tuple alone.
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// The client socket of an accepted loopback TCP connection, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPeer {
    /// Owner of the client socket (the fsuid of the process that created it).
    pub uid: u32,
    /// Inode of the client socket (`socket:[inode]` in its holder's `/proc/<pid>/fd`).
    pub inode: u64,
    /// Our end, as given to [`tcp_peer_owner`].
    pub local: SocketAddr,
    /// The client's end, as given to [`tcp_peer_owner`].
    pub peer: SocketAddr,
}

/// The owner of the client socket of an accepted TCP connection: `local` is the accepted
/// socket's local address, `peer` its peer address. Blocking (a netlink exchange with the
/// kernel, at most [`NETLINK_DEADLINE`]); call it from a blocking thread. One call opens,
/// uses and closes one netlink socket; it is cheap enough to call per connection.
pub fn tcp_peer_owner(local: SocketAddr, peer: SocketAddr) -> Result<TcpPeer, IdentityError> {
    let query = Query::new(local, peer)?;
    let replies = exchange(&query)?;
    let (uid, inode) = query.owner(&replies)?;
    if Some(uid) == unmapped_uid() {
        return Err(IdentityError::Ambiguous {
            local,
            peer,
            reason: format!(
                "the owner shows as uid {uid}, the overflow uid of a user namespace that does not map the real owner"
            ),
        });
    }
    Ok(TcpPeer {
        uid,
        inode,
        local,
        peer,
    })
}

/// The process that holds the socket `inode` owned by `uid`, when exactly one process of
/// that uid holds it and it could be verified (see [`Caller::process`](super::Caller::process)).
/// Blocking: scans `/proc/<pid>/fd` of every process whose `/proc/<pid>` belongs to `uid`.
pub fn process_of_socket(uid: u32, inode: u64) -> Option<i32> {
    process_facts_of_socket(uid, inode).pid
}

/// The process facts of the holders of a socket: pid when there is exactly one holder,
/// executable and unit when every holder has the same one. Nothing when a process that
/// holds it could not be verified (it exited, or its uid changed, while being read).
pub(crate) fn process_facts_of_socket(uid: u32, inode: u64) -> Process {
    match holders(uid, inode) {
        Some(holders) => merge(&holders),
        None => Process::default(),
    }
}

/// The uid the kernel reports for an owner that kmsd's user namespace does not map (the
/// overflow uid), when kmsd runs in a user namespace other than the initial one; `None` in
/// the initial namespace, where every uid is mapped. Such an owner cannot be told from the
/// real user `nobody`, so it is refused.
fn unmapped_uid() -> Option<u32> {
    static UNMAPPED: OnceLock<Option<u32>> = OnceLock::new();
    *UNMAPPED.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        if is_identity_uid_map(&map) {
            return None;
        }
        let overflow = std::fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|text| text.trim().parse().ok());
        Some(overflow.unwrap_or(65534))
    })
}

/// Whether `/proc/self/uid_map` is the initial user namespace's (every uid mapped to itself).
fn is_identity_uid_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    lines == [vec!["0", "0", "4294967295"]]
}

/// The normalized 4-tuple of the client's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    /// Our local address, IPv4-mapped addresses unmapped.
    server: SocketAddr,
    /// Our peer address (the client socket's source), unmapped.
    client: SocketAddr,
    /// The original addresses, for errors.
    local: SocketAddr,
    peer: SocketAddr,
}

/// One socket in the kernel's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reply {
    state: u8,
    src: SocketAddr,
    dst: SocketAddr,
    uid: u32,
    inode: u64,
}

impl From<&InetResponseHeader> for Reply {
    fn from(header: &InetResponseHeader) -> Reply {
        let id = &header.socket_id;
        Reply {
            state: header.state,
            src: SocketAddr::new(id.source_address, id.source_port),
            dst: SocketAddr::new(id.destination_address, id.destination_port),
            uid: header.uid,
            inode: u64::from(header.inode),
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address `a.b.c.d` (a dual-stack listener's view of an
/// IPv4 client).
fn unmap(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl Query {
    fn new(local: SocketAddr, peer: SocketAddr) -> Result<Query, IdentityError> {
        let (server, client) = (unmap(local), unmap(peer));
        for (addr, original) in [(server, local), (client, peer)] {
            if !addr.ip().is_loopback() {
                return Err(IdentityError::NotLoopback { addr: original });
            }
        }
        if server.is_ipv4() != client.is_ipv4() {
            return Err(IdentityError::FamilyMismatch { local, peer });
        }
        Ok(Query {
            server,
            client,
            local,
            peer,
        })
    }

    fn family(&self) -> u8 {
        if self.client.is_ipv4() {
            AF_INET
        } else {
            AF_INET6
        }
    }

    fn request(&self) -> InetRequest {
        InetRequest {
            family: self.family(),
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::ESTABLISHED,
            socket_id: SocketId {
                source_port: self.client.port(),
                destination_port: self.server.port(),
                source_address: self.client.ip(),
                destination_address: self.server.ip(),
                interface_id: 0,
                cookie: NO_COOKIE,
            },
        }
    }

    /// The owner the kernel's answer names, checked: every socket in it must be the
    /// client's established socket (the kernel's exact lookup can fall back to a listener
    /// or a time-wait socket), and all must have the same owner.
    fn owner(&self, replies: &[Reply]) -> Result<(u32, u64), IdentityError> {
        let ambiguous = |reason: String| IdentityError::Ambiguous {
            local: self.local,
            peer: self.peer,
            reason,
        };
        let mut owner = None;
        for reply in replies {
            if reply.state != TCP_ESTABLISHED {
                return Err(ambiguous(format!(
                    "the kernel named a socket in TCP state {}, not ESTABLISHED",
                    reply.state
                )));
            }
            if unmap(reply.src) != self.client || unmap(reply.dst) != self.server {
                return Err(ambiguous(format!(
                    "the kernel named socket {} -> {}",
                    reply.src, reply.dst
                )));
            }
            match owner {
                None => owner = Some((reply.uid, reply.inode)),
                Some(seen) if seen == (reply.uid, reply.inode) => {}
                Some((uid, inode)) => {
                    return Err(ambiguous(format!(
                        "sockets of different owners (uid {uid} inode {inode}, uid {} inode {})",
                        reply.uid, reply.inode
                    )))
                }
            }
        }
        owner.ok_or(IdentityError::NotFound {
            local: self.local,
            peer: self.peer,
        })
    }
}

/// Sends the exact-tuple request and collects the sockets of the answer, until the kernel's
/// acknowledgement. A "no such socket" answer (ENOENT) is an empty list.
fn exchange(query: &Query) -> Result<Vec<Reply>, IdentityError> {
    static SEQUENCE: AtomicU32 = AtomicU32::new(1);
    let deadline = Instant::now() + NETLINK_DEADLINE;
    let socket = netlink_sys::Socket::new(NETLINK_SOCK_DIAG)?;
    let timeout = nix::sys::time::TimeVal::new(
        NETLINK_DEADLINE.as_secs() as _,
        NETLINK_DEADLINE.subsec_micros() as _,
    );
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout).map_err(std::io::Error::from)?;
    setsockopt(&socket, sockopt::SendTimeout, &timeout).map_err(std::io::Error::from)?;
    // Connected to the kernel (port 0): the socket accepts datagrams from the kernel only.
    socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(
        header,
        NetlinkPayload::from(SockDiagMessage::InetRequest(query.request())),
    );
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut replies = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
        }
        let size = socket.recv(&mut &mut buf[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..size])
                .map_err(|err| IdentityError::Decode(err.to_string()))?;
            let length = message.header.length as usize;
            if length == 0 {
                break;
            }
            offset += (length + 3) & !3;
            if message.header.sequence_number != sequence {
                continue;
            }
            match message.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                    replies.push(Reply::from(&response.header));
                }
                NetlinkPayload::Error(error) => {
                    return match error.code {
                        None => Ok(replies),
                        Some(code) if code.get() == -nix::libc::ENOENT => Ok(replies),
                        Some(_) => Err(error.to_io().into()),
                    };
                }
                NetlinkPayload::Done(_) => return Ok(replies),
                _ => {}
            }
        }
    }
}

/// The inode of a `/proc/<pid>/fd/<n>` link target `socket:[N]`.
pub fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A verified holder of the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Holder {
    pid: i32,
    exe: Option<String>,
    unit: Option<String>,
}

/// Every process of `uid` that holds socket `inode`, each verified: a pidfd opened before
/// reading its `/proc` shows it still running afterwards, and `/proc` shows `uid` as its
/// effective uid. `None` when a process that holds the socket could not be verified.
fn holders(uid: u32, inode: u64) -> Option<Vec<Holder>> {
    let mut holders = Vec::new();
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        // /proc/<pid> belongs to the process's euid (root for a non-dumpable process,
        // which is then not found: its facts stay absent).
        if !entry.metadata().is_ok_and(|meta| meta.uid() == uid) {
            continue;
        }
        let Some(pidfd) = rustix::process::Pid::from_raw(pid).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        }) else {
            continue;
        };
        if !holds_socket(pid, inode) {
            continue;
        }
        let facts = ProcFacts::read(pid);
        let alive = still_running(&pidfd);
        let facts = facts.filter(|facts| alive && facts.euid == Some(uid));
        let Some(facts) = facts else {
            tracing::debug!(pid, inode, "a holder of the TCP client socket could not be verified; dropping the process facts");
            return None;
        };
        holders.push(Holder {
            pid,
            exe: facts.exe,
            unit: facts.unit,
        });
    }
    Some(holders)
}

/// Whether one of the fds of `pid` is the socket `inode`.
fn holds_socket(pid: i32, inode: u64) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|link| socket_inode(&link))
            == Some(inode)
    })
}

/// The facts all holders agree on: the pid of a single holder, the executable and unit
/// that every holder has.
fn merge(holders: &[Holder]) -> Process {
    fn common(values: impl IntoIterator<Item = Option<String>>) -> Option<String> {
        let mut values = values.into_iter();
        let first = values.next()??;
        values.all(|v| v.as_ref() == Some(&first)).then_some(first)
    }
    Process {
        pid: match holders {
            [one] => Some(one.pid),
            _ => None,
        },
        exe: common(holders.iter().map(|h| h.exe.clone())),
        unit: common(holders.iter().map(|h| h.unit.clone())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn queries_normalize_and_refuse_non_loopback() {
        // The expected (server, client) tuple, or the error variant's name.
        type Expected = Result<(&'static str, &'static str), &'static str>;
        let cases: [(&str, &str, Expected); 8] = [
            (
                "127.0.0.1:80",
                "127.0.0.1:5000",
                Ok(("127.0.0.1:80", "127.0.0.1:5000")),
            ),
            (
                "127.0.0.1:80",
                "127.1.2.3:5000",
                Ok(("127.0.0.1:80", "127.1.2.3:5000")),
            ),
            ("[::1]:80", "[::1]:5000", Ok(("[::1]:80", "[::1]:5000"))),
            (
                "[::ffff:127.0.0.1]:80",
                "[::ffff:127.0.0.1]:5000",
                Ok(("127.0.0.1:80", "127.0.0.1:5000")),
            ),
            ("127.0.0.1:80", "10.0.0.1:5000", Err("NotLoopback")),
            ("[::ffff:10.0.0.1]:80", "127.0.0.1:5000", Err("NotLoopback")),
            ("[::1]:80", "127.0.0.1:5000", Err("FamilyMismatch")),
            ("0.0.0.0:80", "127.0.0.1:5000", Err("NotLoopback")),
        ];
        for (local, peer, expected) in cases {
            let got = Query::new(addr(local), addr(peer));
            match (got, expected) {
                (Ok(query), Ok((server, client))) => {
                    assert_eq!((query.server, query.client), (addr(server), addr(client)));
                    assert_eq!((query.local, query.peer), (addr(local), addr(peer)));
                    let request = query.request();
                    assert_eq!(request.socket_id.source_port, addr(client).port());
                    assert_eq!(request.socket_id.destination_address, addr(server).ip());
                    assert_eq!(request.socket_id.cookie, NO_COOKIE);
                }
                (Err(err), Err(name)) => {
                    assert!(
                        format!("{err:?}").starts_with(name),
                        "{local} {peer}: {err:?}"
                    );
                }
                (got, expected) => panic!("{local} {peer}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn kernel_answers_are_checked() {
        let query = Query::new(addr("127.0.0.1:80"), addr("127.0.0.1:5000")).unwrap();
        let good = Reply {
            state: TCP_ESTABLISHED,
            src: addr("127.0.0.1:5000"),
            dst: addr("127.0.0.1:80"),
            uid: 1000,
            inode: 77,
        };
        let listener = Reply {
            state: 10, // TCP_LISTEN
            src: addr("127.0.0.1:5000"),
            dst: addr("0.0.0.0:0"),
            ..good
        };
        let other_owner = Reply {
            uid: 0,
            inode: 78,
            ..good
        };
        let mapped = Reply {
            src: addr("[::ffff:127.0.0.1]:5000"),
            dst: addr("[::ffff:127.0.0.1]:80"),
            ..good
        };
        let wrong_port = Reply {
            dst: addr("127.0.0.1:81"),
            ..good
        };
        type Expected = Result<(u32, u64), &'static str>;
        let cases: Vec<(Vec<Reply>, Expected)> = vec![
            (vec![good], Ok((1000, 77))),
            (vec![good, good], Ok((1000, 77))),
            (vec![mapped], Ok((1000, 77))),
            (vec![], Err("NotFound")),
            (vec![listener], Err("Ambiguous")),
            (vec![good, other_owner], Err("Ambiguous")),
            (vec![wrong_port], Err("Ambiguous")),
        ];
        for (replies, expected) in cases {
            match (query.owner(&replies), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(err), Err(name)) => assert!(format!("{err:?}").starts_with(name), "{err:?}"),
                (got, expected) => panic!("{replies:?}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn user_namespace_maps() {
        let cases = [
            ("         0          0 4294967295\n", true),
            ("0 0 4294967295", true),
            ("0 1000 1\n", false),
            ("0 100000 65536\n", false),
            ("0 0 4294967295\n1 1 1\n", false),
            ("", false),
        ];
        for (map, initial) in cases {
            assert_eq!(is_identity_uid_map(map), initial, "{map:?}");
        }
    }

    #[test]
    fn socket_links() {
        let cases = [
            ("socket:[12345]", Some(12345)),
            ("socket:[0]", Some(0)),
            ("socket:[]", None),
            ("socket:[12x]", None),
            ("pipe:[12345]", None),
            ("/dev/null", None),
            ("socket:[18446744073709551615]", Some(u64::MAX)),
        ];
        for (link, expected) in cases {
            assert_eq!(socket_inode(Path::new(link)), expected, "{link}");
        }
    }

    #[test]
    fn holders_merge_to_what_they_agree_on() {
        let holder = |pid: i32, exe: Option<&str>, unit: Option<&str>| Holder {
            pid,
            exe: exe.map(str::to_string),
            unit: unit.map(str::to_string),
        };
        let full = |pid: Option<i32>, exe: Option<&str>, unit: Option<&str>| Process {
            pid,
            exe: exe.map(str::to_string),
            unit: unit.map(str::to_string),
        };
        let cases = [
            (vec![], full(None, None, None)),
            (
                vec![holder(7, Some("/a"), Some("a.service"))],
                full(Some(7), Some("/a"), Some("a.service")),
            ),
            (
                vec![
                    holder(7, Some("/a"), Some("a.service")),
                    holder(8, Some("/a"), Some("a.service")),
                ],
                full(None, Some("/a"), Some("a.service")),
            ),
            (
                vec![
                    holder(7, Some("/a"), Some("a.service")),
                    holder(8, Some("/b"), Some("a.service")),
                ],
                full(None, None, Some("a.service")),
            ),
            (
                vec![
                    holder(7, Some("/a"), None),
                    holder(8, Some("/a"), Some("a.service")),
                ],
                full(None, Some("/a"), None),
            ),
        ];
        for (holders, expected) in cases {
            assert_eq!(merge(&holders), expected, "{holders:?}");
        }
    }

    /// The inode of one of our own fds, from `/proc/self/fd`.
    fn inode_of(stream: &TcpStream) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", stream.as_raw_fd())).unwrap();
        socket_inode(&link).unwrap()
    }

    fn connected(bind: &str) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind(bind).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn finds_the_owner_of_our_own_client_socket() {
        let me = nix::unistd::geteuid().as_raw();
        for bind in ["127.0.0.1:0", "[::1]:0"] {
            let (client, server) = connected(bind);
            let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
            let found = tcp_peer_owner(local, peer).unwrap();
            assert_eq!(found.uid, me, "{bind}");
            assert_eq!(found.inode, inode_of(&client), "{bind}");
            assert_ne!(
                found.inode,
                inode_of(&server),
                "{bind}: the client's, not ours"
            );
            assert_eq!((found.local, found.peer), (local, peer));
            assert_eq!(
                process_of_socket(found.uid, found.inode),
                Some(std::process::id() as i32),
                "{bind}"
            );
            // The reverse tuple is our accepted socket, not a client's: the same lookup
            // from the client's side names the server socket.
            let reverse = tcp_peer_owner(peer, local).unwrap();
            assert_eq!(reverse.inode, inode_of(&server));
        }
    }

    #[test]
    fn a_mapped_address_is_looked_up_as_ipv4() {
        let (client, server) = connected("127.0.0.1:0");
        let map = |a: SocketAddr| match a {
            SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
            other => other,
        };
        let (local, peer) = (server.local_addr().unwrap(), server.peer_addr().unwrap());
        let found = tcp_peer_owner(map(local), map(peer)).unwrap();
        assert_eq!(found.inode, inode_of(&client));
        assert_eq!(found.peer, map(peer));
    }

    #[test]
    fn tuples_without_an_established_client_socket_are_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        // A port nobody uses.
        let unused = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = tcp_peer_owner(local, unused).unwrap_err();
        assert!(matches!(err, IdentityError::NotFound { .. }), "{err:?}");
        // A "peer" port that is a listener: the kernel's lookup falls back to the
        // listening socket, which is refused.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let err = tcp_peer_owner(local, other.local_addr().unwrap()).unwrap_err();
        eprintln!("LISTENER CASE {err:?}");
        assert!(
            matches!(
                err,
                IdentityError::Ambiguous { .. } | IdentityError::NotFound { .. }
            ),
            "{err:?}"
        );
        let err = tcp_peer_owner(local, addr("192.0.2.1:5000")).unwrap_err();
        assert!(matches!(err, IdentityError::NotLoopback { .. }), "{err:?}");
        assert_eq!(process_of_socket(0, u64::from(u32::MAX)), None);
    }

    /// Kills and reaps the child when the test ends, however it ends.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_client_of_another_uid_is_seen_with_its_uid() {
        if !nix::unistd::geteuid().is_root() {
            return; // needs root to run the client as another uid
        }
        let nobody = 65534;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let child = std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--",
            ])
            .args([
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && read -r _"),
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = Reaped(child);
        let mut fds = [rustix::event::PollFd::new(
            &listener,
            rustix::event::PollFlags::IN,
        )];
        let deadline = rustix::event::Timespec {
            tv_sec: 20,
            tv_nsec: 0,
        };
        let ready = rustix::event::poll(&mut fds, Some(&deadline)).unwrap();
        assert_eq!(ready, 1, "the child did not connect within 20 s");
        let (server, peer) = listener.accept().unwrap();
        let found = tcp_peer_owner(server.local_addr().unwrap(), peer).unwrap();
        assert_eq!(found.uid, nobody);
        assert_eq!(
            process_of_socket(found.uid, found.inode),
            Some(child.0.id() as i32)
        );
        let caller = super::super::Caller::resolve_tcp(&found);
        assert!(caller.known_process().is_none(), "nothing looked up yet");
        let passwd = nix::unistd::User::from_uid(nobody.into()).unwrap().unwrap();
        assert_eq!(caller.user.as_deref(), Some(passwd.name.as_str()));
        assert_eq!(caller.gid, passwd.gid.as_raw());
        assert_eq!(caller.exe(), Some("/usr/bin/bash"));
        assert_eq!(caller.process().pid, Some(child.0.id() as i32));
        assert!(caller.known_process().is_some());
        drop(child.0.stdin.take());
    }
}
