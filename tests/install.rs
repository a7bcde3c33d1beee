//! The install script and the shipped default config: `scripts/install.sh` staged into a
//! temporary DESTDIR puts every file in place with the right mode, keeps an operator's
//! config, and the default config it installs is valid for this kmsd.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kmsd::config::Config;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const KMSD: &str = env!("CARGO_BIN_EXE_kmsd");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn install(destdir: &Path) -> std::process::Output {
    let bin_dir = Path::new(KMSD).parent().unwrap();
    Command::new(repo().join("scripts/install.sh"))
        .env("DESTDIR", destdir)
        .env("KMSD_BIN_DIR", bin_dir)
        .output()
        .expect("run scripts/install.sh")
}

#[test]
fn default_config_is_valid_and_matches_the_defaults() {
    let config = Config::from_file(&repo().join("packaging/kmsd.toml")).unwrap();
    config.validate().unwrap();
    let defaults = Config::default();
    assert_eq!(config.socket, defaults.socket);
    assert_eq!(config.socket_mode, defaults.socket_mode);
    assert_eq!(config.state_dir, defaults.state_dir);
    assert_eq!(config.region, defaults.region);
    assert_eq!(config.account_id, defaults.account_id);
    assert_eq!(
        config.maintenance_interval_secs,
        defaults.maintenance_interval_secs
    );
    assert_eq!(config.log_level, defaults.log_level);
    assert_eq!(config.tpm.tcti, defaults.tpm.tcti);
    assert_eq!(config.tpm.pcr_bank, defaults.tpm.pcr_bank);
    assert_eq!(config.tpm.pcrs, defaults.tpm.pcrs);
    assert_eq!(
        format!("{:?}", config.audit),
        format!("{:?}", defaults.audit)
    );
}

#[test]
fn install_stages_every_file_into_destdir() {
    let stage = tempfile::tempdir().unwrap();
    let out = install(stage.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let at = |path: &str| stage.path().join(path.trim_start_matches('/'));
    let files = [
        ("/usr/bin/kmsd", 0o755, None),
        ("/usr/bin/kmsctl", 0o755, None),
        (
            "/usr/lib/systemd/system/kmsd.service",
            0o644,
            Some("systemd/kmsd.service"),
        ),
        (
            "/usr/lib/systemd/system/kmsd.socket",
            0o644,
            Some("systemd/kmsd.socket"),
        ),
        (
            "/usr/lib/sysusers.d/kmsd.conf",
            0o644,
            Some("systemd/kmsd.sysusers"),
        ),
        (
            "/usr/lib/tmpfiles.d/kmsd.conf",
            0o644,
            Some("systemd/kmsd.tmpfiles"),
        ),
        ("/etc/kmsd/kmsd.toml", 0o644, Some("packaging/kmsd.toml")),
        ("/usr/share/doc/kmsd/README.md", 0o644, Some("README.md")),
        (
            "/usr/share/doc/kmsd/examples/metrics.conf",
            0o644,
            Some("systemd/metrics.conf"),
        ),
        (
            "/usr/share/doc/kmsd/examples/tcp-endpoint.conf",
            0o644,
            Some("systemd/tcp-endpoint.conf"),
        ),
    ];
    for (path, want_mode, source) in files {
        assert_eq!(mode(&at(path)), want_mode, "{path}");
        if let Some(source) = source {
            assert_eq!(
                std::fs::read(at(path)).unwrap(),
                std::fs::read(repo().join(source)).unwrap(),
                "{path} differs from {source}"
            );
        }
    }
    // The shipped monitoring files, when this tree has them.
    let monitoring = repo().join("monitoring");
    if monitoring.is_dir() {
        for entry in walk(&monitoring) {
            let relative = entry.strip_prefix(repo()).unwrap();
            let installed = at("/usr/share/kmsd").join(relative);
            assert!(installed.is_file(), "{} not installed", installed.display());
        }
    }
    // The installed config is valid and the installed binary runs.
    let installed = Config::from_file(&at("/etc/kmsd/kmsd.toml")).unwrap();
    installed.validate().unwrap();
    let version = Command::new(at("/usr/bin/kmsd"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());

    // Installing again keeps the operator's config and puts the new default beside it.
    let config = at("/etc/kmsd/kmsd.toml");
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    let out = install(stage.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "log_level = \"debug\"\n"
    );
    assert_eq!(
        std::fs::read(at("/etc/kmsd/kmsd.toml.default")).unwrap(),
        std::fs::read(repo().join("packaging/kmsd.toml")).unwrap()
    );
    // Nothing outside DESTDIR's tree: every installed path is under /usr or /etc.
    for entry in walk(stage.path()) {
        let relative = entry.strip_prefix(stage.path()).unwrap();
        let top = relative.components().next().unwrap().as_os_str();
        assert!(top == "usr" || top == "etc", "{}", relative.display());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
