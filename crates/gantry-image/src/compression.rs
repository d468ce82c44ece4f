//! Sniffing and decoding (possibly compressed) tar streams, with a hard cap on decoded bytes.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// How a stream is compressed, told by its magic bytes rather than a (possibly lying) media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

impl Compression {
    /// Classifies the first bytes of a stream; xz and bzip2 are recognised only to refuse them
    /// with a clear message instead of a confusing "not a tar" error later.
    pub(crate) fn sniff(head: &[u8]) -> Result<Compression, ImageError> {
        if head.starts_with(GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if head.starts_with(ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if head.starts_with(XZ_MAGIC) {
            Err(ImageError::Unsupported(
                "xz-compressed archives are not supported; decompress with `xz -d` or use gzip/zstd"
                    .into(),
            ))
        } else if head.starts_with(BZIP2_MAGIC) && head.len() > 3 && head[3].is_ascii_digit() {
            Err(ImageError::Unsupported(
                "bzip2-compressed archives are not supported; decompress with `bunzip2` or use gzip/zstd"
                    .into(),
            ))
        } else {
            Ok(Compression::None)
        }
    }

    pub(crate) fn layer_media_type(self) -> oci_spec::image::MediaType {
        match self {
            Compression::None => oci_spec::image::MediaType::ImageLayer,
            Compression::Gzip => oci_spec::image::MediaType::ImageLayerGzip,
            Compression::Zstd => oci_spec::image::MediaType::ImageLayerZstd,
        }
    }
}

/// Reads the first bytes of `reader` without losing them; returns the compression and a reader
/// that yields the whole stream.
pub(crate) fn sniff_reader<'a, R: Read + 'a>(
    mut reader: R,
) -> Result<(Compression, Box<dyn Read + 'a>), ImageError> {
    let mut head = Vec::with_capacity(8);
    (&mut reader)
        .take(8)
        .read_to_end(&mut head)
        .map_err(|e| ImageError::io("cannot read", "<stream>", e))?;
    let compression = Compression::sniff(&head)?;
    let whole = io::Cursor::new(head).chain(reader);
    Ok((compression, Box::new(whole)))
}

/// Wraps `reader` in the decoder its magic bytes call for.
pub(crate) fn decoded_reader<'a, R: Read + 'a>(
    reader: R,
) -> Result<(Compression, Box<dyn Read + 'a>), ImageError> {
    let (compression, whole) = sniff_reader(reader)?;
    let decoded: Box<dyn Read + 'a> = match compression {
        Compression::None => whole,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(whole)
                .map_err(|e| ImageError::io("cannot start zstd decoder for", "<stream>", e))?,
        ),
    };
    Ok((compression, decoded))
}

/// A byte budget shared between a capped reader and the code that drives it, so the driver can
/// tell "the cap was hit" apart from other read errors the tar parser may have rewrapped.
#[derive(Debug)]
pub(crate) struct Budget {
    read: Cell<u64>,
    limit: u64,
    exceeded: Cell<bool>,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Rc<Budget> {
        Rc::new(Budget {
            read: Cell::new(0),
            limit,
            exceeded: Cell::new(false),
        })
    }

    pub(crate) fn read(&self) -> u64 {
        self.read.get()
    }

    pub(crate) fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.read.get())
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }
}

/// Fails with an error as soon as more than the budget's limit has been read, so a decompression
/// bomb stops at the limit instead of filling the disk.
pub(crate) struct CappedReader<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> CappedReader<R> {
    pub(crate) fn new(inner: R, budget: Rc<Budget>) -> Self {
        CappedReader { inner, budget }
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.budget.read.get().saturating_add(n as u64);
        self.budget.read.set(total);
        if total > self.budget.limit {
            self.budget.exceeded.set(true);
            return Err(io::Error::other(format!(
                "stream exceeds the limit of {} bytes",
                self.budget.limit
            )));
        }
        Ok(n)
    }
}

/// Hashes everything read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Returns `("sha256:<hex>", bytes read)`.
    pub(crate) fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(
            Compression::sniff(b"\x1f\x8b\x08\0").unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]).unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::sniff(b"etc/\0\0\0").unwrap(),
            Compression::None
        );
        assert_eq!(Compression::sniff(b"").unwrap(), Compression::None);
        let err = Compression::sniff(b"\xfd7zXZ\0rest").unwrap_err();
        assert!(err.to_string().contains("xz"), "{err}");
        assert!(Compression::sniff(b"BZh91AY").is_err());
        assert_eq!(Compression::sniff(b"BZhx").unwrap(), Compression::None);
    }

    #[test]
    fn decodes_gzip_and_zstd_and_keeps_sniffed_bytes() {
        let payload = b"hello layer".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&payload).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&payload[..], 3).unwrap();
        for (input, expected) in [
            (gz, Compression::Gzip),
            (zst, Compression::Zstd),
            (payload.clone(), Compression::None),
        ] {
            let (c, mut r) = decoded_reader(&input[..]).unwrap();
            assert_eq!(c, expected);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn capped_reader_stops_a_gzip_bomb() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 4 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        let budget = Budget::new(1 << 20);
        let (_, decoded) = decoded_reader(&bomb[..]).unwrap();
        let mut capped = CappedReader::new(decoded, budget.clone());
        let err = io::copy(&mut capped, &mut io::sink()).unwrap_err();
        assert!(budget.exceeded(), "{err}");
        assert!(budget.read() <= (1 << 20) + (128 << 10));
    }
}
