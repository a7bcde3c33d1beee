#!/usr/bin/env bash
# Builds the interop check interop/aws-sdk-rust (kmsd-sdk-check: the unchanged Rust aws-sdk-kms
# against kmsd's loopback TCP endpoint) and prints the binary's absolute path on stdout.
# scripts/test.sh runs it and exports the path as KMSD_RUST_SDK_CLIENT for
# tests/tcp_endpoint.rs. The crate is its own workspace with its own Cargo.lock and target/,
# so kmsd never depends on the SDK.
#
# Debug profile: a clean debug build is faster than a release one on 2 cores, and the check
# makes a handful of requests, so optimisation buys nothing (INTEROP_PROFILE=release to change).
set -euo pipefail
cd "$(dirname "$0")/../interop/aws-sdk-rust"
profile="${INTEROP_PROFILE:-dev}"
case "$profile" in
    dev) dir=debug ;;
    release) dir=release ;;
    *) echo "INTEROP_PROFILE must be dev or release, not $profile" >&2; exit 2 ;;
esac
# Cargo's progress goes to stderr; stdout carries only the path.
cargo build --locked --profile "$profile" --bin kmsd-sdk-check >&2
binary="$PWD/target/$dir/kmsd-sdk-check"
test -x "$binary"
echo "$binary"
