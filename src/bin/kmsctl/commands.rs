//! The `aws kms`-shaped subcommands: one clap struct per argument shape, and for each
//! subcommand the operation it calls and the request it sends. Options are the kebab-case
//! spelling of the AWS request fields (`--pending-window-in-days` is `PendingWindowInDays`).

mod policy;

use crate::params::{Inputs, ParamError};
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

/// One request to send.
#[derive(Debug)]
pub struct Call {
    /// The operation, e.g. `Encrypt`.
    pub operation: String,
    /// The request body.
    pub request: Value,
    /// For list operations paginated automatically: the field whose lists are joined
    /// (e.g. `Keys`); `None` sends one request and shows its response as is.
    pub paginate: Option<&'static str>,
}

/// Builds a request body field by field; `None` fields are left out.
struct Request(Map<String, Value>);

impl Request {
    fn new() -> Self {
        Request(Map::new())
    }

    fn set(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.0.insert(field.to_string(), value.into());
        self
    }

    fn opt(self, field: &str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(value) => self.set(field, value),
            None => self,
        }
    }

    fn call(self, operation: &str) -> Call {
        Call {
            operation: operation.to_string(),
            request: Value::Object(self.0),
            paginate: None,
        }
    }
}

/// `--flag` / `--no-flag` pairs, as aws cli spells booleans.
fn flag(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// The `aws kms` subcommands kmsd serves.
#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Creates a KMS key (CreateKey).
    CreateKey(CreateKeyArgs),
    /// Shows a key's metadata (DescribeKey).
    DescribeKey(DescribeKeyArgs),
    /// Lists the keys (ListKeys); all pages unless --limit or --marker is given.
    ListKeys(PagingArgs),
    /// Enables a key (EnableKey).
    EnableKey(KeyIdArgs),
    /// Disables a key (DisableKey).
    DisableKey(KeyIdArgs),
    /// Replaces a key's description (UpdateKeyDescription).
    UpdateKeyDescription(UpdateKeyDescriptionArgs),
    /// Schedules a key's deletion after a waiting period (ScheduleKeyDeletion).
    ScheduleKeyDeletion(ScheduleKeyDeletionArgs),
    /// Cancels a scheduled deletion; the key is left disabled (CancelKeyDeletion).
    CancelKeyDeletion(KeyIdArgs),
    /// Creates an alias for a key (CreateAlias).
    CreateAlias(AliasArgs),
    /// Points an alias at another key (UpdateAlias).
    UpdateAlias(AliasArgs),
    /// Deletes an alias (DeleteAlias).
    DeleteAlias(DeleteAliasArgs),
    /// Lists aliases, all or one key's (ListAliases); all pages unless --limit or --marker.
    ListAliases(ListAliasesArgs),
    /// Adds or overwrites tags on a key (TagResource).
    TagResource(TagResourceArgs),
    /// Removes tags from a key (UntagResource).
    UntagResource(UntagResourceArgs),
    /// Lists a key's tags (ListResourceTags); all pages unless --limit or --marker.
    ListResourceTags(KeyListArgs),
    /// Encrypts up to 4096 bytes under a key (Encrypt).
    Encrypt(EncryptArgs),
    /// Decrypts a ciphertext (Decrypt); the Plaintext field of the answer is base64.
    Decrypt(DecryptArgs),
    /// Decrypts and encrypts again under another key, without exposing the plaintext
    /// (ReEncrypt).
    ReEncrypt(ReEncryptArgs),
    /// Returns a data key in plaintext and encrypted under a key (GenerateDataKey).
    GenerateDataKey(GenerateDataKeyArgs),
    /// Returns a data key encrypted under a key only (GenerateDataKeyWithoutPlaintext).
    GenerateDataKeyWithoutPlaintext(GenerateDataKeyArgs),
    /// Returns random bytes, base64 (GenerateRandom).
    GenerateRandom(GenerateRandomArgs),
    /// Turns on automatic rotation of a key's material (EnableKeyRotation).
    EnableKeyRotation(EnableKeyRotationArgs),
    /// Turns off automatic rotation (DisableKeyRotation).
    DisableKeyRotation(KeyIdArgs),
    /// Shows whether and when a key rotates (GetKeyRotationStatus).
    GetKeyRotationStatus(KeyIdArgs),
    /// Rotates a key's material now (RotateKeyOnDemand).
    RotateKeyOnDemand(KeyIdArgs),
    /// Lists a key's completed rotations (ListKeyRotations); all pages unless --limit or
    /// --marker.
    ListKeyRotations(KeyListArgs),
    /// Signs a message or its digest with an asymmetric key (Sign).
    Sign(SignArgs),
    /// Checks a signature; a bad one is KMSInvalidSignatureException (Verify).
    Verify(VerifyArgs),
    /// Returns the public key of an asymmetric key, DER SubjectPublicKeyInfo (GetPublicKey).
    GetPublicKey(GetPublicKeyArgs),
    /// Computes the HMAC of a message with an HMAC key (GenerateMac).
    GenerateMac(GenerateMacArgs),
    /// Checks a MAC; a bad one is KMSInvalidMacException (VerifyMac).
    VerifyMac(VerifyMacArgs),
    /// Returns a new key pair: the private key in plaintext and encrypted under a key, and
    /// the public key (GenerateDataKeyPair).
    GenerateDataKeyPair(GenerateDataKeyPairArgs),
    /// As generate-data-key-pair, without the plaintext private key
    /// (GenerateDataKeyPairWithoutPlaintext).
    GenerateDataKeyPairWithoutPlaintext(GenerateDataKeyPairArgs),
    /// ECDH between a KEY_AGREEMENT key and a peer's public key (DeriveSharedSecret).
    DeriveSharedSecret(DeriveSharedSecretArgs),
    /// Returns a wrapping public key and an import token for a key with Origin EXTERNAL,
    /// valid 24 hours (GetParametersForImport).
    GetParametersForImport(GetParametersForImportArgs),
    /// Imports key material wrapped under the wrapping public key (ImportKeyMaterial).
    ImportKeyMaterial(ImportKeyMaterialArgs),
    /// Deletes a key's imported material; the key becomes PendingImport
    /// (DeleteImportedKeyMaterial).
    DeleteImportedKeyMaterial(KeyIdArgs),
    #[command(flatten)]
    Policy(policy::PolicyCommand),
}

