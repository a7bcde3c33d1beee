#!/usr/bin/env bash
# Builds the Debian package of kmsd with cargo-deb: target/debian/kmsd_<version>_<arch>.deb
# (kmsd and kmsctl, the units, sysusers/tmpfiles snippets, the default config as a conffile,
# the docs and the monitoring files; see [package.metadata.deb] in Cargo.toml). Installs the
# build dependencies and cargo-deb (`cargo install cargo-deb --locked`, from crates.io) when
# missing. Extra arguments go to `cargo deb`. Prints the path of the package.
#
#   scripts/build-deb.sh && apt-get install ./target/debian/kmsd_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# dpkg-shlibdeps computes the package's library dependencies ($auto).
if ! command -v dpkg-shlibdeps >/dev/null; then
    sudo=""
    [[ $(id -u) == 0 ]] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi

target_dir=${CARGO_TARGET_DIR:-target}
rm -f "$target_dir"/debian/kmsd_*.deb
# Stripped: the release profile keeps line tables (debug = 1) for backtraces in tests.
cargo deb --locked --strip "$@"
ls "$target_dir"/debian/kmsd_*.deb >/dev/null
