//! The operation table: every fact the layers need about each operation kmsd serves, in
//! one place. Dispatch (blocking or not), audit (`readOnly`, which request fields may be
//! logged, whether the response is logged), policy (the IAM action), grants (whether a
//! grant can allow it), metering (its price class) and the KeyId resolver (which forms each
//! KeyId-like field accepts) all read this table; no other list of operations exists.
//!
//! Adding an operation: one entry here, its handler line in `server::dispatch`, one service
//! function, and its tests. The unit tests below check that every entry is complete.

/// Whether an operation may wait on the disk (and so runs on the blocking pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Memory and CPU only.
    Inline,
    /// Commits to the key database (or reads files).
    Blocking,
}

/// Which ways of naming a key a KeyId-like field accepts (AWS API reference, per parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyIdForms {
    /// Key ID or key ARN. An alias name or alias ARN is NotFoundException, as in AWS.
    KeyOnly,
    /// Key ID, key ARN, alias name or alias ARN.
    KeyOrAlias,
}

impl KeyIdForms {
    /// The forms as the README's API table writes them.
    pub fn describe(self) -> &'static str {
        match self {
            KeyIdForms::KeyOnly => "key ID or key ARN",
            KeyIdForms::KeyOrAlias => "key ID, key ARN, alias name or alias ARN",
        }
    }
}

/// How AWS prices a request (see the README, "Metering", and `../shared/REFERENCE.md`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PriceClass {
    /// Symmetric cryptographic and key-management requests ($0.03 per 10,000), HMAC
    /// requests included.
    Symmetric,
    /// Requests with asymmetric keys: Sign, Verify, GetPublicKey, DeriveSharedSecret ($0.15
    /// per 10,000, RSA_2048 keys $0.03; never in the free tier).
    Asymmetric,
    /// Requests with RSA_2048 keys that AWS prices as asymmetric ones at the lower RSA_2048
    /// rate ($0.03 per 10,000; never in the free tier). Never an operation's own class: the
    /// usage report refines `Asymmetric` (and the encryption operations) by the key's spec.
    AsymmetricRsa2048,
    /// GenerateDataKeyPair* (AWS: $0.10 per 10,000 for ECC pairs; never in the free tier).
    DataKeyPair,
    /// GenerateDataKeyPair* of an RSA pair ($12 per 10,000; never in the free tier). Never an
    /// operation's own class: metering refines `DataKeyPair` by the request's KeyPairSpec.
    DataKeyPairRsa,
    /// Not an AWS KMS request (kmsd extensions, unknown operations): counted, never priced.
    Unpriced,
}

impl PriceClass {
    /// The class as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceClass::Symmetric => "symmetric",
            PriceClass::Asymmetric => "asymmetric",
            PriceClass::AsymmetricRsa2048 => "asymmetric_rsa_2048",
            PriceClass::DataKeyPair => "data_key_pair",
            PriceClass::DataKeyPairRsa => "data_key_pair_rsa",
            PriceClass::Unpriced => "unpriced",
        }
    }
}

/// Which per-caller request quota an operation draws from (`[limits]`, as AWS KMS's request
/// quotas separate cryptographic operations from the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaClass {
    /// Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateRandom.
    Cryptographic,
    /// Everything else.
    Management,
}

/// What the audit trail may keep of a successful response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseLogging {
    /// Logged as `responseElements` (CloudTrail does so for this operation).
    Logged,
    /// Not logged (`responseElements: null`) though it holds no secret.
    NotLogged,
    /// Holds plaintext, ciphertext or random bytes: never passed to any observer, and its
    /// buffer is zeroized after it is written.
    Secret,
}

/// A KeyId-like request field and the forms it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyField {
    /// The request field (PascalCase, as on the wire).
    pub name: &'static str,
    /// The ways of naming a key it accepts.
    pub forms: KeyIdForms,
}

/// Which part of kmsd serves an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// The key service (`service::Kms`).
    Service,
    /// The usage ledger (`KmsdGetUsage`).
    Usage,
    /// The audit trail (`KmsdAuditVerify`).
    AuditVerify,
    /// The recovery escrow (`KmsdRecoveryInit`, `KmsdRecoveryStatus`, `KmsdRecoveryVerify`).
    Recovery,
    /// An online backup of the state dir (`KmsdBackup`).
    Backup,
    /// Nothing: the stand-in for a request that names no operation kmsd serves.
    Unknown,
}