impl KmsCommand {
    /// The operation and request this subcommand sends. Files and stdin named by the
    /// arguments are read here, before anything is sent.
    pub fn call(&self, inputs: &mut Inputs<'_>) -> Result<Call, ParamError> {
        use KmsCommand as C;
        Ok(match self {
            C::CreateKey(a) => {
                let tags = if a.tags.is_empty() {
                    None
                } else {
                    Some(inputs.tags("--tags", &a.tags)?)
                };
                let policy = a
                    .policy
                    .as_deref()
                    .map(|p| inputs.text("--policy", p))
                    .transpose()?;
                Request::new()
                    .opt("Description", a.description.as_deref())
                    .opt("KeyUsage", a.key_usage.as_deref())
                    .opt("KeySpec", a.key_spec.as_deref())
                    .opt(
                        "CustomerMasterKeySpec",
                        a.customer_master_key_spec.as_deref(),
                    )
                    .opt("Origin", a.origin.as_deref())
                    .opt("CustomKeyStoreId", a.custom_key_store_id.as_deref())
                    .opt("Policy", policy)
                    .opt(
                        "BypassPolicyLockoutSafetyCheck",
                        flag(
                            a.bypass_policy_lockout_safety_check,
                            a.no_bypass_policy_lockout_safety_check,
                        ),
                    )
                    .opt("Tags", tags)
                    .opt("MultiRegion", flag(a.multi_region, a.no_multi_region))
                    .call("CreateKey")
            }
            C::DescribeKey(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .opt("GrantTokens", a.grant_tokens.clone())
                .call("DescribeKey"),
            C::ListKeys(p) => p.apply(Request::new(), "ListKeys", "Keys"),
            C::EnableKey(a) => a.call("EnableKey"),
            C::DisableKey(a) => a.call("DisableKey"),
            C::UpdateKeyDescription(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("Description", a.description.as_str())
                .call("UpdateKeyDescription"),
            C::ScheduleKeyDeletion(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .opt("PendingWindowInDays", a.pending_window_in_days)
                .call("ScheduleKeyDeletion"),
            C::CancelKeyDeletion(a) => a.call("CancelKeyDeletion"),
            C::CreateAlias(a) => a.call("CreateAlias"),
            C::UpdateAlias(a) => a.call("UpdateAlias"),
            C::DeleteAlias(a) => Request::new()
                .set("AliasName", a.alias_name.as_str())
                .call("DeleteAlias"),
            C::ListAliases(a) => a.paging.apply(
                Request::new().opt("KeyId", a.key_id.as_deref()),
                "ListAliases",
                "Aliases",
            ),
            C::TagResource(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("Tags", inputs.tags("--tags", &a.tags)?)
                .call("TagResource"),
            C::UntagResource(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("TagKeys", a.tag_keys.clone())
                .call("UntagResource"),
            C::ListResourceTags(a) => a.apply("ListResourceTags", "Tags"),
            C::Encrypt(a) => {
                let plaintext = inputs.blob("--plaintext", &a.plaintext)?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("Plaintext", plaintext.as_str())
                    .opt(
                        "EncryptionContext",
                        context(inputs, "--encryption-context", &a.encryption_context)?,
                    )
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("EncryptionAlgorithm", a.encryption_algorithm.as_deref())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("Encrypt")
            }
            C::Decrypt(a) => {
                let ciphertext = inputs.blob("--ciphertext-blob", &a.ciphertext_blob)?;
                Request::new()
                    .set("CiphertextBlob", ciphertext.as_str())
                    .opt(
                        "EncryptionContext",
                        context(inputs, "--encryption-context", &a.encryption_context)?,
                    )
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("KeyId", a.key_id.as_deref())
                    .opt("EncryptionAlgorithm", a.encryption_algorithm.as_deref())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("Decrypt")
            }
            C::ReEncrypt(a) => {
                let ciphertext = inputs.blob("--ciphertext-blob", &a.ciphertext_blob)?;
                Request::new()
                    .set("CiphertextBlob", ciphertext.as_str())
                    .opt(
                        "SourceEncryptionContext",
                        context(
                            inputs,
                            "--source-encryption-context",
                            &a.source_encryption_context,
                        )?,
                    )
                    .opt("SourceKeyId", a.source_key_id.as_deref())
                    .set("DestinationKeyId", a.destination_key_id.as_str())
                    .opt(
                        "DestinationEncryptionContext",
                        context(
                            inputs,
                            "--destination-encryption-context",
                            &a.destination_encryption_context,
                        )?,
                    )
                    .opt(
                        "SourceEncryptionAlgorithm",
                        a.source_encryption_algorithm.as_deref(),
                    )
                    .opt(
                        "DestinationEncryptionAlgorithm",
                        a.destination_encryption_algorithm.as_deref(),
                    )
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("ReEncrypt")
            }
            C::GenerateDataKey(a) => a.call(inputs, "GenerateDataKey")?,
            C::GenerateDataKeyWithoutPlaintext(a) => {
                a.call(inputs, "GenerateDataKeyWithoutPlaintext")?
            }
            C::GenerateRandom(a) => Request::new()
                .opt("NumberOfBytes", a.number_of_bytes)
                .opt("CustomKeyStoreId", a.custom_key_store_id.as_deref())
                .call("GenerateRandom"),
            C::EnableKeyRotation(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .opt("RotationPeriodInDays", a.rotation_period_in_days)
                .call("EnableKeyRotation"),
            C::DisableKeyRotation(a) => a.call("DisableKeyRotation"),
            C::GetKeyRotationStatus(a) => a.call("GetKeyRotationStatus"),
            C::RotateKeyOnDemand(a) => a.call("RotateKeyOnDemand"),
            C::ListKeyRotations(a) => a.apply("ListKeyRotations", "Rotations"),
            C::Sign(a) => {
                let message = inputs.blob("--message", &a.message)?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("Message", message.as_str())
                    .opt("MessageType", a.message_type.as_deref())
                    .set("SigningAlgorithm", a.signing_algorithm.as_str())
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("Sign")
            }
            C::Verify(a) => {
                let message = inputs.blob("--message", &a.message)?;
                let signature = inputs.blob("--signature", &a.signature)?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("Message", message.as_str())
                    .opt("MessageType", a.message_type.as_deref())
                    .set("Signature", signature.as_str())
                    .set("SigningAlgorithm", a.signing_algorithm.as_str())
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("Verify")
            }
            C::GenerateDataKeyPair(a) => a.call(inputs, "GenerateDataKeyPair")?,
            C::GenerateDataKeyPairWithoutPlaintext(a) => {
                a.call(inputs, "GenerateDataKeyPairWithoutPlaintext")?
            }
            C::DeriveSharedSecret(a) => {
                let public_key = inputs.blob("--public-key", &a.public_key)?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("KeyAgreementAlgorithm", a.key_agreement_algorithm.as_str())
                    .set("PublicKey", public_key.as_str())
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("DeriveSharedSecret")
            }
            C::GetPublicKey(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .opt("GrantTokens", a.grant_tokens.clone())
                .call("GetPublicKey"),
            C::GenerateMac(a) => {
                let message = inputs.blob("--message", &a.message)?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("Message", message.as_str())
                    .set("MacAlgorithm", a.mac_algorithm.as_str())
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("GenerateMac")
            }
            C::VerifyMac(a) => {
                let message = inputs.blob("--message", &a.message)?;
                let mac = inputs.blob("--mac", &a.mac)?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("Message", message.as_str())
                    .set("MacAlgorithm", a.mac_algorithm.as_str())
                    .set("Mac", mac.as_str())
                    .opt("GrantTokens", a.grant_tokens.clone())
                    .opt("DryRun", flag(a.dry_run.dry_run, a.dry_run.no_dry_run))
                    .call("VerifyMac")
            }
            C::GetParametersForImport(a) => Request::new()
                .set("KeyId", a.key_id.as_str())
                .set("WrappingAlgorithm", a.wrapping_algorithm.as_str())
                .set("WrappingKeySpec", a.wrapping_key_spec.as_str())
                .call("GetParametersForImport"),
            C::ImportKeyMaterial(a) => {
                let token = inputs.blob("--import-token", &a.import_token)?;
                let material =
                    inputs.blob("--encrypted-key-material", &a.encrypted_key_material)?;
                let valid_to = a
                    .valid_to
                    .as_deref()
                    .map(|v| epoch_seconds("--valid-to", v))
                    .transpose()?;
                Request::new()
                    .set("KeyId", a.key_id.as_str())
                    .set("ImportToken", token.as_str())
                    .set("EncryptedKeyMaterial", material.as_str())
                    .opt("ExpirationModel", a.expiration_model.as_deref())
                    .opt("ValidTo", valid_to)
                    .call("ImportKeyMaterial")
            }
            C::DeleteImportedKeyMaterial(a) => a.call("DeleteImportedKeyMaterial"),
            C::Policy(p) => p.call(inputs)?,
        })
    }
}

fn context(
    inputs: &mut Inputs<'_>,
    param: &str,
    value: &Option<String>,
) -> Result<Option<Value>, ParamError> {
    value
        .as_deref()
        .map(|v| inputs.context(param, v))
        .transpose()
}

/// A timestamp as aws cli takes it: epoch seconds, or an RFC 3339 date and time
/// (`2026-01-31T12:00:00Z`).
fn epoch_seconds(param: &str, value: &str) -> Result<f64, ParamError> {
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() {
            return Ok(seconds);
        }
    }
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
        .map_err(|_| {
            ParamError::new(
                param,
                format!("'{value}' is neither epoch seconds nor an RFC 3339 time (2026-01-31T12:00:00Z)"),
            )
        })
}

/// Help for every `--key-id`.
const KEY_ID_HELP: &str = "The key: key ID, key ARN, alias name (alias/NAME) or alias ARN";

#[derive(Debug, Args)]
pub struct KeyIdArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
}

impl KeyIdArgs {
    fn call(&self, operation: &str) -> Call {
        Request::new()
            .set("KeyId", self.key_id.as_str())
            .call(operation)
    }
}

#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// A description of the key (up to 8192 characters).
    #[arg(long, allow_hyphen_values = true)]
    description: Option<String>,
    /// ENCRYPT_DECRYPT (default), SIGN_VERIFY or GENERATE_VERIFY_MAC.
    #[arg(long)]
    key_usage: Option<String>,
    /// SYMMETRIC_DEFAULT (default), RSA_2048|3072|4096, ECC_NIST_P256|P384|P521,
    /// ECC_SECG_P256K1, ECC_NIST_EDWARDS25519, ML_DSA_44|65|87, HMAC_224|256|384|512.
    #[arg(long)]
    key_spec: Option<String>,
    /// Deprecated spelling of --key-spec.
    #[arg(long, hide = true)]
    customer_master_key_spec: Option<String>,
    /// AWS_KMS (default), EXTERNAL (no material until it is imported), or AWS_CLOUDHSM
    /// with --custom-key-store-id cks-tpm.
    #[arg(long)]
    origin: Option<String>,
    /// cks-tpm: the private key is created in the TPM and never leaves it (RSA_2048 and
    /// ECC_NIST_P256 SIGN_VERIFY keys).
    #[arg(long)]
    custom_key_store_id: Option<String>,
    /// A key policy document (text, or file://PATH).
    #[arg(long)]
    policy: Option<String>,
    #[arg(
        long,
        hide = true,
        overrides_with = "no_bypass_policy_lockout_safety_check"
    )]
    bypass_policy_lockout_safety_check: bool,
    #[arg(
        long,
        hide = true,
        overrides_with = "bypass_policy_lockout_safety_check"
    )]
    no_bypass_policy_lockout_safety_check: bool,
    /// Tags: TagKey=KEY,TagValue=VALUE ... or a JSON array of {"TagKey":..,"TagValue":..}.
    #[arg(long, num_args = 1.., value_name = "TAG")]
    tags: Vec<String>,
    /// Create a multi-Region key.
    #[arg(long, overrides_with = "no_multi_region")]
    multi_region: bool,
    /// Create a single-Region key (the default).
    #[arg(long, overrides_with = "multi_region")]
    no_multi_region: bool,
}

