//! kmsd: a key management service for one Linux host, with AWS KMS semantics on a Unix
//! socket and key material rooted in the host's TPM 2.0.
//!
//! One request is one trip down this path and back:
//!
//! ```text
//! client ─Unix socket─▶ server (HTTP/1.1, AWS JSON 1.1, peer credentials = identity)
//!                         └─▶ service (one method per operation; AWS bounds and key states)
//!                               ├─▶ keystore (SQLite records; material only wrapped)
//!                               └─▶ crypto (ciphertext format, HKDF, AES-256-GCM)
//!                         └─▶ audit (one hash-chained, MAC-ed record per request, fsynced before the reply)
//! metering: every finished request is counted (usage ledger, cost model, Prometheus).
//! tpm: one thread owns the TPM context; it seals and unseals the root key at start-up only.
//! ```
//!
//! Each layer has one error enum; only `server::http` turns errors into AWS exception names.

//! The lint list (no `unsafe`, docs on every public item, no `unwrap` outside tests, ...) is
//! the `[lints]` table of `Cargo.toml`.

pub mod api;
pub mod audit;
pub mod client;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod identity;
pub mod keystore;
pub mod metering;
pub mod policy;
pub mod reload;
pub mod request;
pub mod server;
pub mod service;
pub mod systemd;
pub mod tpm;