/// Every fact about one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The name in `X-Amz-Target: TrentService.<name>`.
    pub name: &'static str,
    /// The IAM action a key policy names (`kms:<name>` for AWS operations).
    pub action: &'static str,
    /// Whether it may block on the disk.
    pub work: Work,
    /// Whether it changes state: audit `readOnly` is its negation, and its change is
    /// recorded in the trail before it is committed.
    pub mutating: bool,
    /// Request fields copied into the audit record (never a secret one).
    pub logged_fields: &'static [&'static str],
    /// Request fields holding secrets (never copied anywhere, zeroized after parsing).
    pub secret_fields: &'static [&'static str],
    /// What the trail keeps of the response.
    pub response: ResponseLogging,
    /// Its price class.
    pub price: PriceClass,
    /// The grant operations that allow it (empty: no grant can).
    pub grant_operations: &'static [&'static str],
    /// Whether it takes an encryption context (grant constraints apply to it).
    pub takes_context: bool,
    /// Its KeyId-like fields and the forms each accepts.
    pub key_fields: &'static [KeyField],
    /// Which part of kmsd serves it.
    pub handler: Handler,
    /// The per-caller request quota it draws from.
    pub quota: QuotaClass,
}

impl Operation {
    /// The forms `field` accepts; a field not in the table accepts key ids and key ARNs.
    pub fn key_forms(&self, field: &str) -> KeyIdForms {
        self.key_fields
            .iter()
            .find(|f| f.name == field)
            .map_or(KeyIdForms::KeyOnly, |f| f.forms)
    }

    /// Whether `field` is one of its secret request fields.
    pub fn is_secret_field(&self, field: &str) -> bool {
        self.secret_fields.contains(&field)
    }

    /// Whether this is an AWS KMS operation (not a kmsd extension).
    pub fn is_aws(&self) -> bool {
        self.handler == Handler::Service
    }
}

const KEY_ONLY: &[KeyField] = &[KeyField {
    name: "KeyId",
    forms: KeyIdForms::KeyOnly,
}];
const KEY_OR_ALIAS: &[KeyField] = &[KeyField {
    name: "KeyId",
    forms: KeyIdForms::KeyOrAlias,
}];
const TARGET_KEY_ONLY: &[KeyField] = &[KeyField {
    name: "TargetKeyId",
    forms: KeyIdForms::KeyOnly,
}];
const DATA_KEY_FIELDS: &[&str] = &[
    "KeyId",
    "EncryptionContext",
    "NumberOfBytes",
    "KeySpec",
    "GrantTokens",
    "DryRun",
];

/// An AWS operation with the defaults most share: the `kms:` action, inline, read-only,
/// KeyId as key id or key ARN, response not logged, priced as a symmetric request.
const fn aws(name: &'static str, action: &'static str) -> Operation {
    Operation {
        name,
        action,
        work: Work::Inline,
        mutating: false,
        logged_fields: &["KeyId"],
        secret_fields: &[],
        response: ResponseLogging::NotLogged,
        price: PriceClass::Symmetric,
        grant_operations: &[],
        takes_context: false,
        key_fields: KEY_ONLY,
        handler: Handler::Service,
        quota: QuotaClass::Management,
    }
}

/// A mutating AWS operation: commits to the key database.
const fn change(name: &'static str, action: &'static str) -> Operation {
    let mut op = aws(name, action);
    op.work = Work::Blocking;
    op.mutating = true;
    op
}

macro_rules! with {
    ($base:expr, $($field:ident: $value:expr),* $(,)?) => {{
        let mut op = $base;
        $(op.$field = $value;)*
        op
    }};
}