#[derive(Debug, Args)]
pub struct DescribeKeyArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
}

/// Paging options of the list operations. Without --limit and --marker, kmsctl fetches
/// every page and joins them, as aws cli does.
#[derive(Debug, Args)]
pub struct PagingArgs {
    /// Most items in the response; one request, response shown as is.
    #[arg(long, allow_negative_numbers = true)]
    limit: Option<i64>,
    /// The NextMarker of a previous response; one request, response shown as is.
    #[arg(long)]
    marker: Option<String>,
    /// Items per request while fetching all pages (sent as Limit).
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["limit", "marker"])]
    page_size: Option<i64>,
}

impl PagingArgs {
    fn apply(&self, request: Request, operation: &str, items: &'static str) -> Call {
        let single = self.limit.is_some() || self.marker.is_some();
        let mut call = request
            .opt("Limit", self.limit.or(self.page_size))
            .opt("Marker", self.marker.as_deref())
            .call(operation);
        if !single {
            call.paginate = Some(items);
        }
        call
    }
}

#[derive(Debug, Args)]
pub struct ListAliasesArgs {
    /// Only the aliases of this key (key ID or key ARN).
    #[arg(long)]
    key_id: Option<String>,
    #[command(flatten)]
    paging: PagingArgs,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    #[command(flatten)]
    paging: PagingArgs,
}

