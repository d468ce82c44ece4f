//! The prediction log's writer: a journal on the request path, the database behind it,
//! and monitoring counted off the request path.
//!
//! A request's prediction is acknowledged (its answer sent) only after its record is
//! durable: appended to this writer's journal (`journal.rs`) in one `write`, which a
//! killed server never loses. The writer task then copies journaled records into the
//! database, whatever queued meanwhile (up to 512 records) in one transaction; a batch that
//! fails as a whole is retried record by record, a record the database refuses (a request id
//! logged twice) is dropped with a warning, and one it cannot take now (busy, disk full) is
//! retried until it can. Whole journal segments are deleted once everything in them is in
//! the database; a server that starts inserts what a killed one left in its journal.
//!
//! Each record carries this writer's id and its number in the writer's order. Once a batch
//! is in the database a second task, the folder, counts it into the monitor's bucket
//! aggregates in memory (`aggregates.rs`) and checkpoints the changed buckets every second,
//! together with how far it counted, in one transaction whose compare-and-set makes every
//! record counted exactly once: what a killed server had not checkpointed is counted from
//! the log by the next server to start (or, on a shared database, by a live one once the
//! dead writer's heartbeat is old). Readers of the log call [`PredictionLog::flush`] first,
//! readers of the monitor [`PredictionLog::checkpoint`], so they see every answered
//! prediction.

