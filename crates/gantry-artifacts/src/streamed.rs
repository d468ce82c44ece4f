//! Artifacts uploaded by a client: the client hashes and streams its input (`digest_path`,
//! `canonical_body`), the server stores the stream only when it hashes to the digest the
//! client announced and, for a directory, when its tar holds nothing the packer would not
//! have written (`put_stream`).

use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::archive_check::ArchiveCheck;
use crate::digest::{HashingWriter, StreamHasher, format_digest, parse_digest};
use crate::error::ArtifactError;
use crate::pack::{Input, classify, write_canonical};
use crate::store::{
    CHANNEL_DEPTH, ChunkSender, PART_SIZE, PARTS_IN_FLIGHT, SINGLE_PUT_MAX, content_path,
};
use crate::{ArtifactInfo, ArtifactKind, ArtifactStore};

/// The digest, kind and size `put_path` would give `path`, computed locally without storing
/// anything (blocking: call it from a blocking thread in async code).
pub fn digest_path(path: &Path) -> Result<ArtifactInfo, ArtifactError> {
    let (kind, out) = Input::Path(path.to_owned()).pack(HashingWriter::new(io::sink()))?;
    let (_, hex, size) = out.finish();
    Ok(ArtifactInfo {
        digest: format_digest(&hex),
        kind,
        size,
    })
}

/// The canonical bytes of `path` (those `digest_path` hashed), as a stream for an upload body,
/// e.g. `reqwest::Body::wrap_stream`. Packing runs on a blocking thread when the stream is
/// first polled (inside a tokio runtime) and stops when the stream is dropped. A path that is
/// no longer of `kind` ends the stream with `Changed`; the server refuses content that
/// changed since it was hashed, because it no longer matches the digest.
pub fn canonical_body(
    path: PathBuf,
    kind: ArtifactKind,
) -> impl Stream<Item = Result<Bytes, ArtifactError>> + Send + Unpin + 'static {
    enum State {
        Start(PathBuf, ArtifactKind),
        Running(mpsc::Receiver<Bytes>, JoinHandle<Result<(), ArtifactError>>),
        Done,
    }
    futures::stream::unfold(State::Start(path, kind), |state| async move {
        let (mut rx, producer) = match state {
            State::Start(path, kind) => {
                let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
                let producer = tokio::task::spawn_blocking(move || {
                    if classify(&path)? != kind {
                        return Err(ArtifactError::Changed { path });
                    }
                    write_canonical(&path, kind, ChunkSender::new(tx))?
                        .finish()
                        .map_err(ArtifactError::io("upload", &path))
                });
                (rx, producer)
            }
            State::Running(rx, producer) => (rx, producer),
            State::Done => return None,
        };
        match rx.recv().await {
            Some(chunk) => Some((Ok(chunk), State::Running(rx, producer))),
            None => match producer.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((Err(e), State::Done)),
                Err(e) => Some((
                    Err(ArtifactError::task("packing an upload body")(e)),
                    State::Done,
                )),
            },
        }
    })
    .boxed()
}

/// Hashes a body without storing it; its size when it hashes to `hex`.
async fn prove_possession<S, E>(
    hex: &str,
    max_bytes: u64,
    mut body: S,
) -> Result<u64, ArtifactError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<Box<dyn Error + Send + Sync>>,
{
    let digest = format_digest(hex);
    let mut hasher = StreamHasher::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ArtifactError::Body { source: e.into() })?;
        hasher.update(&chunk);
        if hasher.len() > max_bytes {
            return Err(ArtifactError::UploadTooLarge {
                digest,
                max: max_bytes,
            });
        }
    }
    let len = hasher.len();
    let got = hasher.finish();
    if got != hex {
        return Err(ArtifactError::DigestMismatch {
            expected: digest,
            got: format_digest(&got),
        });
    }
    Ok(len)
}