/// CreateKey.
pub const CREATE_KEY: Operation = with!(change("CreateKey", "kms:CreateKey"),
    logged_fields: &["Description", "KeyUsage", "KeySpec", "CustomerMasterKeySpec", "Origin",
        "Policy", "BypassPolicyLockoutSafetyCheck", "Tags", "MultiRegion", "CustomKeyStoreId",
        "XksKeyId"],
    response: ResponseLogging::Logged,
    key_fields: &[],
);
/// DescribeKey.
pub const DESCRIBE_KEY: Operation = with!(aws("DescribeKey", "kms:DescribeKey"),
    logged_fields: &["KeyId", "GrantTokens"],
    grant_operations: &["DescribeKey"],
    key_fields: KEY_OR_ALIAS,
);
/// ListKeys.
pub const LIST_KEYS: Operation = with!(aws("ListKeys", "kms:ListKeys"),
    logged_fields: &["Limit", "Marker"],
    key_fields: &[],
);
/// EnableKey.
pub const ENABLE_KEY: Operation = change("EnableKey", "kms:EnableKey");
/// DisableKey.
pub const DISABLE_KEY: Operation = change("DisableKey", "kms:DisableKey");
/// UpdateKeyDescription.
pub const UPDATE_KEY_DESCRIPTION: Operation = with!(
    change("UpdateKeyDescription", "kms:UpdateKeyDescription"),
    logged_fields: &["KeyId", "Description"],
);
/// ScheduleKeyDeletion.
pub const SCHEDULE_KEY_DELETION: Operation = with!(
    change("ScheduleKeyDeletion", "kms:ScheduleKeyDeletion"),
    logged_fields: &["KeyId", "PendingWindowInDays"],
    response: ResponseLogging::Logged,
);
/// CancelKeyDeletion.
pub const CANCEL_KEY_DELETION: Operation = with!(
    change("CancelKeyDeletion", "kms:CancelKeyDeletion"),
    response: ResponseLogging::Logged,
);
/// CreateAlias.
pub const CREATE_ALIAS: Operation = with!(change("CreateAlias", "kms:CreateAlias"),
    logged_fields: &["AliasName", "TargetKeyId"],
    key_fields: TARGET_KEY_ONLY,
);
/// UpdateAlias.
pub const UPDATE_ALIAS: Operation = with!(change("UpdateAlias", "kms:UpdateAlias"),
    logged_fields: &["AliasName", "TargetKeyId"],
    key_fields: TARGET_KEY_ONLY,
);
/// DeleteAlias.
pub const DELETE_ALIAS: Operation = with!(change("DeleteAlias", "kms:DeleteAlias"),
    logged_fields: &["AliasName"],
    key_fields: &[],
);
/// ListAliases.
pub const LIST_ALIASES: Operation = with!(aws("ListAliases", "kms:ListAliases"),
    logged_fields: &["KeyId", "Limit", "Marker"],
);
/// TagResource.
pub const TAG_RESOURCE: Operation = with!(change("TagResource", "kms:TagResource"),
    logged_fields: &["KeyId", "Tags"],
);
/// UntagResource.
pub const UNTAG_RESOURCE: Operation = with!(change("UntagResource", "kms:UntagResource"),
    logged_fields: &["KeyId", "TagKeys"],
);
/// ListResourceTags.
pub const LIST_RESOURCE_TAGS: Operation = with!(aws("ListResourceTags", "kms:ListResourceTags"),
    logged_fields: &["KeyId", "Limit", "Marker"],
);
/// Encrypt.
pub const ENCRYPT: Operation = with!(aws("Encrypt", "kms:Encrypt"),
    logged_fields: &["KeyId", "EncryptionContext", "GrantTokens", "EncryptionAlgorithm", "DryRun"],
    secret_fields: &["Plaintext"],
    response: ResponseLogging::Secret,
    grant_operations: &["Encrypt"],
    takes_context: true,
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// Decrypt.
pub const DECRYPT: Operation = with!(aws("Decrypt", "kms:Decrypt"),
    logged_fields: &["KeyId", "EncryptionContext", "GrantTokens", "EncryptionAlgorithm", "DryRun"],
    secret_fields: &["CiphertextBlob"],
    response: ResponseLogging::Secret,
    grant_operations: &["Decrypt"],
    takes_context: true,
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// ReEncrypt (authorized as `kms:ReEncryptFrom` on the source key and `kms:ReEncryptTo`
/// on the destination key).
pub const RE_ENCRYPT: Operation = with!(aws("ReEncrypt", "kms:ReEncrypt*"),
    logged_fields: &["SourceKeyId", "DestinationKeyId", "SourceEncryptionContext",
        "DestinationEncryptionContext", "SourceEncryptionAlgorithm",
        "DestinationEncryptionAlgorithm", "GrantTokens", "DryRun"],
    secret_fields: &["CiphertextBlob"],
    response: ResponseLogging::Secret,
    grant_operations: &["ReEncryptFrom", "ReEncryptTo"],
    takes_context: true,
    key_fields: &[
        KeyField { name: "SourceKeyId", forms: KeyIdForms::KeyOrAlias },
        KeyField { name: "DestinationKeyId", forms: KeyIdForms::KeyOrAlias },
    ],
    quota: QuotaClass::Cryptographic,
);
/// GenerateDataKey.
pub const GENERATE_DATA_KEY: Operation = with!(aws("GenerateDataKey", "kms:GenerateDataKey"),
    logged_fields: DATA_KEY_FIELDS,
    response: ResponseLogging::Secret,
    grant_operations: &["GenerateDataKey"],
    takes_context: true,
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GenerateDataKeyWithoutPlaintext.
pub const GENERATE_DATA_KEY_WITHOUT_PLAINTEXT: Operation = with!(
    aws("GenerateDataKeyWithoutPlaintext", "kms:GenerateDataKeyWithoutPlaintext"),
    logged_fields: DATA_KEY_FIELDS,
    response: ResponseLogging::Secret,
    grant_operations: &["GenerateDataKeyWithoutPlaintext"],
    takes_context: true,
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GenerateRandom.
pub const GENERATE_RANDOM: Operation = with!(aws("GenerateRandom", "kms:GenerateRandom"),
    logged_fields: &["NumberOfBytes", "CustomKeyStoreId"],
    response: ResponseLogging::Secret,
    key_fields: &[],
    quota: QuotaClass::Cryptographic,
);
/// EnableKeyRotation.
pub const ENABLE_KEY_ROTATION: Operation = with!(
    change("EnableKeyRotation", "kms:EnableKeyRotation"),
    logged_fields: &["KeyId", "RotationPeriodInDays"],
);
/// DisableKeyRotation.
pub const DISABLE_KEY_ROTATION: Operation = change("DisableKeyRotation", "kms:DisableKeyRotation");
/// GetKeyRotationStatus.
pub const GET_KEY_ROTATION_STATUS: Operation =
    aws("GetKeyRotationStatus", "kms:GetKeyRotationStatus");
/// RotateKeyOnDemand.
pub const ROTATE_KEY_ON_DEMAND: Operation = with!(
    change("RotateKeyOnDemand", "kms:RotateKeyOnDemand"),
    response: ResponseLogging::Logged,
);
/// ListKeyRotations.
pub const LIST_KEY_ROTATIONS: Operation = with!(aws("ListKeyRotations", "kms:ListKeyRotations"),
    logged_fields: &["KeyId", "Limit", "Marker"],
);
/// PutKeyPolicy.
pub const PUT_KEY_POLICY: Operation = with!(change("PutKeyPolicy", "kms:PutKeyPolicy"),
    logged_fields: &["KeyId", "PolicyName", "Policy", "BypassPolicyLockoutSafetyCheck"],
);
/// GetKeyPolicy.
pub const GET_KEY_POLICY: Operation = with!(aws("GetKeyPolicy", "kms:GetKeyPolicy"),
    logged_fields: &["KeyId", "PolicyName"],
);
/// ListKeyPolicies.
pub const LIST_KEY_POLICIES: Operation = with!(aws("ListKeyPolicies", "kms:ListKeyPolicies"),
    logged_fields: &["KeyId", "Limit", "Marker"],
);
/// CreateGrant.
pub const CREATE_GRANT: Operation = with!(change("CreateGrant", "kms:CreateGrant"),
    logged_fields: &["KeyId", "GranteePrincipal", "RetiringPrincipal", "Operations",
        "Constraints", "Name", "GrantTokens", "DryRun"],
    grant_operations: &["CreateGrant"],
);
/// ListGrants.
pub const LIST_GRANTS: Operation = with!(aws("ListGrants", "kms:ListGrants"),
    logged_fields: &["KeyId", "GrantId", "GranteePrincipal", "Limit", "Marker"],
);
/// ListRetirableGrants (no key: it lists by retiring principal).
pub const LIST_RETIRABLE_GRANTS: Operation = with!(
    aws("ListRetirableGrants", "kms:ListRetirableGrants"),
    logged_fields: &["RetiringPrincipal", "Limit", "Marker"],
    key_fields: &[],
);
/// RetireGrant (the grant token is not a secret: AWS logs it).
pub const RETIRE_GRANT: Operation = with!(change("RetireGrant", "kms:RetireGrant"),
    logged_fields: &["KeyId", "GrantId", "GrantToken", "DryRun"],
    grant_operations: &["RetireGrant"],
);
/// RevokeGrant.
pub const REVOKE_GRANT: Operation = with!(change("RevokeGrant", "kms:RevokeGrant"),
    logged_fields: &["KeyId", "GrantId", "DryRun"],
);
/// Sign (the message is never logged, as in CloudTrail). Blocking: a TPM-resident key
/// waits for the TPM.
pub const SIGN: Operation = with!(aws("Sign", "kms:Sign"),
    work: Work::Blocking,
    logged_fields: &["KeyId", "MessageType", "SigningAlgorithm", "GrantTokens", "DryRun"],
    secret_fields: &["Message"],
    price: PriceClass::Asymmetric,
    grant_operations: &["Sign"],
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// Verify.
pub const VERIFY: Operation = with!(aws("Verify", "kms:Verify"),
    logged_fields: &["KeyId", "MessageType", "SigningAlgorithm", "GrantTokens", "DryRun"],
    secret_fields: &["Message"],
    price: PriceClass::Asymmetric,
    grant_operations: &["Verify"],
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GetPublicKey.
pub const GET_PUBLIC_KEY: Operation = with!(aws("GetPublicKey", "kms:GetPublicKey"),
    logged_fields: &["KeyId", "GrantTokens"],
    price: PriceClass::Asymmetric,
    grant_operations: &["GetPublicKey"],
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GenerateMac (the message is never logged).
pub const GENERATE_MAC: Operation = with!(aws("GenerateMac", "kms:GenerateMac"),
    logged_fields: &["KeyId", "MacAlgorithm", "GrantTokens", "DryRun"],
    secret_fields: &["Message"],
    grant_operations: &["GenerateMac"],
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// VerifyMac.
pub const VERIFY_MAC: Operation = with!(aws("VerifyMac", "kms:VerifyMac"),
    logged_fields: &["KeyId", "MacAlgorithm", "GrantTokens", "DryRun"],
    secret_fields: &["Message"],
    grant_operations: &["VerifyMac"],
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GenerateDataKeyPair.
pub const GENERATE_DATA_KEY_PAIR: Operation = with!(
    aws("GenerateDataKeyPair", "kms:GenerateDataKeyPair"),
    logged_fields: &["KeyId", "EncryptionContext", "KeyPairSpec", "GrantTokens", "DryRun"],
    response: ResponseLogging::Secret,
    price: PriceClass::DataKeyPair,
    grant_operations: &["GenerateDataKeyPair"],
    takes_context: true,
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GenerateDataKeyPairWithoutPlaintext.
pub const GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT: Operation = with!(
    aws("GenerateDataKeyPairWithoutPlaintext", "kms:GenerateDataKeyPairWithoutPlaintext"),
    logged_fields: &["KeyId", "EncryptionContext", "KeyPairSpec", "GrantTokens", "DryRun"],
    response: ResponseLogging::Secret,
    price: PriceClass::DataKeyPair,
    grant_operations: &["GenerateDataKeyPairWithoutPlaintext"],
    takes_context: true,
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// DeriveSharedSecret (the shared secret is never logged).
pub const DERIVE_SHARED_SECRET: Operation = with!(
    aws("DeriveSharedSecret", "kms:DeriveSharedSecret"),
    logged_fields: &["KeyId", "KeyAgreementAlgorithm", "GrantTokens", "DryRun"],
    response: ResponseLogging::Secret,
    price: PriceClass::Asymmetric,
    grant_operations: &["DeriveSharedSecret"],
    key_fields: KEY_OR_ALIAS,
    quota: QuotaClass::Cryptographic,
);
/// GetParametersForImport: a new wrapping key pair and import token (the previous ones
/// stop being valid), kept durably, so it is a change (CloudTrail logs no response
/// elements; the token is never logged). Blocking: it makes an RSA key pair.
pub const GET_PARAMETERS_FOR_IMPORT: Operation = with!(
    change("GetParametersForImport", "kms:GetParametersForImport"),
    logged_fields: &["KeyId", "WrappingAlgorithm", "WrappingKeySpec"],
);
/// ImportKeyMaterial (the import token and the wrapped material are never logged).
pub const IMPORT_KEY_MATERIAL: Operation = with!(
    change("ImportKeyMaterial", "kms:ImportKeyMaterial"),
    logged_fields: &["KeyId", "ValidTo", "ExpirationModel", "ImportType",
        "KeyMaterialDescription", "KeyMaterialId"],
    secret_fields: &["ImportToken", "EncryptedKeyMaterial"],
);
/// DeleteImportedKeyMaterial.
pub const DELETE_IMPORTED_KEY_MATERIAL: Operation = with!(
    change("DeleteImportedKeyMaterial", "kms:DeleteImportedKeyMaterial"),
    logged_fields: &["KeyId", "KeyMaterialId"],
);
/// The kmsd extension `KmsdGetUsage`: a usage and cost report from the ledger.
pub const KMSD_GET_USAGE: Operation = with!(aws("KmsdGetUsage", "kmsd:GetUsage"),
    work: Work::Blocking,
    logged_fields: &["Month", "KeyId"],
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::Usage,
);
/// The kmsd extension `KmsdAuditVerify`: verifies the audit trail (root only).
pub const KMSD_AUDIT_VERIFY: Operation = with!(aws("KmsdAuditVerify", "kmsd:AuditVerify"),
    work: Work::Blocking,
    logged_fields: &["Files"],
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::AuditVerify,
);
/// The kmsd extension `KmsdRecoveryInit`: sets up (or replaces) the recovery escrow and
/// returns its shares once (root only).
pub const KMSD_RECOVERY_INIT: Operation = with!(change("KmsdRecoveryInit", "kmsd:RecoveryInit"),
    logged_fields: &["Recipients", "Shares", "Threshold", "Replace"],
    response: ResponseLogging::Secret,
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::Recovery,
);
/// The kmsd extension `KmsdRecoveryStatus`: whether an escrow is configured and when it
/// was last verified (root only).
pub const KMSD_RECOVERY_STATUS: Operation = with!(aws("KmsdRecoveryStatus", "kmsd:RecoveryStatus"),
    work: Work::Blocking,
    logged_fields: &[],
    response: ResponseLogging::Logged,
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::Recovery,
);
/// The kmsd extension `KmsdRecoveryVerify`: rehearses the unwrap of the escrow with the
/// operator's secret (never logged) and records when it succeeded (root only).
pub const KMSD_RECOVERY_VERIFY: Operation = with!(aws("KmsdRecoveryVerify", "kmsd:RecoveryVerify"),
    work: Work::Blocking,
    logged_fields: &[],
    secret_fields: &["Identity", "Shares", "RecoveryKey"],
    response: ResponseLogging::Logged,
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::Recovery,
);

/// The kmsd extension `KmsdBackup`: writes a consistent backup of the state dir into a new
/// directory while kmsd serves (root only). Changes nothing in the state dir; its point is
/// the `KmsdBackupPoint` record it writes to the trail.
pub const KMSD_BACKUP: Operation = with!(aws("KmsdBackup", "kmsd:Backup"),
    work: Work::Blocking,
    logged_fields: &["Directory"],
    response: ResponseLogging::Logged,
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::Backup,
);

/// The stand-in for a missing or unknown `X-Amz-Target` (not served; logs no parameters).
pub const UNKNOWN: Operation = with!(aws("Unknown", ""),
    logged_fields: &[],
    price: PriceClass::Unpriced,
    key_fields: &[],
    handler: Handler::Unknown,
);

/// Every operation kmsd serves.
pub const OPERATIONS: &[&Operation] = &[
    &CREATE_KEY,
    &DESCRIBE_KEY,
    &LIST_KEYS,
    &ENABLE_KEY,
    &DISABLE_KEY,
    &UPDATE_KEY_DESCRIPTION,
    &SCHEDULE_KEY_DELETION,
    &CANCEL_KEY_DELETION,
    &CREATE_ALIAS,
    &UPDATE_ALIAS,
    &DELETE_ALIAS,
    &LIST_ALIASES,
    &TAG_RESOURCE,
    &UNTAG_RESOURCE,
    &LIST_RESOURCE_TAGS,
    &ENCRYPT,
    &DECRYPT,
    &RE_ENCRYPT,
    &GENERATE_DATA_KEY,
    &GENERATE_DATA_KEY_WITHOUT_PLAINTEXT,
    &GENERATE_RANDOM,
    &ENABLE_KEY_ROTATION,
    &DISABLE_KEY_ROTATION,
    &GET_KEY_ROTATION_STATUS,
    &ROTATE_KEY_ON_DEMAND,
    &LIST_KEY_ROTATIONS,
    &PUT_KEY_POLICY,
    &GET_KEY_POLICY,
    &LIST_KEY_POLICIES,
    &CREATE_GRANT,
    &LIST_GRANTS,
    &LIST_RETIRABLE_GRANTS,
    &RETIRE_GRANT,
    &REVOKE_GRANT,
    &SIGN,
    &VERIFY,
    &GET_PUBLIC_KEY,
    &GENERATE_MAC,
    &VERIFY_MAC,
    &GENERATE_DATA_KEY_PAIR,
    &GENERATE_DATA_KEY_PAIR_WITHOUT_PLAINTEXT,
    &DERIVE_SHARED_SECRET,
    &GET_PARAMETERS_FOR_IMPORT,
    &IMPORT_KEY_MATERIAL,
    &DELETE_IMPORTED_KEY_MATERIAL,
    &KMSD_GET_USAGE,
    &KMSD_AUDIT_VERIFY,
    &KMSD_RECOVERY_INIT,
    &KMSD_RECOVERY_STATUS,
    &KMSD_RECOVERY_VERIFY,
    &KMSD_BACKUP,
];

/// The operation named `name`.
pub fn find(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().copied().find(|op| op.name == name)
}

/// Every grant operation some operation lists (the values CreateGrant's Operations accepts).
pub fn grant_operation_names() -> impl Iterator<Item = &'static str> {
    OPERATIONS
        .iter()
        .flat_map(|op| op.grant_operations.iter().copied())
}

/// Whether a grant operation belongs to an operation that takes an encryption context (a
/// grant with constraints may only allow those).
pub fn grant_operation_takes_context(name: &str) -> bool {
    OPERATIONS
        .iter()
        .any(|op| op.takes_context && op.grant_operations.contains(&name))
}

/// Every IAM action a key policy may name: the AWS operations' actions, with ReEncrypt's
/// two halves.
pub fn policy_actions() -> impl Iterator<Item = &'static str> {
    OPERATIONS.iter().filter(|op| op.is_aws()).flat_map(|op| {
        let split: &'static [&'static str] = if op.name == RE_ENCRYPT.name {
            &["kms:ReEncryptFrom", "kms:ReEncryptTo"]
        } else {
            &[]
        };
        let own = (split.is_empty()).then_some(op.action);
        own.into_iter().chain(split.iter().copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_entry_is_complete_and_unique() {
        let mut names = HashSet::new();
        for op in OPERATIONS {
            assert!(names.insert(op.name), "{} is listed twice", op.name);
            assert!(find(op.name) == Some(*op));
            if op.is_aws() && op.name != RE_ENCRYPT.name {
                assert_eq!(op.action, format!("kms:{}", op.name), "{}", op.name);
            }
            for field in op.secret_fields {
                assert!(
                    !op.logged_fields.contains(field),
                    "{}: {field} is secret and logged",
                    op.name
                );
            }
            for field in op.key_fields {
                assert!(
                    op.logged_fields.contains(&field.name),
                    "{}: {} is a key field but not logged",
                    op.name,
                    field.name
                );
            }
            if op.mutating {
                assert_eq!(
                    op.work,
                    Work::Blocking,
                    "{}: a mutation commits to disk",
                    op.name
                );
                // KmsdRecoveryInit returns the recovery shares: a change with a secret answer.
                if op.is_aws() {
                    assert_ne!(op.response, ResponseLogging::Secret, "{}", op.name);
                }
            }
            if op.takes_context {
                assert!(
                    op.logged_fields
                        .iter()
                        .any(|f| f.ends_with("EncryptionContext")),
                    "{}",
                    op.name
                );
            }
            // kmsd extensions without parameters (or with secret ones only) log none.
            assert!(
                !op.logged_fields.is_empty() || !op.is_aws(),
                "{}: nothing is logged",
                op.name
            );
        }
    }

    #[test]
    fn key_id_forms_follow_the_api_reference() {
        let alias_ok = [
            "DescribeKey",
            "Encrypt",
            "Decrypt",
            "ReEncrypt",
            "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext",
            "Sign",
            "Verify",
            "GetPublicKey",
            "GenerateMac",
            "VerifyMac",
            "GenerateDataKeyPair",
            "GenerateDataKeyPairWithoutPlaintext",
            "DeriveSharedSecret",
        ];
        for op in OPERATIONS {
            for field in op.key_fields {
                let expected = if alias_ok.contains(&op.name) {
                    KeyIdForms::KeyOrAlias
                } else {
                    KeyIdForms::KeyOnly
                };
                assert_eq!(field.forms, expected, "{}.{}", op.name, field.name);
            }
        }
        assert_eq!(
            SCHEDULE_KEY_DELETION.key_forms("KeyId"),
            KeyIdForms::KeyOnly
        );
        assert_eq!(CREATE_ALIAS.key_forms("TargetKeyId"), KeyIdForms::KeyOnly);
        assert_eq!(
            RE_ENCRYPT.key_forms("DestinationKeyId"),
            KeyIdForms::KeyOrAlias
        );
    }

    #[test]
    fn mutations_are_the_state_changing_operations() {
        let mutating: Vec<_> = OPERATIONS
            .iter()
            .filter(|op| op.mutating)
            .map(|op| op.name)
            .collect();
        for name in [
            "PutKeyPolicy",
            "CreateGrant",
            "RetireGrant",
            "RevokeGrant",
            "CreateKey",
            "ScheduleKeyDeletion",
            "GetParametersForImport",
            "ImportKeyMaterial",
            "DeleteImportedKeyMaterial",
        ] {
            assert!(mutating.contains(&name), "{name} must not be readOnly");
        }
        for name in [
            "Encrypt",
            "Decrypt",
            "ListKeys",
            "DescribeKey",
            "GetKeyPolicy",
            "ListGrants",
        ] {
            assert!(!mutating.contains(&name), "{name} is read-only");
        }
    }

    #[test]
    fn grant_and_policy_names() {
        let grants: Vec<_> = grant_operation_names().collect();
        assert_eq!(
            grants,
            [
                "DescribeKey",
                "Encrypt",
                "Decrypt",
                "ReEncryptFrom",
                "ReEncryptTo",
                "GenerateDataKey",
                "GenerateDataKeyWithoutPlaintext",
                "CreateGrant",
                "RetireGrant",
                "Sign",
                "Verify",
                "GetPublicKey",
                "GenerateMac",
                "VerifyMac",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
                "DeriveSharedSecret"
            ]
        );
        assert!(grant_operation_takes_context("ReEncryptTo"));
        assert!(!grant_operation_takes_context("DescribeKey"));
        assert!(!grant_operation_takes_context("Sign"));
        let actions: Vec<_> = policy_actions().collect();
        assert!(actions.contains(&"kms:ReEncryptFrom") && actions.contains(&"kms:ReEncryptTo"));
        assert!(!actions.contains(&"kms:ReEncrypt*"));
        assert!(!actions.iter().any(|a| a.starts_with("kmsd:")));
        assert_eq!(
            actions.len(),
            OPERATIONS.iter().filter(|op| op.is_aws()).count() + 1
        );
    }

    #[test]
    fn the_readme_api_table_lists_every_operation_with_its_key_id_forms() {
        let readme = include_str!("../../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|line| !line.starts_with("| operation | KeyId forms |"))
            .take_while(|line| line.starts_with('|'))
            .collect();
        assert!(!table.is_empty(), "README has no API table");
        for op in OPERATIONS.iter().filter(|op| op.is_aws()) {
            let row = table
                .iter()
                .find(|row| {
                    row.split('|')
                        .nth(1)
                        .is_some_and(|names| names.split(',').any(|name| name.trim() == op.name))
                })
                .unwrap_or_else(|| panic!("README API table has no row for {}", op.name));
            let forms = row.split('|').nth(2).unwrap_or("").trim();
            match op.key_fields.first() {
                None => assert_eq!(forms, "—", "{}", op.name),
                Some(field) => assert!(
                    forms.ends_with(field.forms.describe()),
                    "{}: README says '{forms}', the table says {}",
                    op.name,
                    field.forms.describe()
                ),
            }
        }
    }
}