use super::aggregates::{LogAggregator, take_over};
use super::journal::{self, Journal, JournalError};
use crate::metrics::Metrics;
use gantry_artifacts::ArtifactStore;
use gantry_store::{NewPrediction, Store, StoreError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Most records inserted in one transaction.
const MAX_BATCH: usize = 512;
/// How long the writer waits for more records before inserting what it has.
const LINGER: Duration = Duration::from_millis(5);
/// Records journaled and not yet in the database before callers wait for room.
const QUEUE: usize = 8192;
/// How long a request waits for room among those records.
const ROOM_WAIT: Duration = Duration::from_secs(10);
/// Inserted batches waiting to be counted before the writer waits for the folder.
const FOLD_QUEUE: usize = 256;
/// How often the folder checkpoints what it counted (and says it is alive).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// A writer whose heartbeat is older than this, with records it never counted, is taken
/// over by a live server.
const STALE_AFTER: Duration = Duration::from_secs(15);
/// How often a live server looks for such writers.
const ADOPT_EVERY: Duration = Duration::from_secs(10);
/// Longest pause between attempts to insert a record the database cannot take now.
const RETRY_MAX: Duration = Duration::from_secs(5);

enum Job {
    Record(i64, Box<NewPrediction>, OwnedSemaphorePermit),
    Flush(oneshot::Sender<()>),
    Checkpoint(oneshot::Sender<()>),
}

enum Fold {
    /// Inserted records and the writer number of each.
    Batch(Vec<(i64, NewPrediction)>),
    Checkpoint(oneshot::Sender<()>),
}

struct Running {
    /// True once what stopped servers left (journals, uncounted records) is taken over.
    ready: tokio::sync::watch::Receiver<bool>,
    writer: String,
    journal: Result<Arc<Mutex<Journal>>, String>,
    tx: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
}

/// Where a server's journal lives.
pub enum JournalDir {
    /// `<home>/work/predlog`: a server that starts on this home takes over what a stopped
    /// one left there.
    Home(PathBuf),
    /// A temporary folder of this server's own, removed with it.
    Private(Option<tempfile::TempDir>),
}

impl JournalDir {
    pub fn private() -> JournalDir {
        JournalDir::Private(
            tempfile::Builder::new()
                .prefix("gantry-predlog-")
                .tempdir()
                .map_err(|e| tracing::error!("prediction log: a temporary folder: {e}"))
                .ok(),
        )
    }

    fn path(&self) -> PathBuf {
        match self {
            JournalDir::Home(p) => p.clone(),
            JournalDir::Private(Some(t)) => t.path().to_path_buf(),
            // Journal::create reports it.
            JournalDir::Private(None) => PathBuf::from("/nonexistent/gantry-predlog"),
        }
    }
}

pub struct PredictionLog {
    store: Store,
    artifacts: ArtifactStore,
    metrics: Arc<Metrics>,
    /// Where the journals live.
    dir: PathBuf,
    _private: JournalDir,
    running: OnceLock<Running>,
}

impl PredictionLog {
    pub(crate) fn start(
        store: Store,
        artifacts: ArtifactStore,
        metrics: Arc<Metrics>,
        dir: JournalDir,
    ) -> PredictionLog {
        PredictionLog {
            store,
            artifacts,
            metrics,
            dir: dir.path(),
            _private: dir,
            running: OnceLock::new(),
        }
    }

    /// The writer starts with the first use (inside the server's runtime).
    fn running(&self) -> &Running {
        self.running.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let (fold_tx, fold_rx) = mpsc::channel(FOLD_QUEUE);
            let (ready_tx, ready) = tokio::sync::watch::channel(false);
            let aggregator = LogAggregator::new(self.store.clone(), self.artifacts.clone());
            let writer = aggregator.writer().to_owned();
            let journal = Journal::create(&self.dir, &writer)
                .map(|j| Arc::new(Mutex::new(j)))
                .map_err(|e| {
                    tracing::error!("prediction log: {e}; predictions cannot be logged");
                    e.to_string()
                });
            tokio::spawn(write(
                self.store.clone(),
                writer.clone(),
                Arc::clone(&self.metrics),
                rx,
                fold_tx,
                journal.as_ref().ok().cloned(),
            ));
            let running = Running {
                ready,
                writer,
                journal,
                tx,
                room: Arc::new(Semaphore::new(QUEUE)),
            };
            tokio::spawn(fold(
                self.store.clone(),
                self.artifacts.clone(),
                self.dir.clone(),
                aggregator,
                fold_rx,
                ready_tx,
            ));
            running
        })
    }

    /// This server's writer id (its records and buckets carry it).
    pub fn writer(&self) -> &str {
        &self.running().writer
    }

    /// Starts the writer now: it registers itself, inserts what earlier servers left in
    /// their journals and counts what they left uncounted, so a restarted server's log and
    /// monitor are complete before the first request.
    pub fn start_writer(&self) {
        let writer = self.writer();
        tracing::info!(writer, journal = %self.dir.display(), "prediction log started");
    }

    /// Logs one prediction durably (it survives a kill of the server from the moment this
    /// returns). `may_carry_client_id`: the request may have named its own id, which is then
    /// checked against the log (ids the model server makes up are unique).
    pub async fn record(&self, p: NewPrediction, may_carry_client_id: bool) -> Result<(), String> {
        p.validate().map_err(|e| e.to_string())?;
        self.ready().await;
        if may_carry_client_id
            && self
                .store
                .prediction_logged(&p.request_id, &p.role)
                .await
                .map_err(|e| e.to_string())?
        {
            return Err(JournalError::Duplicate(p.request_id).to_string());
        }
        let r = self.running();
        // The database has not taken records for a while (it is down or full): answer that
        // rather than hold the request.
        let permit = tokio::time::timeout(ROOM_WAIT, Arc::clone(&r.room).acquire_owned())
            .await
            .map_err(|_| {
                format!(
                    "{QUEUE} predictions are waiting for the database, which has not taken any for {} s",
                    ROOM_WAIT.as_secs()
                )
            })?
            .map_err(|_| "the prediction log writer stopped".to_string())?;
        let journal = r.journal.as_ref().map_err(Clone::clone)?;
        let mut j = journal
            .lock()
            .map_err(|_| "the prediction log's journal is unusable".to_string())?;
        let seq = j.append(&p).map_err(|e| e.to_string())?;
        // Sent under the journal's lock: the writer sees records in their order.
        r.tx.send(Job::Record(seq, Box::new(p), permit))
            .map_err(|_| "the prediction log writer stopped".to_string())
    }

    /// Logs a prediction nobody waits for (shadow traffic).
    pub async fn record_detached(&self, p: NewPrediction) {
        if let Err(e) = self.record(p, false).await {
            tracing::warn!("prediction log (shadow): {e}");
        }
    }

    /// Waits until what stopped servers left in their journals is in the database (the
    /// writer's first moments after a start).
    async fn ready(&self) {
        let mut ready = self.running().ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Waits until every prediction logged so far is in the database (and what stopped
    /// servers left in their journals).
    pub async fn flush(&self) {
        let Some(r) = self.running.get() else { return };
        self.ready().await;
        let idle = match &r.journal {
            Ok(j) => j.lock().map(|j| !j.has_pending()).unwrap_or(true),
            Err(_) => true,
        };
        if idle {
            return;
        }
        let (done, wait) = oneshot::channel();
        if r.tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// [`PredictionLog::checkpoint`] if the writer runs (a stopping server's last call), for
    /// at most `limit`: what the database did not take by then stays in the journal for the
    /// next start.
    pub async fn checkpoint_if_started(&self, limit: Duration) {
        if self.running.get().is_some()
            && tokio::time::timeout(limit, self.checkpoint())
                .await
                .is_err()
        {
            tracing::warn!(
                "prediction log: the database did not take every record in {} s; the next start inserts the rest from the journal",
                limit.as_secs()
            );
        }
    }

    /// Waits until every prediction logged so far is in the database, counted and
    /// checkpointed: the monitor's buckets then hold every prediction answered before.
    pub async fn checkpoint(&self) {
        let (done, wait) = oneshot::channel();
        if self.running().tx.send(Job::Checkpoint(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Inserts one record until the database takes or refuses it; Ok(false) when refused.
async fn insert_one(store: &Store, writer: &str, seq: i64, p: &NewPrediction) -> bool {
    let mut pause = Duration::from_millis(50);
    loop {
        match store
            .log_predictions(writer, &[seq], std::slice::from_ref(p))
            .await
        {
            Ok(()) => return true,
            Err(e @ (StoreError::AlreadyExists { .. } | StoreError::Invalid { .. })) => {
                tracing::warn!(request = %p.request_id, "prediction log: dropped: {e}");
                return false;
            }
            Err(e) => {
                tracing::warn!(request = %p.request_id, "prediction log: {e}; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn write(
    store: Store,
    writer: String,
    metrics: Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    folder: mpsc::Sender<Fold>,
    journal: Option<Arc<Mutex<Journal>>>,
) {
    while let Some(first) = rx.recv().await {
        // Records are durable in the journal already: waiting a moment for more makes one
        // transaction of many. The task sleeps through the moment and then takes what
        // queued, so it wakes once per batch rather than once per record (a flush or a
        // checkpoint that comes first does not wait).
        if matches!(first, Job::Record(..)) {
            tokio::time::sleep(LINGER).await;
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH
            && !matches!(jobs.last(), Some(Job::Flush(_) | Job::Checkpoint(_)))
        {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut seqs = Vec::with_capacity(jobs.len());
        let mut records = Vec::with_capacity(jobs.len());
        let mut permits = Vec::with_capacity(jobs.len());
        let mut after = Vec::new();
        for job in jobs {
            match job {
                Job::Record(seq, p, permit) => {
                    seqs.push(seq);
                    records.push(*p);
                    permits.push(permit);
                }
                other => after.push(other),
            }
        }
        if !records.is_empty() {
            let keys: Vec<(String, String)> = records
                .iter()
                .map(|p| (p.request_id.clone(), p.role.clone()))
                .collect();
            let upto = seqs.iter().copied().max().unwrap_or(0);
            let mut inserted: Vec<(i64, NewPrediction)> = Vec::with_capacity(records.len());
            match store.log_predictions(&writer, &seqs, &records).await {
                Ok(()) => {
                    metrics.observe_prediction_log(records.len(), 0);
                    inserted.extend(seqs.into_iter().zip(records));
                }
                Err(_) => {
                    for (seq, p) in seqs.into_iter().zip(records) {
                        if insert_one(&store, &writer, seq, &p).await {
                            metrics.observe_prediction_log(1, 0);
                            inserted.push((seq, p));
                        } else {
                            metrics.observe_prediction_log(0, 1);
                        }
                    }
                }
            }
            if let Some(j) = &journal
                && let Ok(mut j) = j.lock()
            {
                j.done(keys, upto);
            }
            drop(permits);
            if !inserted.is_empty() {
                let _ = folder.send(Fold::Batch(inserted)).await;
            }
        }
        for job in after {
            match job {
                Job::Flush(done) => {
                    let _ = done.send(());
                }
                Job::Checkpoint(done) => {
                    if let Err(mpsc::error::SendError(Fold::Checkpoint(done))) =
                        folder.send(Fold::Checkpoint(done)).await
                    {
                        let _ = done.send(());
                    }
                }
                Job::Record(..) => {}
            }
        }
    }
}

/// The folder: counts committed records, checkpoints, takes over dead writers.
struct Folder {
    store: Store,
    artifacts: ArtifactStore,
    aggregator: LogAggregator,
    /// The checkpoint stored for this writer.
    checkpointed: i64,
    /// The last record counted in memory.
    counted: i64,
    /// A catch-up from the log did not finish: memory was dropped, so the next checkpoint
    /// must count from the log first (moving the checkpoint past records nobody counted
    /// would lose them).
    behind: bool,
}

impl Folder {
    async fn count(&mut self, batch: Vec<(i64, NewPrediction)>) {
        // Records at or below `counted` were counted from the log after a take-over.
        let counted = self.counted;
        let fresh: Vec<NewPrediction> = batch
            .into_iter()
            .filter(|(seq, _)| *seq > counted)
            .map(|(seq, p)| {
                self.counted = self.counted.max(seq);
                p
            })
            .collect();
        if let Err(e) = self.aggregator.fold(&fresh).await {
            // Counted again from the log: forget what memory holds and catch up.
            tracing::warn!("prediction log: counting for the monitor: {e}");
            self.catch_up().await;
        }
    }

    async fn checkpoint(&mut self, heartbeat: bool) {
        if self.behind {
            self.catch_up().await;
            if self.behind {
                return;
            }
        }
        if !heartbeat && !self.aggregator.is_dirty() && self.counted == self.checkpointed {
            return;
        }
        match self
            .aggregator
            .checkpoint(self.checkpointed, self.counted)
            .await
        {
            Ok(true) => self.checkpointed = self.counted,
            Ok(false) => {
                tracing::warn!(
                    writer = %self.aggregator.writer(),
                    "prediction log: another server counted this writer's records, or a bucket it held was rolled up; counting again from the log"
                );
                self.catch_up().await;
            }
            Err(e) => tracing::warn!("prediction log: checkpointing the monitor's counts: {e}"),
        }
    }

    /// Drops what memory holds and counts this writer's records from the log past its
    /// stored checkpoint.
    async fn catch_up(&mut self) {
        self.aggregator.forget();
        self.behind = true;
        let writer = self.aggregator.writer().to_owned();
        for _ in 0..5 {
            let w = match self.store.log_writer(&writer).await {
                Ok(Some(w)) => w,
                Ok(None) => {
                    let _ = self
                        .store
                        .register_log_writer(&writer, gantry_engine::now_ms())
                        .await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("prediction log: {e}");
                    tokio::time::sleep(CHECKPOINT_EVERY).await;
                    continue;
                }
            };
            match take_over(&self.store, &self.artifacts, &w).await {
                Ok(Some(seq)) => {
                    self.checkpointed = seq;
                    self.counted = self.counted.max(seq);
                    self.behind = false;
                    return;
                }
                // Lost a race (another server, a roll-up): read again, shortly.
                Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => {
                    tracing::warn!("prediction log: {e}");
                    tokio::time::sleep(CHECKPOINT_EVERY).await;
                }
            }
        }
    }

    /// Counts what other writers left uncounted: every such writer at start, later only
    /// those whose heartbeat is old.
    async fn adopt(&mut self, before_ms: i64) {
        let stale = match self.store.stale_log_writers(before_ms).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("prediction log: looking for stopped writers: {e}");
                return;
            }
        };
        for w in stale {
            if w.writer == self.aggregator.writer() {
                continue;
            }
            if let Err(e) = take_over(&self.store, &self.artifacts, &w).await {
                tracing::warn!(writer = %w.writer, "prediction log: taking over: {e}");
            }
        }
    }
}

async fn fold(
    store: Store,
    artifacts: ArtifactStore,
    dir: PathBuf,
    aggregator: LogAggregator,
    mut rx: mpsc::Receiver<Fold>,
    ready: tokio::sync::watch::Sender<bool>,
) {
    let writer = aggregator.writer().to_owned();
    if let Err(e) = store
        .register_log_writer(&writer, gantry_engine::now_ms())
        .await
    {
        tracing::warn!("prediction log: registering writer {writer}: {e}");
    }
    let mut f = Folder {
        store,
        artifacts,
        aggregator,
        checkpointed: 0,
        counted: 0,
        behind: false,
    };
    match journal::recover(&f.store, &dir, &writer).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            records = n,
            "prediction log: inserted what a stopped server left in its journal"
        ),
        Err(e) => tracing::warn!("prediction log: reading the journals of stopped servers: {e}"),
    }
    // Readers of the log may go on: what the journals held is in the database.
    let _ = ready.send(true);
    f.adopt(gantry_engine::now_ms() + 1).await;
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut adopt = tokio::time::interval(ADOPT_EVERY);
    adopt.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    adopt.tick().await;
    let mut beats = 0u32;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Fold::Batch(batch)) => f.count(batch).await,
                Some(Fold::Checkpoint(done)) => {
                    // Whatever else queued meanwhile is counted in the same checkpoint.
                    let mut waiting = vec![done];
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            Fold::Batch(batch) => f.count(batch).await,
                            Fold::Checkpoint(other) => waiting.push(other),
                        }
                    }
                    f.checkpoint(false).await;
                    for done in waiting {
                        let _ = done.send(());
                    }
                }
                None => {
                    f.checkpoint(false).await;
                    return;
                }
            },
            _ = tick.tick() => {
                beats += 1;
                // A heartbeat every few seconds even when idle, so a live writer is never
                // taken for a dead one.
                let heartbeat = beats.is_multiple_of(3);
                f.checkpoint(heartbeat).await;
            }
            _ = adopt.tick() => {
                let before = gantry_engine::now_ms() - STALE_AFTER.as_millis() as i64;
                f.adopt(before).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn prediction(id: &str, rows: usize) -> NewPrediction {
        NewPrediction {
            request_id: id.into(),
            deployment: "flowers".into(),
            model: "iris".into(),
            version: 1,
            role: "primary".into(),
            inputs: json!((0..rows).map(|i| json!({"x": i})).collect::<Vec<_>>()).into(),
            outputs: json!((0..rows).map(|_| "a").collect::<Vec<_>>()),
            rows: rows as i64,
            error: None,
            latency_us: 100,
            created_at_ms: gantry_engine::now_ms(),
        }
    }

    /// Rows the monitor's buckets count for the deployment, over every writer.
    async fn counted(store: &Store) -> u64 {
        store
            .monitor_buckets("flowers", 0, i64::MAX)
            .await
            .unwrap()
            .iter()
            .map(|b| {
                serde_json::from_str::<gantry_monitor::aggregate::Aggregate>(&b.state_json)
                    .unwrap()
                    .observations
            })
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_servers_journal_is_inserted_and_counted_exactly_once() {
        let home = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}?mode=rwc", home.path().join("g.db").display());
        let store = Store::connect(&db).await.unwrap();
        let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
        let dir = home.path().join("predlog");

        // A server journals three predictions (answered) and is killed before its writer
        // inserts them: the records exist only in its journal, its lock is released.
        store.register_log_writer("w-dead", 1).await.unwrap();
        {
            let mut j = Journal::create(&dir, "w-dead").unwrap();
            for (i, rows) in [(1, 2), (2, 3), (3, 1)] {
                j.append(&prediction(&format!("dead-{i}"), rows)).unwrap();
            }
        }
        // Another killed server inserted its records but counted none of them.
        store.register_log_writer("w-uncounted", 1).await.unwrap();
        store
            .log_predictions(
                "w-uncounted",
                &[1, 2],
                &[prediction("u-1", 4), prediction("u-2", 1)],
            )
            .await
            .unwrap();

        let log = PredictionLog::start(
            store.clone(),
            artifacts.clone(),
            Arc::new(Metrics::new()),
            JournalDir::Home(dir.clone()),
        );
        log.checkpoint().await;
        assert_eq!(store.count_predictions("flowers").await.unwrap(), 5);
        assert_eq!(counted(&store).await, 6 + 5, "each record counted once");
        let read = store.get_prediction("dead-2").await.unwrap();
        assert_eq!(read.rows, 3);
        assert_eq!(
            store
                .log_writer("w-dead")
                .await
                .unwrap()
                .unwrap()
                .folded_seq,
            3
        );
        // The dead writer's journal is gone; this writer's own is there.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with("w-dead")), "{names:?}");

        // New predictions: answered once journaled, in the log after a flush, counted
        // after a checkpoint; a request id logged before is refused.
        log.record(prediction("new-1", 2), false).await.unwrap();
        log.record(prediction("new-2", 2), true).await.unwrap();
        let dup = log.record(prediction("new-2", 1), true).await.unwrap_err();
        assert!(dup.contains("already"), "{dup}");
        let dead = log.record(prediction("dead-1", 1), true).await.unwrap_err();
        assert!(dead.contains("already"), "{dead}");
        log.flush().await;
        assert_eq!(store.count_predictions("flowers").await.unwrap(), 7);
        log.checkpoint().await;
        assert_eq!(counted(&store).await, 15);
        // Counting again from the log finds nothing new: the checkpoints moved.
        for w in ["w-dead", "w-uncounted"] {
            let w = store.log_writer(w).await.unwrap().unwrap();
            assert_eq!(
                take_over(&store, &artifacts, &w).await.unwrap(),
                Some(w.folded_seq)
            );
        }
        assert_eq!(counted(&store).await, 15);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_writer_taken_over_catches_up_without_counting_twice() {
        let home = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}?mode=rwc", home.path().join("g.db").display());
        let store = Store::connect(&db).await.unwrap();
        let artifacts = ArtifactStore::open_local(&home.path().join("artifacts")).unwrap();
        let log = PredictionLog::start(
            store.clone(),
            artifacts.clone(),
            Arc::new(Metrics::new()),
            JournalDir::Home(home.path().join("predlog")),
        );
        for i in 0..5 {
            log.record(prediction(&format!("a-{i}"), 2), false)
                .await
                .unwrap();
        }
        log.checkpoint().await;
        assert_eq!(counted(&store).await, 10);
        for i in 0..3 {
            log.record(prediction(&format!("b-{i}"), 1), false)
                .await
                .unwrap();
        }
        log.flush().await;
        // Another server takes this writer's uncounted records over while it lives (its
        // heartbeat looked old): its own next checkpoint loses the race and it catches up
        // from the log instead of writing what it held in memory.
        // (Should its own checkpoint have come first, there is nothing to take over and the
        // counts below hold all the same.)
        let writer = store.log_writer(log.writer()).await.unwrap().unwrap();
        take_over(&store, &artifacts, &writer).await.unwrap();
        assert_eq!(counted(&store).await, 13);
        log.record(prediction("c-0", 4), false).await.unwrap();
        log.checkpoint().await;
        assert_eq!(counted(&store).await, 17);
    }
}
