//! `kmsctl encrypt-file` and `kmsctl decrypt-file`: files and streams in the AWS Encryption
//! SDK message format (`kmsd::envelope`), with a kmsd key as the wrapping key. Messages are
//! interchangeable with the AWS Encryption SDKs and `aws-encryption-cli` pointed at kmsd.
//!
//! A named output is written to a temporary file beside it and renamed into place only when
//! the whole message was written (encrypt) or verified, signature included (decrypt), so no
//! partial or unverified output ever has the final name.

use crate::params::ParamError;
use crate::Failure;
use clap::Args;
use kmsd::client::Client;
use kmsd::crypto::EncryptionContext;
use kmsd::envelope::{
    AlgorithmSuite, DecryptOptions, EncryptOptions, Encryptor, EnvelopeError, KeyFilter,
    ParsedMessage, DEFAULT_FRAME_LENGTH, DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Buffer size of the input and output streams.
const BUFFER: usize = 64 * 1024;

/// `kmsctl encrypt-file`.
#[derive(Debug, Args)]
#[command(
    after_help = "The output is an AWS Encryption SDK message (format version 2, framed; \
    suite 0x0578 signs it with ECDSA P-384). `aws-encryption-cli --decrypt` and the AWS \
    Encryption SDKs decrypt it when their KMS client reaches kmsd. A named output file appears \
    only once the whole message is written."
)]
pub struct EncryptFileArgs {
    /// The KMS key: key id, key ARN, alias name or alias ARN (GenerateDataKey's KeyId).
    #[arg(long, value_name = "KEY_ID")]
    key_id: String,
    /// The plaintext: a file, or - for stdin.
    #[arg(short, long, value_name = "PATH|-")]
    input: String,
    /// Where the message goes: a file (written beside it under a temporary name, then
    /// renamed), or - for stdout. (kmsctl's --output names the response format, so the file
    /// option is --out, short -o as in aws-encryption-cli.)
    #[arg(short = 'o', long = "out", value_name = "PATH|-")]
    out: String,
    /// A pair of the encryption context, bound to the message and stored in its header
    /// (in the clear); repeat it, or give several. Keys may not begin with aws-crypto-.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = context_pair)]
    encryption_context: Vec<(String, String)>,
    /// Plaintext bytes per frame.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_FRAME_LENGTH)]
    frame_length: u32,
    /// The algorithm suite: 0x0578 (AES-256-GCM, HKDF-SHA512, key commitment, ECDSA P-384
    /// signature) or 0x0478 (the same without the signature).
    #[arg(long, value_name = "SUITE", default_value = "0x0578", value_parser = suite)]
    algorithm: AlgorithmSuite,
}

/// `kmsctl decrypt-file`.
#[derive(Debug, Args)]
#[command(
    after_help = "Decryption refuses messages of format version 1 and algorithm suites \
    without key commitment (commitment policy REQUIRE_ENCRYPT_REQUIRE_DECRYPT), and checks the \
    key commitment, the header's tag, every frame's tag and sequence number, and the signature."
)]
pub struct DecryptFileArgs {
    /// A key ARN the message's data key may be decrypted with (strict mode); repeat it for
    /// several. ARNs, not aliases: the message records the ARN.
    #[arg(long, value_name = "KEY_ARN", num_args = 1.., required_unless_present = "discovery",
          conflicts_with = "discovery")]
    key_id: Vec<String>,
    /// Discovery mode: use any key of --discovery-partition and a --discovery-account that
    /// the message names, instead of --key-id.
    #[arg(long, requires_all = ["discovery_partition", "discovery_account"])]
    discovery: bool,
    /// The ARN partition discovery accepts (kmsd's ARNs: arn:kmsd:...).
    #[arg(long, value_name = "PARTITION", requires = "discovery")]
    discovery_partition: Option<String>,
    /// An account discovery accepts; repeat it for several.
    #[arg(long, value_name = "ACCOUNT", num_args = 1.., requires = "discovery")]
    discovery_account: Vec<String>,
    /// The message: a file, or - for stdin.
    #[arg(short, long, value_name = "PATH|-")]
    input: String,
    /// Where the plaintext goes. A file is written under a temporary name beside it and
    /// renamed only after the whole message verified, signature included. With - (stdout)
    /// each frame's plaintext is released as soon as its own tag verifies, BEFORE the
    /// signature over the whole message is checked (as aws-encryption-cli without --buffer):
    /// a failed check still exits non-zero, but the plaintext already written is out.
    #[arg(short = 'o', long = "out", value_name = "PATH|-")]
    out: String,
    /// A pair the message's encryption context must contain; repeat it, or give several.
    #[arg(long, value_name = "KEY=VALUE", num_args = 1.., value_parser = context_pair)]
    encryption_context: Vec<(String, String)>,
    /// The most encrypted data keys a message may carry (a message with more is refused
    /// before any is decrypted).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ENCRYPTED_DATA_KEYS)]
    max_encrypted_data_keys: u16,
}

fn context_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

fn suite(text: &str) -> Result<AlgorithmSuite, String> {
    AlgorithmSuite::parse(text).map_err(|err| err.to_string())
}

fn context_of(pairs: &[(String, String)], option: &str) -> Result<EncryptionContext, ParamError> {
    let mut context = EncryptionContext::new();
    for (key, value) in pairs {
        if context.insert(key.clone(), value.clone()).is_some() {
            return Err(ParamError::new(
                option,
                format!("key '{key}' is given twice"),
            ));
        }
    }
    Ok(context)
}

