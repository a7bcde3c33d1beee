//! TPM and TSS error codes in words, for logs and error messages.
//!
//! tss-esapi's own `Display` says only `response code not recognized` for every code of
//! the TSS layers (TCTI, SAPI, ESAPI, ...), which are exactly the codes a lost or hung TPM
//! produces. [`describe`] names the layer and the code and always adds the raw value in
//! hex: `TPM_RC_RETRY (0x922): the TPM was not able to start the command`, or
//! `TCTI: I/O error (0xa000a)`.

use std::fmt;

use tss_esapi::constants::response_code::{Tss2ResponseCode, Tss2ResponseCodeKind};

/// A `tss_esapi::Error` shown as words plus the raw code (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct Described<'a>(pub &'a tss_esapi::Error);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            tss_esapi::Error::WrapperError(kind) => write!(f, "tss-esapi: {kind}"),
            tss_esapi::Error::Tss2Error(code) => describe_code(*code, f),
        }
    }
}

/// The words for `error` (see the module doc).
pub fn describe(error: &tss_esapi::Error) -> String {
    Described(error).to_string()
}

/// The raw 32-bit TSS2_RC of a response code. tss-esapi 7 keeps the field private; its
/// `Display` of both formats is `Response code value: 0x...`, which is parsed back.
pub fn raw_code(code: Tss2ResponseCode) -> Option<u32> {
    let text = match code {
        Tss2ResponseCode::Success => return Some(0),
        Tss2ResponseCode::FormatZero(rc) => rc.to_string(),
        Tss2ResponseCode::FormatOne(rc) => rc.to_string(),
    };
    let hex = text.rsplit("0x").next()?;
    u32::from_str_radix(hex.trim(), 16).ok()
}

fn describe_code(code: Tss2ResponseCode, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(raw) = raw_code(code) else {
        return write!(f, "{code}");
    };
    let layer = (raw >> 16) & 0xff;
    let hex = format!("0x{raw:x}");
    match layer {
        // The TPM itself, or a TPM code passed on by the resource manager.
        0 | 12 => {
            let name = code
                .kind()
                .map(tpm_rc_name)
                .unwrap_or_else(|| "TPM_RC_UNKNOWN".to_string());
            let words = if code.kind().is_some() {
                code.to_string()
            } else {
                "code not known to tss-esapi".to_string()
            };
            let prefix = if layer == 12 {
                "resource manager (TPM code): "
            } else {
                ""
            };
            write!(f, "{prefix}{name} ({hex}): {words}")
        }
        _ => write!(
            f,
            "{}: {} ({hex})",
            layer_name(layer),
            base_rc_words(raw & 0xffff)
        ),
    }
}

/// `Retry` → `TPM_RC_RETRY`, `NvUnavailable` → `TPM_RC_NV_UNAVAILABLE` (the spec's names).
fn tpm_rc_name(kind: Tss2ResponseCodeKind) -> String {
    let debug = format!("{kind:?}");
    let mut out = String::from("TPM_RC_");
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The TSS2 layer names of `tss2_common.h`.
fn layer_name(layer: u32) -> String {
    match layer {
        6 => "FAPI".into(),
        7 => "ESAPI".into(),
        8 => "SAPI (SYS)".into(),
        9 => "marshalling (MU)".into(),
        10 => "TCTI".into(),
        11 => "resource manager".into(),
        other => format!("TSS layer {other}"),
    }
}

/// The `TSS2_BASE_RC_*` codes of `tss2_common.h`, in words.
fn base_rc_words(base: u32) -> String {
    let words = match base {
        1 => "general failure",
        2 => "not implemented",
        3 => "bad context",
        4 => "ABI mismatch",
        5 => "bad reference (null pointer)",
        6 => "insufficient buffer",
        7 => "bad sequence (call out of order)",
        8 => "no connection to the TPM",
        9 => "try again (the TPM is busy or did not answer in time)",
        10 => "I/O error (connection refused, reset or closed)",
        11 => "bad value",
        12 => "not permitted",
        13 => "invalid sessions",
        14 => "no decrypt parameter",
        15 => "no encrypt parameter",
        16 => "bad size",
        17 => "malformed response from the TPM",
        18 => "insufficient context",
        19 => "insufficient response",
        20 => "incompatible TCTI",
        21 => "not supported",
        22 => "bad TCTI structure",
        23 => "out of memory",
        24 => "bad ESYS_TR handle",
        25 => "multiple decrypt sessions",
        26 => "multiple encrypt sessions",
        27 => "response authorization failed (HMAC mismatch)",
        _ => return format!("code {base}"),
    };
    words.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(raw: u32) -> tss_esapi::Error {
        tss_esapi::Error::Tss2Error(Tss2ResponseCode::from(raw))
    }

    #[test]
    fn codes_in_words_with_hex() {
        let cases = [
            (
                0x922,
                "TPM_RC_RETRY (0x922): the TPM was not able to start the command",
            ),
            (
                0xa000a,
                "TCTI: I/O error (connection refused, reset or closed) (0xa000a)",
            ),
            (0xa0009, "TCTI: try again"),
            (0x70018, "ESAPI: bad ESYS_TR handle (0x70018)"),
            (0x80001, "SAPI (SYS): general failure (0x80001)"),
            (0x1c4, "TPM_RC_VALUE (0x1c4)"),
            (0x9a2, "TPM_RC_BAD_AUTH (0x9a2)"),
        ];
        for (raw, want) in cases {
            let text = describe(&error(raw));
            assert!(text.contains(want), "{raw:#x}: {text}");
            assert!(!text.contains("not recognized"), "{raw:#x}: {text}");
        }
    }

    #[test]
    fn raw_code_round_trips() {
        for raw in [0x922u32, 0xa000a, 0x1c4, 0x8000_0001] {
            assert_eq!(raw_code(Tss2ResponseCode::from(raw)), Some(raw));
        }
    }

    #[test]
    fn wrapper_errors_say_so() {
        let text = describe(&tss_esapi::Error::WrapperError(
            tss_esapi::WrapperErrorKind::WrongValueFromTpm,
        ));
        assert!(text.starts_with("tss-esapi: "), "{text}");
    }
}
