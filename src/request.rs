//! One request as every layer below the server sees it, without any HTTP type: the call
//! (who asks, which operation, the parameters the trail may keep, the keys it touched), the
//! finished event that observers (audit, metering) are shown, and the two small traits
//! through which they watch: [`Observer`] for finished requests and [`ChangeGate`] for
//! changes, which must be on the trail before they are committed.

use crate::api::operations::Operation;
use crate::identity::Caller;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A key a request acted on (for the trail's `resources` and for metering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// The key id.
    pub key_id: String,
    /// The alias the caller named it by, if any.
    pub alias: Option<String>,
}

/// Why a request failed, as the client is told (no secret is ever part of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The AWS exception name (`__type`).
    pub exception: &'static str,
    /// The message.
    pub message: String,
    /// The HTTP status.
    pub status: u16,
}

/// A service event: a change kmsd makes by itself (automatic rotation, the destruction of
/// a key after its deletion window), recorded like CloudTrail's `AwsServiceEvent`.
#[derive(Debug, Clone)]
pub struct ServiceEvent {
    /// `RotateKey` or `DeleteKey`, as CloudTrail names them.
    pub name: &'static str,
    /// The key it changes.
    pub key_id: String,
    /// When, on the service clock (milliseconds since the epoch).
    pub time_ms: i64,
    /// What happened, for the record (no secret).
    pub details: serde_json::Value,
}

/// Records changes on the trail before they are committed (implemented by the audit
/// trail). Each method blocks until the record is durable and returns its sequence number,
/// which the key database stores in the same transaction as the change.
pub trait ChangeGate: Send + Sync + Debug {
    /// The intent record of a request that is about to commit a change.
    fn request_intent(&self, call: &Call) -> Result<u64, String>;
    /// A service event, written before its change is committed.
    fn service_event(&self, event: &ServiceEvent) -> Result<u64, String>;
    /// The outcome of a service event's change, written after the commit attempt.
    fn service_outcome(
        &self,
        intent_sequence: u64,
        event: &ServiceEvent,
        outcome: Result<(), &str>,
    );
}

/// One call of an operation: everything known about the request before it runs, and what
/// the operation records as it runs (the keys it touched, the intent record of its change).
#[derive(Debug)]
pub struct Call {
    /// Who asks (kernel-verified).
    pub caller: Arc<Caller>,
    /// The operation's table entry.
    pub operation: &'static Operation,
    /// `x-amzn-RequestId`.
    pub request_id: String,
    /// When the request arrived (milliseconds since the epoch, service clock).
    pub event_time_ms: i64,
    /// The request parameters the trail may keep, built from the operation's allow-list.
    pub logged_parameters: serde_json::Value,
    touched: Mutex<Touched>,
    gate: Option<Arc<dyn ChangeGate>>,
}

#[derive(Debug, Default)]
struct Touched {
    keys: Vec<KeyRef>,
    intent_sequence: Option<u64>,
}

impl Call {
    /// A call of `operation` by `caller`; `gate` records its change, if any, before commit.
    pub fn new(
        caller: Arc<Caller>,
        operation: &'static Operation,
        request_id: String,
        event_time_ms: i64,
        logged_parameters: serde_json::Value,
        gate: Option<Arc<dyn ChangeGate>>,
    ) -> Call {
        Call {
            caller,
            operation,
            request_id,
            event_time_ms,
            logged_parameters,
            touched: Mutex::new(Touched::default()),
            gate,
        }
    }

    fn touched(&self) -> std::sync::MutexGuard<'_, Touched> {
        self.touched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Notes that the call acts on `key` (the first mention of a key id wins).
    pub fn touch(&self, key: KeyRef) {
        let mut touched = self.touched();
        if !touched.keys.iter().any(|k| k.key_id == key.key_id) {
            touched.keys.push(key);
        }
    }

    /// The keys the call acted on, in the order it named them.
    pub fn keys(&self) -> Vec<KeyRef> {
        self.touched().keys.clone()
    }

    /// Writes the intent record of this call's change and returns its sequence number
    /// (None when no trail is kept). Err: the change must not be committed.
    pub fn record_intent(&self) -> Result<Option<u64>, String> {
        let Some(gate) = &self.gate else {
            return Ok(None);
        };
        let sequence = gate.request_intent(self)?;
        self.touched().intent_sequence = Some(sequence);
        Ok(Some(sequence))
    }

    /// The sequence number of this call's intent record, once written.
    pub fn intent_sequence(&self) -> Option<u64> {
        self.touched().intent_sequence
    }
}

/// One finished request, as observers see it. Holds no secret: the parameters come from
/// the operation's allow-list, and the response body only for operations whose response
/// the trail logs.
#[derive(Debug)]
pub struct RequestEvent<'a> {
    /// The call.
    pub call: &'a Call,
    /// The operation name the client sent when it is not one kmsd serves (bounded).
    pub unknown_target: Option<&'a str>,
    /// The JSON response body on success, when the operation's response may be logged.
    pub response_body: Option<&'a [u8]>,
    /// Why it failed, if it did.
    pub error: Option<&'a Failure>,
    /// Time from arrival to the end of the operation.
    pub duration: Duration,
}

/// What an observer's work on one event comes to: Ok, or the reason the request must now
/// be refused (the audit trail could not write its record).
pub type Observed = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Watches every finished request (audit trail, metering).
pub trait Observer: Send + Sync + Debug {
    /// Whether a new request may run at all (fail closed); Err names why not.
    fn admit(&self) -> Result<(), String> {
        Ok(())
    }
    /// Takes note of a finished request. The response waits for the returned future.
    fn observe(&self, event: &RequestEvent<'_>) -> Observed;
}

/// The health of the audit trail, as metrics show it.
pub trait TrailHealth: Send + Sync + Debug {
    /// Records written since start.
    fn records_written(&self) -> u64;
    /// Records that could not be written since start.
    fn write_failures(&self) -> u64;
    /// False while the trail cannot be written.
    fn is_healthy(&self) -> bool;
}