fn failure(err: EnvelopeError) -> Failure {
    match (err.exception(), &err) {
        (Some(exception), EnvelopeError::GenerateDataKey { source, .. }) => Failure::Service {
            operation: "GenerateDataKey".into(),
            exception: exception.to_string(),
            message: source.message.clone(),
        },
        _ => Failure::Other(err.to_string()),
    }
}

/// Opens the input: a file, or stdin for `-`.
fn open_input(path: &str) -> Result<Box<dyn Read>, Failure> {
    if path == "-" {
        return Ok(Box::new(BufReader::with_capacity(BUFFER, std::io::stdin())));
    }
    let file = File::open(path)
        .map_err(|err| Failure::Other(format!("cannot open --input {path}: {err}")))?;
    Ok(Box::new(BufReader::with_capacity(BUFFER, file)))
}

/// A file being written under a temporary name beside its final one; removed on drop unless
/// [`Staged::commit`] renamed it into place.
struct Staged {
    temporary: PathBuf,
    target: PathBuf,
    file: Option<File>,
}

impl Staged {
    fn create(target: &str, mode: u32) -> Result<Staged, Failure> {
        let target = PathBuf::from(target);
        let name = target
            .file_name()
            .ok_or_else(|| Failure::Other(format!("--out {} names no file", target.display())))?;
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let suffix = hex::encode(&kmsd::crypto::random_bytes(6)[..]);
        let temporary = dir.join(format!(".{}.kmsctl-{suffix}.tmp", name.to_string_lossy()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)
            .map_err(|err| {
                Failure::Other(format!(
                    "cannot create a temporary file in {}: {err}",
                    dir.display()
                ))
            })?;
        Ok(Staged {
            temporary,
            target,
            file: Some(file),
        })
    }

    fn writer(&mut self) -> Result<BufWriter<&mut File>, Failure> {
        self.file
            .as_mut()
            .map(|file| BufWriter::with_capacity(BUFFER, file))
            .ok_or_else(|| Failure::Other("the output file is closed".into()))
    }

    /// Flushes to disk and renames the file to its final name.
    fn commit(mut self) -> Result<(), Failure> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Failure::Other("the output file is closed".into()))?;
        let fail = |what: &str, err: std::io::Error, path: &Path| {
            Failure::Other(format!("{what} {}: {err}", path.display()))
        };
        file.sync_all()
            .map_err(|err| fail("cannot write", err, &self.temporary))?;
        drop(file);
        std::fs::rename(&self.temporary, &self.target)
            .map_err(|err| fail("cannot rename the output to", err, &self.target))?;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// `kmsctl encrypt-file`.
pub async fn encrypt_file(client: &Client, args: &EncryptFileArgs) -> Result<(), Failure> {
    let options = EncryptOptions {
        suite: args.algorithm,
        frame_length: args.frame_length,
        context: context_of(&args.encryption_context, "--encryption-context")?,
    };
    let input = open_input(&args.input)?;
    let encryptor = Encryptor::new(client, &args.key_id, options)
        .await
        .map_err(failure)?;
    if args.out == "-" {
        let stdout = std::io::stdout().lock();
        encryptor
            .encrypt(input, BufWriter::with_capacity(BUFFER, stdout))
            .map_err(failure)?;
        return Ok(());
    }
    let mut staged = Staged::create(&args.out, 0o644)?;
    encryptor
        .encrypt(input, staged.writer()?)
        .map_err(failure)?;
    staged.commit()
}

/// `kmsctl decrypt-file`.
pub async fn decrypt_file(client: &Client, args: &DecryptFileArgs) -> Result<(), Failure> {
    let filter = if args.discovery {
        KeyFilter::Discovery {
            partition: args.discovery_partition.clone().unwrap_or_default(),
            accounts: args.discovery_account.clone(),
        }
    } else {
        KeyFilter::Strict(args.key_id.clone())
    };
    if let Err(err) = filter.validate() {
        let option = if args.discovery {
            "--discovery"
        } else {
            "--key-id"
        };
        return Err(ParamError::new(option, err.to_string()).into());
    }
    let mut options = DecryptOptions::new(filter);
    options.required_context = context_of(&args.encryption_context, "--encryption-context")?;
    options.max_encrypted_data_keys = args.max_encrypted_data_keys;
    let input = open_input(&args.input)?;
    let message = ParsedMessage::read_header(input, options).map_err(failure)?;
    let message = message.unlock(client).await.map_err(failure)?;
    if args.out == "-" {
        let stdout = std::io::stdout().lock();
        message
            .decrypt_to(BufWriter::with_capacity(BUFFER, stdout))
            .map_err(failure)?;
        return Ok(());
    }
    let mut staged = Staged::create(&args.out, 0o600)?;
    message.decrypt_to(staged.writer()?).map_err(failure)?;
    staged.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn context_pairs() {
        assert_eq!(context_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(context_pair("a="), Ok(("a".into(), String::new())));
        assert!(context_pair("=b").is_err());
        assert!(context_pair("ab").is_err());
        let twice = [("a".to_string(), "1".to_string()), ("a".into(), "2".into())];
        assert!(context_of(&twice, "--encryption-context").is_err());
    }

    #[test]
    fn staged_files_appear_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let target_text = target.to_str().unwrap().to_string();
        {
            let mut staged = Staged::create(&target_text, 0o600).unwrap();
            staged.writer().unwrap().write_all(b"partial").unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut staged = Staged::create(&target_text, 0o600).unwrap();
        {
            let mut writer = staged.writer().unwrap();
            writer.write_all(b"whole").unwrap();
            writer.flush().unwrap();
        }
        assert!(!target.exists());
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
