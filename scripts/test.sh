#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real swtpm processes,
# real kmsd processes and real sockets. Installs missing Debian packages first, and builds
# the Rust AWS SDK interop check (scripts/build-interop.sh) that tests/tcp_endpoint.rs runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
KMSD_RUST_SDK_CLIENT="$(scripts/build-interop.sh)"
export KMSD_RUST_SDK_CLIENT
export TSS2_LOG=all+NONE
cargo test --locked --all-targets "$@"