impl ArtifactStore {
    /// Stores an upload whose digest the client announced: `body` is hashed as it streams into
    /// the object store (one put when small, multipart when large) and committed only when it
    /// hashes to `expected_digest` and is at most `max_bytes`; a directory's tar is checked as
    /// it streams (see `archive_check`). Any refusal aborts the upload and commits nothing.
    /// Content already stored is not stored again, but the body is still read and must hash
    /// to the digest: an upload is how a caller proves it holds the content (knowing a
    /// digest is not holding the data), so an empty or wrong body is refused either way.
    pub async fn put_stream<S, E>(
        &self,
        kind: ArtifactKind,
        expected_digest: &str,
        max_bytes: u64,
        body: S,
    ) -> Result<ArtifactInfo, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        let hex = parse_digest(expected_digest)?;
        let digest = format_digest(&hex);
        if let Some(meta) = self.read_meta(&hex).await? {
            if meta.kind != kind {
                return Err(ArtifactError::KindConflict {
                    digest,
                    stored: meta.kind,
                    requested: kind,
                });
            }
            let size = prove_possession(&hex, max_bytes, body).await?;
            return Ok(ArtifactInfo { digest, kind, size });
        }
        let mut pending = Pending {
            location: content_path(&hex),
            op: format!("storing an upload as {digest}"),
            chunks: Vec::new(),
            len: 0,
            multipart: None,
        };
        let received = self
            .receive(&mut pending, kind, &hex, max_bytes, body)
            .await;
        let size = match received {
            Ok(size) => size,
            Err(e) => {
                if let Some(writer) = pending.multipart.take() {
                    // Best effort: the upload is invisible until finished anyway.
                    let _ = writer.abort().await;
                }
                return Err(e);
            }
        };
        pending.store(self).await?;
        self.commit(&hex, kind, size).await?;
        Ok(ArtifactInfo { digest, kind, size })
    }

    /// Reads the whole body into `pending`, hashing, counting and (for a directory) checking
    /// it; returns its size once all three passed.
    async fn receive<S, E>(
        &self,
        pending: &mut Pending,
        kind: ArtifactKind,
        hex: &str,
        max_bytes: u64,
        mut body: S,
    ) -> Result<u64, ArtifactError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        let digest = format_digest(hex);
        let check = (kind == ArtifactKind::Directory).then(|| ArchiveCheck::start(&digest));
        let mut hasher = StreamHasher::new();
        let mut outcome = Ok(());
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    outcome = Err(ArtifactError::Body { source: e.into() });
                    break;
                }
            };
            hasher.update(&chunk);
            if hasher.len() > max_bytes {
                outcome = Err(ArtifactError::UploadTooLarge {
                    digest: digest.clone(),
                    max: max_bytes,
                });
                break;
            }
            // A refused archive stops the check early; `finish` below says why.
            if let Some(check) = &check
                && !check.feed(chunk.clone()).await
            {
                break;
            }
            if let Err(e) = pending.put(self, chunk).await {
                outcome = Err(e);
                break;
            }
        }
        let checked = match check {
            Some(check) => check.finish().await,
            None => Ok(()),
        };
        outcome?;
        checked?;
        let len = hasher.len();
        let got = hasher.finish();
        if got != hex {
            return Err(ArtifactError::DigestMismatch {
                expected: digest,
                got: format_digest(&got),
            });
        }
        Ok(len)
    }
}

/// Content received but not yet stored: buffered while small, then a multipart upload that
/// stays invisible until finished.
struct Pending {
    location: ObjectPath,
    op: String,
    chunks: Vec<Bytes>,
    len: u64,
    multipart: Option<WriteMultipart>,
}

impl Pending {
    async fn put(&mut self, store: &ArtifactStore, chunk: Bytes) -> Result<(), ArtifactError> {
        self.len += chunk.len() as u64;
        self.chunks.push(chunk);
        if self.multipart.is_none() {
            if self.len <= SINGLE_PUT_MAX {
                return Ok(());
            }
            let upload = store
                .objects
                .put_multipart(&self.location)
                .await
                .map_err(ArtifactError::object_store(self.op.clone()))?;
            self.multipart = Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE));
        }
        let Some(writer) = self.multipart.as_mut() else {
            return Ok(());
        };
        for chunk in self.chunks.drain(..) {
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(ArtifactError::object_store(self.op.clone()))?;
            writer.put(chunk);
        }
        Ok(())
    }

    /// Makes the verified content visible at its content address (not yet committed).
    async fn store(self, store: &ArtifactStore) -> Result<(), ArtifactError> {
        let stored = match self.multipart {
            Some(writer) => writer.finish().await.map(drop),
            None => store
                .objects
                .put(&self.location, PutPayload::from_iter(self.chunks))
                .await
                .map(drop),
        };
        stored.map_err(ArtifactError::object_store(self.op))
    }
}
