//! Key policies for Unix principals: the policy document (AWS key-policy shape, with
//! `{"Unix": {...}}` principals and `kmsd:Caller*` condition keys), its strict parser, and
//! its evaluation (explicit Deny, then Allow, else implicit deny; missing facts fail
//! closed). Pure functions, no I/O; the service layer applies them. See `docs/policies.md`.

mod document;
mod eval;
mod glob;

pub use document::{
    default_policy_text, parse, Condition, ConditionKey, Effect, Operator, PolicyDocument,
    PolicyError, Principal, SetQualifier, Statement, UnixPrincipal, KNOWN_ACTIONS,
    MAX_POLICY_BYTES,
};
pub use eval::{
    condition_holds, evaluate, key_values, principal_matches, Decision, Request, Truth,
};