impl KeyListArgs {
    fn apply(&self, operation: &str, items: &'static str) -> Call {
        self.paging.apply(
            Request::new().set("KeyId", self.key_id.as_str()),
            operation,
            items,
        )
    }
}

#[derive(Debug, Args)]
pub struct UpdateKeyDescriptionArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The new description.
    #[arg(long, allow_hyphen_values = true)]
    description: String,
}

#[derive(Debug, Args)]
pub struct ScheduleKeyDeletionArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Days before deletion, 7-30 (default 30).
    #[arg(long, allow_negative_numbers = true)]
    pending_window_in_days: Option<i64>,
}

#[derive(Debug, Args)]
pub struct AliasArgs {
    /// The alias, alias/NAME.
    #[arg(long)]
    alias_name: String,
    /// The key it names: key ID or key ARN.
    #[arg(long)]
    target_key_id: String,
}

impl AliasArgs {
    fn call(&self, operation: &str) -> Call {
        Request::new()
            .set("AliasName", self.alias_name.as_str())
            .set("TargetKeyId", self.target_key_id.as_str())
            .call(operation)
    }
}

#[derive(Debug, Args)]
pub struct DeleteAliasArgs {
    /// The alias, alias/NAME.
    #[arg(long)]
    alias_name: String,
}

