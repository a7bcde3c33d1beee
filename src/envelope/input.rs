//! The message reader: counts the bytes read (for error offsets), feeds them to the signature
//! hash while one is running, and never allocates for a length field before the bytes it
//! announces have arrived (buffers grow with what is read).

use super::EnvelopeError;
use aws_lc_rs::digest;
use std::io::{ErrorKind, Read};

/// A reader of one message.
pub(crate) struct Input<R> {
    inner: R,
    offset: u64,
    hash: Option<digest::Context>,
}

impl<R: Read> Input<R> {
    /// Reads from `inner`; `hash` (if any) receives every byte read until [`Self::take_hash`].
    pub(crate) fn new(inner: R, hash: Option<digest::Context>) -> Self {
        Input {
            inner,
            offset: 0,
            hash,
        }
    }

    /// Starts hashing what is read from now on (when the suite turns out to be signed, with
    /// what was read before fed in by the caller).
    pub(crate) fn set_hash(&mut self, hash: Option<digest::Context>) {
        self.hash = hash;
    }

    /// Stops hashing and returns the hash.
    pub(crate) fn take_hash(&mut self) -> Option<digest::Context> {
        self.hash.take()
    }

    fn truncated(&self, what: &dyn Fn() -> String) -> EnvelopeError {
        EnvelopeError::Truncated {
            what: what(),
            offset: self.offset,
        }
    }

    /// Fills `buf` or fails naming `what`.
    pub(crate) fn read_exact(
        &mut self,
        buf: &mut [u8],
        what: &dyn Fn() -> String,
    ) -> Result<(), EnvelopeError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.account(&buf[..filled]);
                    return Err(self.truncated(what));
                }
                Ok(n) => filled += n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(EnvelopeError::Io {
                        what: "reading the message",
                        source,
                    })
                }
            }
        }
        self.account(buf);
        Ok(())
    }

    fn account(&mut self, bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        if let Some(hash) = self.hash.as_mut() {
            hash.update(bytes);
        }
    }

    /// A fixed-size field.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &dyn Fn() -> String,
    ) -> Result<[u8; N], EnvelopeError> {
        let mut out = [0u8; N];
        self.read_exact(&mut out, what)?;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, EnvelopeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16, EnvelopeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, EnvelopeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Replaces `buf`'s content with the next `len` bytes. The buffer grows as bytes arrive
    /// (at most 64 KiB at a time), so a length field alone never makes it allocate.
    pub(crate) fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        len: usize,
        what: &dyn Fn() -> String,
    ) -> Result<(), EnvelopeError> {
        const STEP: usize = 64 * 1024;
        buf.clear();
        while buf.len() < len {
            let start = buf.len();
            let step = (len - start).min(STEP);
            buf.resize(start + step, 0);
            self.read_exact(&mut buf[start..], what)?;
        }
        Ok(())
    }

    /// The next `len` bytes as a new vector.
    pub(crate) fn vec(
        &mut self,
        len: usize,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = Vec::new();
        self.read_into(&mut out, len, what)?;
        Ok(out)
    }

    /// Ok when the input has ended; the offset of the extra bytes otherwise.
    pub(crate) fn expect_end(&mut self) -> Result<(), EnvelopeError> {
        let mut probe = [0u8; 1];
        loop {
            match self.inner.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(EnvelopeError::TrailingData(self.offset)),
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(EnvelopeError::Io {
                        what: "reading the message",
                        source,
                    })
                }
            }
        }
    }
}
