use std::io::{self, Write};

use sha2::{Digest, Sha256};

use crate::error::ArtifactError;

pub(crate) const ALGORITHM_PREFIX: &str = "sha256:";

/// Accepts `sha256:<hex>` or bare hex (either case) and returns the lowercase hex, which is
/// safe to use in object keys and file names.
pub(crate) fn parse_digest(digest: &str) -> Result<String, ArtifactError> {
    let hex = digest.strip_prefix(ALGORITHM_PREFIX).unwrap_or(digest);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ArtifactError::InvalidDigest {
            digest: digest.to_owned(),
        });
    }
    Ok(hex.to_ascii_lowercase())
}

pub(crate) fn format_digest(hex: &str) -> String {
    format!("{ALGORITHM_PREFIX}{hex}")
}

/// Hashes and counts everything written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the lowercase hex digest and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Incremental hashing for content that arrives as a stream of chunks.
pub(crate) struct StreamHasher {
    hasher: Sha256,
    len: u64,
}

impl StreamHasher {
    pub(crate) fn new() -> Self {
        StreamHasher {
            hasher: Sha256::new(),
            len: 0,
        }
    }

    pub(crate) fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashing_writer_matches_known_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"").unwrap();
        let (_, hex, len) = w.finish();
        assert_eq!((hex.as_str(), len), (EMPTY, 0));
        let mut w = HashingWriter::new(io::sink());
        w.write_all(b"abc").unwrap();
        assert_eq!(
            w.finish().1,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digests_parse_with_or_without_prefix() {
        assert_eq!(parse_digest(&format!("sha256:{EMPTY}")).unwrap(), EMPTY);
        assert_eq!(parse_digest(&EMPTY.to_uppercase()).unwrap(), EMPTY);
        for bad in [
            "",
            "sha256:",
            "sha256:abc",
            "md5:00",
            &format!("sha256:{EMPTY}/../x"),
        ] {
            let err = parse_digest(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid artifact digest"),
                "{bad}: {err}"
            );
        }
    }
}
