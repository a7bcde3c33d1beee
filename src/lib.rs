//! kmsd: a key management service for one Linux host, with AWS KMS semantics on a Unix
//! socket and key material rooted in the host's TPM 2.0.
//!
//! One request is one trip down this path and back:
//!
//! ```text
//! client ─Unix socket─▶ server: transport (limits, /ping, /metrics) ─▶ protocol (decode; the
//!                       one error → AWS exception mapping) ─▶ dispatch (the operation table,
//!                       api::operations) ─▶ service (one method per operation)
//!                         ├─▶ policy (who may: a pure function of one catalog snapshot)
//!                         ├─▶ keystore (SQLite; every row HMAC-tagged; material only wrapped)
//!                         └─▶ crypto (ciphertext format, HKDF, AES-256-GCM)
//! observers of each finished request (request::Observer): audit (hash-chained, MAC-ed
//! record, fsynced before the reply; a change's intent record before its commit), then
//! metering (usage ledger, cost model, Prometheus).
//! tpm: one thread owns the TPM context; it unseals the root key at start-up, and a health
//! monitor pings it with deadlines.
//! ```
//!
//! Each layer has one error enum; only `server::protocol` turns errors into AWS exception
//! names. Dependencies point down: nothing below `server` imports it, and `config`,
//! `request` and `api` import no layer above them.
//!
//! The lint list (no `unsafe`, docs on every public item, no `unwrap` outside tests, ...) is
//! the `[lints]` table of `Cargo.toml`.

pub mod api;
pub mod audit;
pub mod backup;
pub mod client;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod envelope;
pub mod identity;
pub mod keystore;
pub mod metering;
pub mod policy;
pub mod recovery;
pub mod reload;
pub mod request;
pub mod server;
pub mod service;
pub mod systemd;
pub mod tpm;