#[derive(Debug, Args)]
pub struct TagResourceArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Tags: TagKey=KEY,TagValue=VALUE ... or a JSON array of {"TagKey":..,"TagValue":..}.
    #[arg(long, required = true, num_args = 1.., value_name = "TAG")]
    tags: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UntagResourceArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Tag keys to remove (space-separated).
    #[arg(long, required = true, num_args = 1.., value_name = "KEY")]
    tag_keys: Vec<String>,
}

/// `--dry-run` / `--no-dry-run`.
#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// Check the request without performing it (fails with DryRunOperationException when
    /// it would succeed).
    #[arg(long, overrides_with = "no_dry_run")]
    dry_run: bool,
    #[arg(long, hide = true, overrides_with = "dry_run")]
    no_dry_run: bool,
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The data: base64 text, or fileb://PATH for a file's raw bytes (fileb://- = stdin).
    #[arg(long, value_name = "BLOB")]
    plaintext: String,
    /// Encryption context: k1=v1,k2=v2 or a JSON object.
    #[arg(long, value_name = "CONTEXT")]
    encryption_context: Option<String>,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    /// SYMMETRIC_DEFAULT (default), or RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256 with an RSA key.
    #[arg(long)]
    encryption_algorithm: Option<String>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The ciphertext: base64 text, or fileb://PATH for a file's raw bytes (fileb://- =
    /// stdin).
    #[arg(long, value_name = "BLOB")]
    ciphertext_blob: String,
    /// The encryption context the data was encrypted with: k1=v1,k2=v2 or a JSON object.
    #[arg(long, value_name = "CONTEXT")]
    encryption_context: Option<String>,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    /// Fail unless the ciphertext was made with this key.
    #[arg(long)]
    key_id: Option<String>,
    /// SYMMETRIC_DEFAULT (default), or RSAES_OAEP_SHA_1 / RSAES_OAEP_SHA_256 with an RSA key.
    #[arg(long)]
    encryption_algorithm: Option<String>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct ReEncryptArgs {
    /// The ciphertext: base64 text, or fileb://PATH for a file's raw bytes (fileb://- =
    /// stdin).
    #[arg(long, value_name = "BLOB")]
    ciphertext_blob: String,
    /// The encryption context the data was encrypted with.
    #[arg(long, value_name = "CONTEXT")]
    source_encryption_context: Option<String>,
    /// Fail unless the ciphertext was made with this key.
    #[arg(long)]
    source_key_id: Option<String>,
    /// The key to encrypt under.
    #[arg(long)]
    destination_key_id: String,
    /// The encryption context of the new ciphertext.
    #[arg(long, value_name = "CONTEXT")]
    destination_encryption_context: Option<String>,
    /// SYMMETRIC_DEFAULT.
    #[arg(long)]
    source_encryption_algorithm: Option<String>,
    /// SYMMETRIC_DEFAULT.
    #[arg(long)]
    destination_encryption_algorithm: Option<String>,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct GenerateDataKeyArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Encryption context: k1=v1,k2=v2 or a JSON object.
    #[arg(long, value_name = "CONTEXT")]
    encryption_context: Option<String>,
    /// Length of the data key in bytes (1-1024); or use --key-spec.
    #[arg(long, allow_negative_numbers = true)]
    number_of_bytes: Option<i64>,
    /// AES_256 or AES_128; or use --number-of-bytes.
    #[arg(long)]
    key_spec: Option<String>,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

impl GenerateDataKeyArgs {
    fn call(&self, inputs: &mut Inputs<'_>, operation: &str) -> Result<Call, ParamError> {
        Ok(Request::new()
            .set("KeyId", self.key_id.as_str())
            .opt(
                "EncryptionContext",
                context(inputs, "--encryption-context", &self.encryption_context)?,
            )
            .opt("NumberOfBytes", self.number_of_bytes)
            .opt("KeySpec", self.key_spec.as_deref())
            .opt("GrantTokens", self.grant_tokens.clone())
            .opt(
                "DryRun",
                flag(self.dry_run.dry_run, self.dry_run.no_dry_run),
            )
            .call(operation))
    }
}

#[derive(Debug, Args)]
pub struct GenerateRandomArgs {
    /// How many bytes (1-1024).
    #[arg(long, allow_negative_numbers = true)]
    number_of_bytes: Option<i64>,
    /// Not supported by kmsd.
    #[arg(long, hide = true)]
    custom_key_store_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct EnableKeyRotationArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Days between rotations, 90-2560 (default 365).
    #[arg(long, allow_negative_numbers = true)]
    rotation_period_in_days: Option<i64>,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The message (RAW, up to 4096 bytes) or its digest (DIGEST): base64 text, or
    /// fileb://PATH for a file's raw bytes (fileb://- = stdin).
    #[arg(long, value_name = "BLOB")]
    message: String,
    /// RAW (default) or DIGEST.
    #[arg(long)]
    message_type: Option<String>,
    /// One of the key's SigningAlgorithms, e.g. ECDSA_SHA_256 or RSASSA_PSS_SHA_256.
    #[arg(long)]
    signing_algorithm: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The message or its digest, as for sign.
    #[arg(long, value_name = "BLOB")]
    message: String,
    /// RAW (default) or DIGEST.
    #[arg(long)]
    message_type: Option<String>,
    /// The signature: base64 text, or fileb://PATH.
    #[arg(long, value_name = "BLOB")]
    signature: String,
    /// The algorithm the signature was made with.
    #[arg(long)]
    signing_algorithm: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct GetPublicKeyArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
}

#[derive(Debug, Args)]
pub struct GenerateMacArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The message (up to 4096 bytes): base64 text, or fileb://PATH.
    #[arg(long, value_name = "BLOB")]
    message: String,
    /// The key's MacAlgorithm: HMAC_SHA_224, HMAC_SHA_256, HMAC_SHA_384 or HMAC_SHA_512.
    #[arg(long)]
    mac_algorithm: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct VerifyMacArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// The message: base64 text, or fileb://PATH.
    #[arg(long, value_name = "BLOB")]
    message: String,
    /// The key's MacAlgorithm.
    #[arg(long)]
    mac_algorithm: String,
    /// The MAC: base64 text, or fileb://PATH.
    #[arg(long, value_name = "BLOB")]
    mac: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct GenerateDataKeyPairArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521 or
    /// ECC_SECG_P256K1.
    #[arg(long)]
    key_pair_spec: String,
    /// Encryption context: k1=v1,k2=v2 or a JSON object.
    #[arg(long, value_name = "CONTEXT")]
    encryption_context: Option<String>,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

impl GenerateDataKeyPairArgs {
    fn call(&self, inputs: &mut Inputs<'_>, operation: &str) -> Result<Call, ParamError> {
        Ok(Request::new()
            .set("KeyId", self.key_id.as_str())
            .set("KeyPairSpec", self.key_pair_spec.as_str())
            .opt(
                "EncryptionContext",
                context(inputs, "--encryption-context", &self.encryption_context)?,
            )
            .opt("GrantTokens", self.grant_tokens.clone())
            .opt(
                "DryRun",
                flag(self.dry_run.dry_run, self.dry_run.no_dry_run),
            )
            .call(operation))
    }
}

#[derive(Debug, Args)]
pub struct DeriveSharedSecretArgs {
    #[arg(long, help = KEY_ID_HELP)]
    key_id: String,
    /// ECDH.
    #[arg(long)]
    key_agreement_algorithm: String,
    /// The peer's public key, DER SubjectPublicKeyInfo: base64 text, or fileb://PATH.
    #[arg(long, value_name = "BLOB")]
    public_key: String,
    /// Grant tokens (space-separated).
    #[arg(long, num_args = 1..)]
    grant_tokens: Option<Vec<String>>,
    #[command(flatten)]
    dry_run: DryRunArgs,
}

#[derive(Debug, Args)]
pub struct GetParametersForImportArgs {
    /// The key (Origin EXTERNAL): key ID or key ARN.
    #[arg(long)]
    key_id: String,
    /// RSAES_OAEP_SHA_256, RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or
    /// RSA_AES_KEY_WRAP_SHA_1 (RSA key material needs an RSA_AES_KEY_WRAP one).
    #[arg(long)]
    wrapping_algorithm: String,
    /// RSA_2048, RSA_3072 or RSA_4096.
    #[arg(long)]
    wrapping_key_spec: String,
}

#[derive(Debug, Args)]
pub struct ImportKeyMaterialArgs {
    /// The key (Origin EXTERNAL): key ID or key ARN.
    #[arg(long)]
    key_id: String,
    /// The import token of get-parameters-for-import: fileb://PATH, or base64 text.
    #[arg(long, value_name = "BLOB")]
    import_token: String,
    /// The key material wrapped under the wrapping public key: fileb://PATH, or base64
    /// text.
    #[arg(long, value_name = "BLOB")]
    encrypted_key_material: String,
    /// KEY_MATERIAL_EXPIRES (needs --valid-to) or KEY_MATERIAL_DOES_NOT_EXPIRE (the
    /// default without --valid-to).
    #[arg(long)]
    expiration_model: Option<String>,
    /// When the material expires: epoch seconds or RFC 3339 (2026-01-31T12:00:00Z), at
    /// most 365 days ahead.
    #[arg(long)]
    valid_to: Option<String>,
}
