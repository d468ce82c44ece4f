//! The prediction log's journal: where a prediction is made durable before its answer
//! leaves, in one `write` to an append-only file, so the request never waits for the
//! database. The log writer then copies journaled records into the database in large
//! transactions and drops whole segments once everything in them is there.
//!
//! Layout: `<dir>/<writer>.lock` (held with `flock` while the writer lives) and segments
//! `<dir>/<writer>-<n>.journal`, each a header `GPJ1` then records
//! `u32 length | u32 crc32 | payload` (little-endian); a payload is the record's number in
//! the writer's order and the prediction (see [`encode`]). A record is complete when its
//! length and checksum agree: what a kill or a crash cut short at the end of a segment is
//! ignored, and no answer was sent for it (its `write` had not returned).
//!
//! Durability is that of the page cache, like SQLite's WAL with `synchronous = NORMAL` (the
//! default store's): a killed server loses nothing it answered; a power loss may lose the
//! last moments. A server that starts takes over the journals of writers that no longer
//! hold their lock ([`recover`]): records not yet in the database are inserted (each record
//! keeps its writer and number, so the monitor counts it exactly once, see `predlog.rs`).

use gantry_store::columns::Columns;
use gantry_store::{NewPrediction, PredictionInputs, Store, StoreError};
use std::collections::{HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GPJ1";
/// A segment is closed (and a new one started) past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Records inserted per transaction when taking a journal over.
const RECOVER_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("request id `{0}` is already in the prediction log")]
    Duplicate(String),
    #[error("the prediction log's journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How long a key that reached the database is still refused by the journal itself (far
/// longer than a request takes from its database lookup to its journal append).
const RECENT: std::time::Duration = std::time::Duration::from_secs(30);

/// One writer's journal (this process's).
pub struct Journal {
    dir: PathBuf,
    writer: String,
    /// Held for the writer's life: another process takes the journal over only once it
    /// can lock this.
    _lock: nix::fcntl::Flock<File>,
    file: File,
    segment: u64,
    bytes: u64,
    next_seq: i64,
    /// Closed segments and the last record number in each.
    closed: VecDeque<(u64, i64)>,
    /// (request id, role) of records journaled and not yet in the database.
    pending: HashSet<(String, String)>,
    /// Keys that went from pending to the database in the last [`RECENT`]: a request that
    /// looked the id up in the database just before it got there is still refused.
    recent: HashSet<(String, String)>,
    recent_order: VecDeque<(std::time::Instant, (String, String))>,
    buf: Vec<u8>,
    /// A write failed and no fresh segment could be opened: nothing more may follow the
    /// partial record in this one.
    broken: bool,
}

impl Journal {
    /// Creates writer `writer`'s journal in `dir`.
    pub fn create(dir: &Path, writer: &str) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(format!("{writer}.lock"));
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| JournalError::Io {
                path: lock_path.clone(),
                source: std::io::Error::from(e),
            })?;
        let (file, _) = open_segment(dir, writer, 1)?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            writer: writer.to_owned(),
            _lock: lock,
            file,
            segment: 1,
            bytes: MAGIC.len() as u64,
            next_seq: 1,
            closed: VecDeque::new(),
            pending: HashSet::new(),
            recent: HashSet::new(),
            recent_order: VecDeque::new(),
            buf: Vec::new(),
            broken: false,
        })
    }

    /// Whether (request id, role) waits in the journal for the database.
    pub fn is_pending(&self, request_id: &str, role: &str) -> bool {
        self.pending
            .contains(&(request_id.to_owned(), role.to_owned()))
    }

    /// Whether any record waits for the database.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Appends `p` in one write and returns its number; refuses a (request id, role) that
    /// waits in the journal already.
    pub fn append(&mut self, p: &NewPrediction) -> Result<i64, JournalError> {
        let key = (p.request_id.clone(), p.role.clone());
        self.forget_old();
        if self.pending.contains(&key) || self.recent.contains(&key) {
            return Err(JournalError::Duplicate(p.request_id.clone()));
        }
        if self.broken {
            self.rotate()?;
            self.broken = false;
        }
        let seq = self.next_seq;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 8]);
        encode(seq, p, &mut self.buf);
        let len = u32::try_from(self.buf.len() - 8).unwrap_or(u32::MAX);
        let crc = crc32fast::hash(&self.buf[8..]);
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = self.file.write_all(&self.buf) {
            // A partial record is skipped when read back (its checksum fails); start a
            // fresh segment so nothing follows it.
            let path = self.segment_path(self.segment);
            self.broken = self.rotate().is_err();
            return Err(io(&path)(e));
        }
        self.bytes += self.buf.len() as u64;
        self.next_seq += 1;
        self.pending.insert(key);
        if self.bytes > SEGMENT_BYTES {
            // The record is written; a failure to open the next segment shows on the next
            // append.
            let _ = self.rotate();
        }
        Ok(seq)
    }

    fn forget_old(&mut self) {
        let now = std::time::Instant::now();
        while let Some((at, _)) = self.recent_order.front() {
            if now.duration_since(*at) < RECENT {
                break;
            }
            if let Some((_, k)) = self.recent_order.pop_front() {
                self.recent.remove(&k);
            }
        }
    }

    fn segment_path(&self, n: u64) -> PathBuf {
        segment_path(&self.dir, &self.writer, n)
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let (file, _) = open_segment(&self.dir, &self.writer, self.segment + 1)?;
        self.closed.push_back((self.segment, self.next_seq - 1));
        self.segment += 1;
        self.file = file;
        self.bytes = MAGIC.len() as u64;
        Ok(())
    }

    /// The records of `keys` are in the database (or were refused by it), as is every
    /// record up to `upto`: closed segments that hold nothing newer are deleted.
    pub fn done(&mut self, keys: impl IntoIterator<Item = (String, String)>, upto: i64) {
        let now = std::time::Instant::now();
        for k in keys {
            if self.pending.remove(&k) {
                self.recent.insert(k.clone());
                self.recent_order.push_back((now, k));
            }
        }
        self.forget_old();
        while let Some(&(segment, last)) = self.closed.front() {
            if last > upto {
                break;
            }
            let _ = std::fs::remove_file(self.segment_path(segment));
            self.closed.pop_front();
        }
    }
}

