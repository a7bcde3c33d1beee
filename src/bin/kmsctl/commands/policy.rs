//! Subcommands of key policies and grants (README, "Access control"): put/get/list-key-policies,
//! create/list/retire/revoke grants.

use super::{flag, DryRunArgs, PagingArgs, Request, KEY_ID_HELP};
use crate::commands::Call;
use crate::params::{Inputs, ParamError};
use clap::{Args, Subcommand};

/// Key policy and grant subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replaces a key's policy (PutKeyPolicy); --policy takes JSON text, file://PATH or -.
    PutKeyPolicy(PutKeyPolicyArgs),
    /// Shows a key's policy (GetKeyPolicy).
    GetKeyPolicy(PolicyNameArgs),
    /// Lists a key's policy names, always "default" (ListKeyPolicies).
    ListKeyPolicies(PolicyNameArgs),
    /// Gives a Unix principal some operations on a key (CreateGrant).
    CreateGrant(CreateGrantArgs),
    /// Lists a key's grants (ListGrants); all pages unless --limit or --marker.
    ListGrants(ListGrantsArgs),
    /// Lists the grants a principal may retire (ListRetirableGrants).
    ListRetirableGrants(ListRetirableGrantsArgs),
    /// Retires a grant, by token or by key and grant id (RetireGrant).
    RetireGrant(RetireGrantArgs),
    /// Revokes a grant (RevokeGrant).
    RevokeGrant(RevokeGrantArgs),
}

#[derive(Debug, Args)]
pub struct PutKeyPolicyArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The policy document.
    #[arg(long)]
    policy: String,
    /// The policy name; the only one is "default".
    #[arg(long)]
    policy_name: Option<String>,
    /// Skip the check that you can still change the policy afterwards.
    #[arg(long)]
    bypass_policy_lockout_safety_check: bool,
}

#[derive(Debug, Args)]
pub struct PolicyNameArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    #[arg(long)]
    policy_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CreateGrantArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// uid:N, user:NAME, gid:N, group:NAME, unit:UNIT or exe:/PATH.
    #[arg(long)]
    grantee_principal: String,
    #[arg(long)]
    retiring_principal: Option<String>,
    /// Operations, e.g. Decrypt Encrypt.
    #[arg(long, num_args = 1.., required = true)]
    operations: Vec<String>,
    /// JSON {"EncryptionContextSubset": {...}} or {"EncryptionContextEquals": {...}}.
    #[arg(long)]
    constraints: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct ListGrantsArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    #[arg(long)]
    grant_id: Option<String>,
    #[arg(long)]
    grantee_principal: Option<String>,
    #[command(flatten)]
    paging: PagingArgs,
}

#[derive(Debug, Args)]
pub struct ListRetirableGrantsArgs {
    #[arg(long)]
    retiring_principal: String,
    #[command(flatten)]
    paging: PagingArgs,
}

#[derive(Debug, Args)]
pub struct RetireGrantArgs {
    #[arg(long)]
    grant_token: Option<String>,
    #[arg(long)]
    key_id: Option<String>,
    #[arg(long)]
    grant_id: Option<String>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct RevokeGrantArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    #[arg(long)]
    grant_id: String,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

impl PolicyCommand {
    /// The operation and request this subcommand sends.
    pub fn call(&self, inputs: &mut Inputs<'_>) -> Result<Call, ParamError> {
        use PolicyCommand as P;
        Ok(match self {
            P::PutKeyPolicy(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("Policy", inputs.text("--policy", &a.policy)?)
                .opt("PolicyName", a.policy_name.as_deref())
                .opt(
                    "BypassPolicyLockoutSafetyCheck",
                    a.bypass_policy_lockout_safety_check.then_some(true),
                )
                .call("PutKeyPolicy"),
            P::GetKeyPolicy(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .opt("PolicyName", a.policy_name.as_deref())
                .call("GetKeyPolicy"),
            P::ListKeyPolicies(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .call("ListKeyPolicies"),
            P::CreateGrant(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("GranteePrincipal", a.grantee_principal.as_str())
                .opt("RetiringPrincipal", a.retiring_principal.as_deref())
                .set("Operations", a.operations.clone())
                .opt(
                    "Constraints",
                    a.constraints
                        .as_deref()
                        .map(|c| inputs.json("--constraints", c))
                        .transpose()?,
                )
                .opt("Name", a.name.as_deref())
                .opt("GrantTokens", a.grant_tokens.clone())
                .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                .call("CreateGrant"),
            P::ListGrants(a) => a.paging.apply(
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .opt("GrantId", a.grant_id.as_deref())
                    .opt("GranteePrincipal", a.grantee_principal.as_deref()),
                "ListGrants",
                "Grants",
            ),
            P::ListRetirableGrants(a) => a.paging.apply(
                Request::new().set("RetiringPrincipal", a.retiring_principal.as_str()),
                "ListRetirableGrants",
                "Grants",
            ),
            P::RetireGrant(a) => Request::new()
                .opt("GrantToken", a.grant_token.as_deref())
                .opt("KeyId", a.key_id.as_deref())
                .opt("GrantId", a.grant_id.as_deref())
                .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                .call("RetireGrant"),
            P::RevokeGrant(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("GrantId", a.grant_id.as_str())
                .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                .call("RevokeGrant"),
        })
    }
}
