//! Fuzz target: the audit verifier (`audit::verify::verify_files`) and its line parser
//! (`audit::chain::SealedLine::parse`).
//!
//! Input: byte 0 is the mode, the rest is the content of an audit file that the target
//! writes into `$TMPDIR/kmsd-fuzz-audit-<pid>/` (a few KB, left behind; scripts/fuzz.sh
//! points TMPDIR at a directory it removes). The seeds are the known trail (`kmsd_fuzz::known_trail`,
//! sealed with the fixed MAC key `kmsd_fuzz::audit_key`) behind each mode byte.
//! - mode 0: verified as the daemon does: MACs checked, from the first record, against a
//!   durable head that says the known trail was written. Verifying OK means the file starts
//!   with the known trail, byte for byte (bytes after the head are records in flight and
//!   are not checked, by design).
//! - mode 1: MACs checked, from the first record, no head. Verifying OK means the file is
//!   the known trail or a prefix of it ending at a record boundary (without the head,
//!   truncation at a record boundary cannot be seen).
//! - mode 2: offline (no key, no head, not from the first record), the data split into two
//!   files at a position taken from the data; and every line through `SealedLine::parse`.
//!   Only: no panic.
#![no_main]

use kmsd::audit::chain::SealedLine;
use kmsd::audit::verify::{file_name, verify_files, Head, VerifyOptions};
use kmsd::audit::MacKey;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Fixtures {
    dir: PathBuf,
    trail: Vec<u8>,
    key: MacKey,
    head: Head,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kmsd-fuzz-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let trail = kmsd_fuzz::known_trail();
        let key = kmsd_fuzz::audit_key();
        let file = dir.join(file_name(1));
        // The head the writer would have: the last record's sequence and hash.
        let last = trail[..trail.len() - 1]
            .rsplit(|b| *b == b'\n')
            .next()
            .expect("a last line");
        let sealed = SealedLine::parse(last).expect("the known trail parses");
        let head = Head {
            sequence: sealed.sequence,
            hash: sealed.hash,
            file,
            len: trail.len() as u64,
        };
        std::fs::write(&head.file, &trail).expect("write the known trail");
        let report = verify_files(
            std::slice::from_ref(&head.file),
            &VerifyOptions {
                key: Some(&key),
                from_genesis: true,
                head: Some(head.clone()),
                ..VerifyOptions::default()
            },
        );
        assert!(report.ok, "the known trail does not verify: {report:?}");
        Fixtures {
            dir,
            trail,
            key,
            head,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, content)) = data.split_first() else {
        return;
    };
    let f = fixtures();
    match mode % 3 {
        0 | 1 => {
            std::fs::write(&f.head.file, content).expect("write the audit file");
            let with_head = mode % 3 == 0;
            let report = verify_files(
                std::slice::from_ref(&f.head.file),
                &VerifyOptions {
                    key: Some(&f.key),
                    from_genesis: true,
                    head: with_head.then(|| f.head.clone()),
                    ..VerifyOptions::default()
                },
            );
            // Zeros after the records are preallocated space, not part of the trail.
            let content = &content[..kmsd::audit::verify::content_len(content)];
            if report.ok {
                if with_head {
                    assert!(
                        content.starts_with(&f.trail),
                        "a mutated trail verified OK against the head: {report:?}"
                    );
                } else {
                    assert!(
                        f.trail.starts_with(content)
                            && (content.is_empty() || content.ends_with(b"\n")),
                        "a mutated trail verified OK: {report:?}"
                    );
                }
            }
        }
        _ => {
            let split = content
                .first()
                .map_or(0, |b| *b as usize)
                .min(content.len());
            let (a, b) = content.split_at(split);
            let files = [f.dir.join(file_name(1)), f.dir.join(file_name(2))];
            std::fs::write(&files[0], a).expect("write the first audit file");
            std::fs::write(&files[1], b).expect("write the second audit file");
            let _ = verify_files(&files, &VerifyOptions::default());
            for line in content.split(|b| *b == b'\n') {
                let _ = SealedLine::parse(line);
            }
        }
    }
});