fn segment_path(dir: &Path, writer: &str, n: u64) -> PathBuf {
    dir.join(format!("{writer}-{n:06}.journal"))
}

fn open_segment(dir: &Path, writer: &str, n: u64) -> Result<(File, PathBuf), JournalError> {
    let path = segment_path(dir, writer, n);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    file.write_all(MAGIC).map_err(io(&path))?;
    Ok((file, path))
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// A record's payload: its number, then the prediction's fields (text length-prefixed, the
/// inputs as JSON rows or as encoded columns, the outputs as JSON).
fn encode(seq: i64, p: &NewPrediction, buf: &mut Vec<u8>) {
    buf.extend_from_slice(&seq.to_le_bytes());
    put(buf, p.request_id.as_bytes());
    put(buf, p.deployment.as_bytes());
    put(buf, p.model.as_bytes());
    buf.extend_from_slice(&p.version.to_le_bytes());
    put(buf, p.role.as_bytes());
    buf.extend_from_slice(&p.rows.to_le_bytes());
    match &p.error {
        Some(e) => {
            buf.push(1);
            put(buf, e.as_bytes());
        }
        None => buf.push(0),
    }
    buf.extend_from_slice(&p.latency_us.to_le_bytes());
    buf.extend_from_slice(&p.created_at_ms.to_le_bytes());
    match &p.inputs {
        PredictionInputs::Rows(v) => {
            buf.push(0);
            put(buf, v.to_string().as_bytes());
        }
        PredictionInputs::Columns(c) => {
            buf.push(1);
            put(buf, &c.encode());
        }
    }
    put(buf, p.outputs.to_string().as_bytes());
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

fn decode(payload: &[u8]) -> Option<(i64, NewPrediction)> {
    let mut c = Cursor { b: payload, at: 0 };
    let seq = c.i64()?;
    let request_id = c.text()?;
    let deployment = c.text()?;
    let model = c.text()?;
    let version = c.i64()?;
    let role = c.text()?;
    let rows = c.i64()?;
    let error = match c.u8()? {
        0 => None,
        _ => Some(c.text()?),
    };
    let latency_us = c.i64()?;
    let created_at_ms = c.i64()?;
    let inputs = match c.u8()? {
        0 => PredictionInputs::Rows(serde_json::from_slice(c.bytes()?).ok()?),
        _ => PredictionInputs::Columns(Columns::decode(c.bytes()?).ok()?),
    };
    let outputs = serde_json::from_slice(c.bytes()?).ok()?;
    Some((
        seq,
        NewPrediction {
            request_id,
            deployment,
            model,
            version,
            role,
            inputs,
            outputs,
            rows,
            error,
            latency_us,
            created_at_ms,
        },
    ))
}

/// The complete records of one segment, in order (reading stops at the first record that
/// is cut short or fails its checksum).
pub fn read_segment(path: &Path) -> Result<Vec<(i64, NewPrediction)>, JournalError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let mut out = Vec::new();
    if !bytes.starts_with(MAGIC) {
        return Ok(out);
    }
    let mut at = MAGIC.len();
    while let Some(head) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = decode(payload) else {
            break;
        };
        out.push(record);
        at += 8 + len;
    }
    Ok(out)
}

