//! The Debian package description (`[package.metadata.deb]` in Cargo.toml, built by
//! scripts/build-deb.sh): every asset exists, it ships the files the README lists and not
//! the benchmark tool, the config is a conffile, and the maintainer scripts are executable
//! shell scripts that never start the service on a fresh install.

// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deb_metadata() -> toml::Table {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// (source, destination) of each asset.
fn assets(deb: &toml::Table) -> Vec<(String, String)> {
    deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|asset| {
            let asset = asset.as_array().expect("asset [source, dest, mode]");
            assert_eq!(asset.len(), 3, "{asset:?}");
            (
                asset[0].as_str().unwrap().to_string(),
                asset[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_asset_exists_and_the_layout_is_the_documented_one() {
    let deb = deb_metadata();
    let assets = assets(&deb);
    for (source, dest) in &assets {
        if source.starts_with("target/release/") {
            continue;
        }
        if let Some(dir) = source
            .strip_suffix("/**/*")
            .or_else(|| source.strip_suffix("/*.md"))
        {
            assert!(repo().join(dir).is_dir(), "{source}");
        } else {
            assert!(repo().join(source).is_file(), "{source} -> {dest}");
        }
    }
    let has = |source: &str, dest: &str| assets.iter().any(|(s, d)| s == source && d == dest);
    assert!(has("target/release/kmsd", "usr/bin/"));
    assert!(has("target/release/kmsctl", "usr/bin/"));
    assert!(!assets.iter().any(|(s, _)| s.contains("kmsd-bench")));
    assert!(has(
        "systemd/kmsd.service",
        "lib/systemd/system/kmsd.service"
    ));
    assert!(has("systemd/kmsd.socket", "lib/systemd/system/kmsd.socket"));
    assert!(has("systemd/kmsd.sysusers", "usr/lib/sysusers.d/kmsd.conf"));
    assert!(has("systemd/kmsd.tmpfiles", "usr/lib/tmpfiles.d/kmsd.conf"));
    assert!(has("packaging/kmsd.toml", "etc/kmsd/kmsd.toml"));
    assert!(has("monitoring/**/*", "usr/share/kmsd/monitoring/"));
    let conf_files = deb["conf-files"].as_array().unwrap();
    assert!(conf_files
        .iter()
        .any(|f| f.as_str() == Some("/etc/kmsd/kmsd.toml")));
    assert!(deb["depends"].as_str().unwrap().contains("$auto"));
}

#[test]
fn maintainer_scripts_are_executable_and_start_nothing() {
    let deb = deb_metadata();
    let dir = repo().join(deb["maintainer-scripts"].as_str().unwrap());
    for name in ["postinst", "prerm", "postrm"] {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        assert!(text.contains("\nset -e\n"), "{name}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{name} is not executable");
        let code: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect();
        let code = code.join("\n");
        for forbidden in [
            "systemctl start",
            "systemctl enable",
            "enable --now",
            "rm -rf",
        ] {
            assert!(!code.contains(forbidden), "{name} runs {forbidden}");
        }
    }
    let postinst = std::fs::read_to_string(dir.join("postinst")).unwrap();
    for step in [
        "systemd-sysusers /usr/lib/sysusers.d/kmsd.conf",
        "systemd-tmpfiles --create /usr/lib/tmpfiles.d/kmsd.conf",
        "systemctl daemon-reload",
    ] {
        assert!(postinst.contains(step), "postinst lacks {step}");
    }
}
