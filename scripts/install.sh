#!/usr/bin/env bash
# Installs kmsd as a systemd service, from source (the alternative to the Debian package,
# scripts/build-deb.sh, which installs the same files with the units in /lib/systemd/system).
#
#   scripts/install.sh                 build (cargo build --release --locked) and install
#   KMSD_BIN_DIR=dir scripts/install.sh   install prebuilt kmsd and kmsctl from dir
#   DESTDIR=/tmp/stage scripts/install.sh stage into a directory (packaging); no user,
#                                         directory or systemd changes on this host
#
# Files installed (under $DESTDIR):
#   /usr/bin/kmsd, /usr/bin/kmsctl
#   /usr/lib/systemd/system/kmsd.service, kmsd.socket
#   /usr/lib/sysusers.d/kmsd.conf          user kmsd, group kmsd-clients, kmsd in tss
#   /usr/lib/tmpfiles.d/kmsd.conf          /var/lib/kmsd (0700), /run/kmsd
#   /etc/kmsd/kmsd.toml                    commented default config; an existing file is
#                                          kept and the new default goes to kmsd.toml.default
#   /usr/share/doc/kmsd/                   README.md, docs/*.md, examples/metrics.conf, tcp-endpoint.conf (drop-ins)
#   /usr/share/kmsd/monitoring/            the shipped Prometheus and Grafana files
#
# Without DESTDIR, it then creates the user and directories (systemd-sysusers,
# systemd-tmpfiles) and reloads systemd. It does not enable or start anything:
#   systemctl enable --now kmsd.socket
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
dest() { printf '%s%s' "$DESTDIR" "$1"; }

if [[ -z ${KMSD_BIN_DIR:-} ]]; then
    cargo build --release --locked --bins
    KMSD_BIN_DIR=${CARGO_TARGET_DIR:-target}/release
fi
for exe in kmsd kmsctl; do
    [[ -x $KMSD_BIN_DIR/$exe ]] || { echo "install.sh: $KMSD_BIN_DIR/$exe not found" >&2; exit 1; }
done

install -d -m 0755 "$(dest /usr/bin)" "$(dest /usr/lib/systemd/system)" \
    "$(dest /usr/lib/sysusers.d)" "$(dest /usr/lib/tmpfiles.d)" \
    "$(dest /usr/share/doc/kmsd/examples)" "$(dest /etc/kmsd)"
install -m 0755 "$KMSD_BIN_DIR/kmsd" "$KMSD_BIN_DIR/kmsctl" "$(dest /usr/bin)/"
install -m 0644 systemd/kmsd.service systemd/kmsd.socket "$(dest /usr/lib/systemd/system)/"
install -m 0644 systemd/kmsd.sysusers "$(dest /usr/lib/sysusers.d/kmsd.conf)"
install -m 0644 systemd/kmsd.tmpfiles "$(dest /usr/lib/tmpfiles.d/kmsd.conf)"
install -m 0644 README.md "$(dest /usr/share/doc/kmsd/README.md)"
install -m 0644 docs/*.md "$(dest /usr/share/doc/kmsd)"
install -m 0644 systemd/metrics.conf "$(dest /usr/share/doc/kmsd/examples/metrics.conf)"
install -m 0644 systemd/tcp-endpoint.conf "$(dest /usr/share/doc/kmsd/examples/tcp-endpoint.conf)"

# The config is the operator's: never overwrite it.
config=$(dest /etc/kmsd/kmsd.toml)
if [[ -e $config ]] && ! cmp -s packaging/kmsd.toml "$config"; then
    install -m 0644 packaging/kmsd.toml "$config.default"
    echo "install.sh: kept your $config; the new default is $config.default" >&2
else
    install -m 0644 packaging/kmsd.toml "$config"
fi

if [[ -d monitoring ]]; then
    while IFS= read -r -d '' file; do
        install -D -m 0644 "$file" "$(dest "/usr/share/kmsd/$file")"
    done < <(find monitoring -type f -print0)
fi

if [[ -z $DESTDIR ]]; then
    if command -v systemd-sysusers >/dev/null; then
        systemd-sysusers /usr/lib/sysusers.d/kmsd.conf
    fi
    if command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles --create /usr/lib/tmpfiles.d/kmsd.conf
    fi
    if [[ -d /run/systemd/system ]]; then
        systemctl daemon-reload
    fi
    echo "kmsd installed. Start it with: systemctl enable --now kmsd.socket"
fi