/// Takes over the journals in `dir` of writers other than `me` that no longer hold their
/// lock: inserts what the database lacks (each with its writer and number), then deletes
/// them. Returns the records inserted.
pub async fn recover(store: &Store, dir: &Path, me: &str) -> Result<usize, JournalError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut writers: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".lock"))
                .map(str::to_owned)
        })
        .filter(|w| w != me)
        .collect();
    writers.sort();
    let mut inserted = 0;
    for writer in writers {
        let lock_path = dir.join(format!("{writer}.lock"));
        let Ok(file) = OpenOptions::new().write(true).open(&lock_path) else {
            continue;
        };
        // Still alive (another server on this home): not ours to take.
        let Ok(lock) = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        else {
            continue;
        };
        let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{writer}-")) && n.ends_with(".journal")
                })
            })
            .collect();
        segments.sort();
        let done = store
            .last_logged_seq(&writer)
            .await
            .map_err(store_io(dir))?;
        // Counted by whoever counts the writer's records (it may never have registered).
        store
            .register_log_writer_if_absent(&writer)
            .await
            .map_err(store_io(dir))?;
        for segment in &segments {
            let records: Vec<(i64, NewPrediction)> = read_segment(segment)?
                .into_iter()
                .filter(|(seq, _)| *seq > done)
                .collect();
            for chunk in records.chunks(RECOVER_BATCH) {
                let (seqs, batch): (Vec<i64>, Vec<NewPrediction>) = chunk.iter().cloned().unzip();
                match store.log_predictions(&writer, &seqs, &batch).await {
                    Ok(()) => inserted += batch.len(),
                    Err(_) => {
                        // One at a time: a record the database already has (or refuses) is
                        // skipped, the rest go in.
                        for (seq, p) in seqs.iter().zip(&batch) {
                            match store
                                .log_predictions(
                                    &writer,
                                    std::slice::from_ref(seq),
                                    std::slice::from_ref(p),
                                )
                                .await
                            {
                                Ok(()) => inserted += 1,
                                Err(StoreError::AlreadyExists { .. })
                                | Err(StoreError::Invalid { .. }) => {}
                                Err(e) => return Err(store_io(dir)(e)),
                            }
                        }
                    }
                }
            }
        }
        for segment in &segments {
            let _ = std::fs::remove_file(segment);
        }
        let _ = std::fs::remove_file(&lock_path);
        drop(lock);
    }
    Ok(inserted)
}

fn store_io(dir: &Path) -> impl FnOnce(StoreError) -> JournalError + '_ {
    move |e| JournalError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prediction(id: &str) -> NewPrediction {
        NewPrediction {
            request_id: id.into(),
            deployment: "d".into(),
            model: "m".into(),
            version: 2,
            role: "primary".into(),
            inputs: json!([{"x": 1.5}]).into(),
            outputs: json!(["a"]),
            rows: 1,
            error: Some("e".into()),
            latency_us: 7,
            created_at_ms: 9,
        }
    }

    #[test]
    fn records_read_back_in_order_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "w-1").unwrap();
        assert_eq!(j.append(&prediction("a")).unwrap(), 1);
        assert_eq!(j.append(&prediction("b")).unwrap(), 2);
        assert!(matches!(
            j.append(&prediction("a")),
            Err(JournalError::Duplicate(_))
        ));
        let path = segment_path(dir.path(), "w-1", 1);
        let read = read_segment(&path).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[1], (2, prediction("b")));
        // A record cut short (a kill inside `write`) and garbage after it are ignored.
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_within(4..40);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_segment(&path).unwrap().len(), 2);
        bytes.truncate(whole - 3);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_segment(&path).unwrap().len(), 1);
        // Once in the database a key is no longer pending, but the journal still refuses it
        // for a while: a request that looked it up in the database just before it arrived
        // there must not be journaled (and answered) a second time.
        j.done([("a".to_string(), "primary".to_string())], 2);
        assert!(!j.is_pending("a", "primary"));
        assert!(j.is_pending("b", "primary"));
        assert!(matches!(
            j.append(&prediction("a")),
            Err(JournalError::Duplicate(_))
        ));
        assert_eq!(j.append(&prediction("c")).unwrap(), 3);
    }

    #[test]
    fn a_live_writer_keeps_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _j = Journal::create(dir.path(), "w-live").unwrap();
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("w-live.lock"))
            .unwrap();
        assert!(
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_err()
        );
    }
}
