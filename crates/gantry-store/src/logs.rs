//! A step's log, kept as chunks of lines (migration 14): one row per flush of a step's
//! output, so a step printing a million lines costs tens of rows, not a million. A line's
//! position, which followers resume from, is `chunk id << 20 | index in the chunk`.

use serde::Serialize;
use sqlx::AssertSqlSafe;

use crate::error::StoreError;
use crate::store::{Backend, Store, column};

/// Bits of a line position that number the line within its chunk.
pub const LINE_INDEX_BITS: u32 = 20;
/// Most lines in one chunk (positions keep `LINE_INDEX_BITS` for the index).
pub const MAX_CHUNK_LINES: usize = (1 << LINE_INDEX_BITS) - 1;

/// The position of line `index` of chunk `chunk_id`.
pub fn line_position(chunk_id: i64, index: usize) -> i64 {
    (chunk_id << LINE_INDEX_BITS) | index as i64
}

/// The chunk id and line index of a position.
pub fn split_position(position: i64) -> (i64, usize) {
    let position = position.max(0);
    (
        position >> LINE_INDEX_BITS,
        (position & ((1 << LINE_INDEX_BITS) - 1)) as usize,
    )
}

/// Lines of one step run to append, from one or several streams, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogChunk {
    pub ts_ms: i64,
    pub ts_last_ms: i64,
    /// Runs of consecutive lines from one stream: (stream code, lines).
    runs: Vec<(u8, usize)>,
    /// The lines joined by '\n'.
    data: String,
    lines: usize,
}

impl LogChunk {
    /// A message of the engine's own (`stream` "gantry"), or any text of one stream; a text
    /// with newlines is that many lines.
    pub fn message(stream: &str, ts_ms: i64, text: &str) -> Self {
        let mut chunk = Self::default();
        let text = text.strip_suffix('\n').unwrap_or(text);
        chunk.push_lines(stream, text, text.matches('\n').count() + 1, ts_ms);
        chunk
    }

    /// Appends `lines` lines of `stream`, joined by '\n' in `text` (without a final '\n').
    pub fn push_lines(&mut self, stream: &str, text: &str, lines: usize, ts_ms: i64) {
        if lines == 0 {
            return;
        }
        if self.lines == 0 {
            self.ts_ms = ts_ms;
        } else {
            self.data.push('\n');
        }
        self.ts_last_ms = ts_ms;
        self.data.push_str(&storable_text(text));
        self.lines += lines;
        let code = stream_code(stream);
        match self.runs.last_mut() {
            Some((c, n)) if *c == code => *n += lines,
            _ => self.runs.push((code, lines)),
        }
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The log bytes the chunk stands for: its lines, each with its newline.
    pub fn bytes(&self) -> usize {
        if self.lines == 0 {
            0
        } else {
            self.data.len() + 1
        }
    }

    /// The text, lines joined by '\n'.
    pub fn text(&self) -> &str {
        &self.data
    }

    fn streams(&self) -> String {
        let mut s = String::new();
        for (code, n) in &self.runs {
            s.push(*code as char);
            s.push_str(&n.to_string());
        }
        s
    }
}

fn stream_code(stream: &str) -> u8 {
    match stream {
        "stdout" => b'o',
        "stderr" => b'e',
        _ => b'g',
    }
}

fn stream_name(code: u8) -> &'static str {
    match code {
        b'o' => "stdout",
        b'e' => "stderr",
        _ => "gantry",
    }
}

/// A stored chunk of a step run's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogChunkRow {
    pub id: i64,
    pub step: String,
    pub attempt: i64,
    /// The number of the chunk's first line in its step run's log, from 0.
    pub first_line: i64,
    pub line_count: i64,
    /// Stream runs, e.g. "o120e3g1" (see [`LogChunkRow::lines`]).
    pub streams: String,
    pub ts_ms: i64,
    pub ts_last_ms: i64,
    pub data: String,
}

impl LogChunkRow {
    /// The lines with their stream, in order.
    pub fn lines(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        let mut runs = parse_streams(&self.streams).into_iter();
        let mut current: Option<(&'static str, usize)> = None;
        self.data.split('\n').map(move |text| {
            loop {
                match &mut current {
                    Some((name, left)) if *left > 0 => {
                        *left -= 1;
                        return (*name, text);
                    }
                    _ => match runs.next() {
                        Some((code, n)) => current = Some((stream_name(code), n)),
                        // More lines than the runs count (never written so): stdout.
                        None => return ("stdout", text),
                    },
                }
            }
        })
    }

    /// The lines positioned after `after` (all of them for an earlier chunk).
    pub fn lines_after(&self, after: i64) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        let (chunk, index) = split_position(after);
        let skip = match self.id.cmp(&chunk) {
            std::cmp::Ordering::Greater => 0,
            std::cmp::Ordering::Equal => index + 1,
            std::cmp::Ordering::Less => usize::MAX,
        };
        self.lines().skip(skip)
    }

    /// The position of the chunk's last line.
    pub fn last_position(&self) -> i64 {
        line_position(self.id, (self.line_count.max(1) - 1) as usize)
    }

    /// The lines as rows, each with its position.
    pub fn rows(&self) -> impl Iterator<Item = LogRow> + '_ {
        self.lines()
            .enumerate()
            .map(move |(i, (stream, text))| LogRow {
                id: line_position(self.id, i),
                line: self.first_line + i as i64,
                step: self.step.clone(),
                attempt: self.attempt,
                stream: stream.to_owned(),
                ts_ms: self.ts_ms,
                data: text.to_owned(),
            })
    }
}

fn parse_streams(streams: &str) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let bytes = streams.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes[i];
        i += 1;
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n = std::str::from_utf8(&bytes[start..i])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        out.push((code, n));
    }
    out
}

/// One line of a step's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogRow {
    /// The line's position (see the module docs); followers resume after it.
    pub id: i64,
    /// The line's number in its step run's log, from 0.
    pub line: i64,
    pub step: String,
    pub attempt: i64,
    pub stream: String,
    /// When the chunk holding the line was captured (lines are batched every 200 ms).
    pub ts_ms: i64,
    pub data: String,
}

const CHUNK_COLUMNS: &str = "c.id, s.step, s.attempt, c.first_line, c.line_count, c.streams, \
     c.ts_ms, c.ts_last_ms, c.data";

/// Which chunks of a run to read.
#[derive(Clone, Debug, Default)]
pub struct ChunkQuery<'a> {
    pub step: Option<&'a str>,
    /// Only chunks with an id above this one (ascending order) or, with `backwards`, below
    /// it (`0`: from the end).
    pub from: i64,
    pub backwards: bool,
    /// Only chunks holding this text (case-sensitive).
    pub contains: Option<&'a str>,
    /// Only chunks captured at or after this time.
    pub since_ms: Option<i64>,
    pub limit: i64,
}

impl ChunkQuery<'_> {
    /// The `from` that reads onwards from line position `after`: the chunk holding it may
    /// have lines past it.
    pub fn from_position(after: i64) -> i64 {
        if after > 0 {
            split_position(after).0 - 1
        } else {
            0
        }
    }
}

impl Store {
    /// Appends the chunks to a step run's log in one transaction, so a follower sees all of
    /// them or none; returns their ids. Empty chunks are skipped (id 0).
    pub async fn append_logs(
        &self,
        step_run_id: &str,
        chunks: &[LogChunk],
    ) -> Result<Vec<i64>, StoreError> {
        if chunks.iter().all(LogChunk::is_empty) {
            return Ok(vec![0; chunks.len()]);
        }
        if let Some(c) = chunks.iter().find(|c| c.lines > MAX_CHUNK_LINES) {
            return Err(StoreError::Invalid {
                what: "log chunk".into(),
                detail: format!("{} lines, at most {MAX_CHUNK_LINES}", c.lines),
            });
        }
        let op = || format!("appending logs of step run {step_run_id}");
        // The run id never changes, so it is read before the write transaction (on SQLite a
        // read inside it would need the write lock anyway).
        let run_id: String = sqlx::query("SELECT run_id FROM step_runs WHERE id = $1")
            .bind(step_run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query(op()))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "step run",
                id: step_run_id.to_owned(),
            })
            .and_then(|row| column(&row, "run_id"))?;
        let mut tx = self.begin_write(&op()).await?;
        if self.backend == Backend::Postgres {
            // Identity values are handed out at insert time but become visible at commit, so
            // two concurrent appenders could commit ids out of order and a follower paging
            // with after_id would skip rows. Appenders of one run take turns on the run's row
            // instead. NO KEY UPDATE does not block foreign-key checks against the row.
            sqlx::query("SELECT id FROM runs WHERE id = $1 FOR NO KEY UPDATE")
                .bind(&run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        }
        let last = sqlx::query(
            "SELECT first_line + line_count AS next FROM log_chunks \
             WHERE step_run_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(step_run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query(op()))?;
        let mut next_line: i64 = match last {
            Some(row) => column(&row, "next")?,
            None => 0,
        };
        let mut ids = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            if chunk.is_empty() {
                ids.push(0);
                continue;
            }
            let row = sqlx::query(
                "INSERT INTO log_chunks (run_id, step_run_id, first_line, line_count, streams, \
                 ts_ms, ts_last_ms, bytes, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 RETURNING id",
            )
            .bind(&run_id)
            .bind(step_run_id)
            .bind(next_line)
            .bind(chunk.lines as i64)
            .bind(chunk.streams())
            .bind(chunk.ts_ms)
            .bind(chunk.ts_last_ms)
            .bind(chunk.bytes() as i64)
            .bind(&chunk.data)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query(op()))?;
            ids.push(column(&row, "id")?);
            next_line += chunk.lines as i64;
        }
        tx.commit().await.map_err(StoreError::query(op()))?;
        Ok(ids)
    }

    /// Removes chunks of a step run's log (the log cap drops the oldest of its tail); the
    /// lines they held keep their numbers, so later lines do not move.
    pub async fn drop_log_chunks(&self, step_run_id: &str, ids: &[i64]) -> Result<(), StoreError> {
        let op = || format!("dropping log chunks of step run {step_run_id}");
        let mut tx = self.begin_write(&op()).await?;
        for id in ids {
            sqlx::query("DELETE FROM log_chunks WHERE step_run_id = $1 AND id = $2")
                .bind(step_run_id)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(op()))?;
        }
        tx.commit().await.map_err(StoreError::query(op()))
    }

    /// Rewrites the text of a one-line chunk (the log cap's marker, once it knows how much
    /// it dropped).
    pub async fn rewrite_log_line(
        &self,
        step_run_id: &str,
        id: i64,
        text: &str,
        ts_ms: i64,
    ) -> Result<(), StoreError> {
        let text = storable_text(text).replace('\n', " ");
        sqlx::query(
            "UPDATE log_chunks SET data = $1, bytes = $2, ts_last_ms = $3 \
             WHERE step_run_id = $4 AND id = $5 AND line_count = 1",
        )
        .bind(&text)
        .bind(text.len() as i64 + 1)
        .bind(ts_ms)
        .bind(step_run_id)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "rewriting a log line of step run {step_run_id}"
        )))?;
        Ok(())
    }

    /// Chunks of a run's log (optionally one step's, all attempts), in id order (or reverse
    /// order with `backwards`).
    pub async fn log_chunks(
        &self,
        run_id: &str,
        q: &ChunkQuery<'_>,
    ) -> Result<Vec<LogChunkRow>, StoreError> {
        let mut sql = format!(
            "SELECT {CHUNK_COLUMNS} FROM log_chunks c JOIN step_runs s ON s.id = c.step_run_id \
             WHERE c.run_id = $1"
        );
        let mut n = 1;
        let mut next = || {
            n += 1;
            n
        };
        if q.backwards {
            if q.from > 0 {
                sql.push_str(&format!(" AND c.id < ${}", next()));
            }
        } else {
            sql.push_str(&format!(" AND c.id > ${}", next()));
        }
        if q.step.is_some() {
            sql.push_str(&format!(" AND s.step = ${}", next()));
        }
        if q.contains.is_some() {
            let i = next();
            sql.push_str(&match self.backend {
                Backend::Sqlite => format!(" AND instr(c.data, ${i}) > 0"),
                Backend::Postgres => format!(" AND strpos(c.data, ${i}) > 0"),
            });
        }
        if q.since_ms.is_some() {
            sql.push_str(&format!(" AND c.ts_last_ms >= ${}", next()));
        }
        sql.push_str(if q.backwards {
            " ORDER BY c.id DESC"
        } else {
            " ORDER BY c.id"
        });
        sql.push_str(&format!(" LIMIT ${}", next()));
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(run_id);
        if !q.backwards || q.from > 0 {
            query = query.bind(q.from);
        }
        if let Some(step) = q.step {
            query = query.bind(step);
        }
        if let Some(needle) = q.contains {
            query = query.bind(needle);
        }
        if let Some(since) = q.since_ms {
            query = query.bind(since);
        }
        let limit = if q.limit <= 0 { i64::MAX } else { q.limit };
        let rows = query
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(format!(
                "reading the logs of run {run_id}"
            )))?;
        rows.iter()
            .map(|row| {
                Ok(LogChunkRow {
                    id: column(row, "id")?,
                    step: column(row, "step")?,
                    attempt: column(row, "attempt")?,
                    first_line: column(row, "first_line")?,
                    line_count: column(row, "line_count")?,
                    streams: column(row, "streams")?,
                    ts_ms: column(row, "ts_ms")?,
                    ts_last_ms: column(row, "ts_last_ms")?,
                    data: column(row, "data")?,
                })
            })
            .collect()
    }

    /// Lines of the run (optionally of one step, all attempts) after position `after`, in
    /// order; at most `limit` lines (`limit <= 0`: no limit). Following a live run means
    /// calling again with the last position seen.
    pub async fn logs(
        &self,
        run_id: &str,
        step: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        self.log_lines(run_id, step, None, None, after, limit).await
    }

    /// [`Store::logs`] of the chunks captured at or after `since_ms` only.
    pub async fn logs_since(
        &self,
        run_id: &str,
        step: Option<&str>,
        since_ms: Option<i64>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        self.log_lines(run_id, step, None, since_ms, after, limit)
            .await
    }

    /// Lines of a run (or one step) after position `after` that contain `needle`
    /// (case-sensitive), at most `limit` (at least one).
    pub async fn search_logs(
        &self,
        run_id: &str,
        step: Option<&str>,
        needle: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        self.log_lines(run_id, step, Some(needle), None, after, limit.max(1))
            .await
    }

    async fn log_lines(
        &self,
        run_id: &str,
        step: Option<&str>,
        needle: Option<&str>,
        since_ms: Option<i64>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        let limit = if limit <= 0 {
            usize::MAX
        } else {
            limit as usize
        };
        let mut from = ChunkQuery::from_position(after);
        let mut out = Vec::new();
        loop {
            let page = self
                .log_chunks(
                    run_id,
                    &ChunkQuery {
                        step,
                        from,
                        contains: needle,
                        since_ms,
                        limit: 16,
                        ..ChunkQuery::default()
                    },
                )
                .await?;
            for c in &page {
                for row in c.rows() {
                    if row.id <= after || needle.is_some_and(|n| !row.data.contains(n)) {
                        continue;
                    }
                    out.push(row);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            match page.last() {
                Some(c) if page.len() == 16 => from = c.id,
                _ => return Ok(out),
            }
        }
    }

    /// The position after which the last `n` lines of a run's log (or one step's) captured
    /// since `since_ms` that `keep` accepts begin: reading from it gives those lines and then
    /// any newer ones (0 when there are fewer).
    pub async fn log_tail_start(
        &self,
        run_id: &str,
        step: Option<&str>,
        n: u64,
        since_ms: Option<i64>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<i64, StoreError> {
        if n == 0 {
            return self.last_log_id(run_id).await;
        }
        let mut from = 0;
        let mut found = 0u64;
        loop {
            let page = self
                .log_chunks(
                    run_id,
                    &ChunkQuery {
                        step,
                        from,
                        backwards: true,
                        since_ms,
                        limit: 16,
                        ..ChunkQuery::default()
                    },
                )
                .await?;
            for c in &page {
                let lines: Vec<&str> = c.data.split('\n').collect();
                for (i, text) in lines.iter().enumerate().rev() {
                    if keep(text) {
                        found += 1;
                        if found == n {
                            return Ok(line_position(c.id, i) - 1);
                        }
                    }
                }
            }
            match page.last() {
                Some(c) if page.len() == 16 => from = c.id,
                _ => return Ok(0),
            }
        }
    }

    /// Whether the log being followed can grow no more: the run has ended or, for one step,
    /// its latest attempt has ended in a way no retry follows (succeeded, cached, skipped,
    /// cancelled, interrupted; a failed attempt may be retried, so it waits for the run).
    pub async fn log_complete(&self, run_id: &str, step: Option<&str>) -> Result<bool, StoreError> {
        if self.get_run(run_id).await?.status.is_terminal() {
            return Ok(true);
        }
        let Some(step) = step else { return Ok(false) };
        let latest = self
            .list_step_runs(run_id)
            .await?
            .into_iter()
            .filter(|s| s.step == step)
            .max_by_key(|s| s.attempt);
        Ok(latest.is_some_and(|s| s.status.is_terminal() && s.status != crate::StepStatus::Failed))
    }

    /// The position of the last line of a run's log (0 when it has none), where a live
    /// tail starts.
    pub async fn last_log_id(&self, run_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT id, line_count FROM log_chunks WHERE run_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query(format!(
            "reading the logs of run {run_id}"
        )))?;
        Ok(match row {
            Some(row) => {
                let lines: i64 = column(&row, "line_count")?;
                line_position(column(&row, "id")?, lines.max(1) as usize - 1)
            }
            None => 0,
        })
    }
}

/// PostgreSQL text cannot hold NUL; a step may print one. Replaced on both backends so the
/// stored log does not depend on the backend.
fn storable_text(data: &str) -> std::borrow::Cow<'_, str> {
    if data.contains('\0') {
        std::borrow::Cow::Owned(data.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_split_back_into_chunk_and_index() {
        for (chunk, index) in [(1, 0), (7, 5), (123_456, MAX_CHUNK_LINES)] {
            assert_eq!(split_position(line_position(chunk, index)), (chunk, index));
        }
        assert!(line_position(2, 0) > line_position(1, MAX_CHUNK_LINES));
        assert_eq!(split_position(0), (0, 0));
    }

    #[test]
    fn a_chunk_remembers_the_stream_of_each_line() {
        let mut c = LogChunk::default();
        c.push_lines("stdout", "a\nb", 2, 10);
        c.push_lines("stdout", "c", 1, 11);
        c.push_lines("stderr", "", 1, 12);
        c.push_lines("gantry", "note\0", 1, 13);
        c.push_lines("stdout", "d", 1, 14);
        assert_eq!(c.streams(), "o3e1g1o1");
        assert_eq!(c.lines(), 6);
        assert_eq!(c.bytes(), "a\nb\nc\n\nnote\u{FFFD}\nd\n".len());
        assert_eq!((c.ts_ms, c.ts_last_ms), (10, 14));
        let row = LogChunkRow {
            id: 3,
            step: "s".into(),
            attempt: 1,
            first_line: 100,
            line_count: c.lines() as i64,
            streams: c.streams(),
            ts_ms: c.ts_ms,
            ts_last_ms: c.ts_last_ms,
            data: c.text().to_owned(),
        };
        let lines: Vec<_> = row.lines().collect();
        assert_eq!(
            lines,
            [
                ("stdout", "a"),
                ("stdout", "b"),
                ("stdout", "c"),
                ("stderr", ""),
                ("gantry", "note\u{FFFD}"),
                ("stdout", "d")
            ]
        );
        let rows: Vec<_> = row.rows().collect();
        assert_eq!(rows[4].line, 104);
        assert_eq!(split_position(rows[4].id), (3, 4));
        // Resuming: after a line of this chunk, after an earlier chunk, after a later one.
        let after: Vec<_> = row.lines_after(rows[3].id).map(|(_, t)| t).collect();
        assert_eq!(after, ["note\u{FFFD}", "d"]);
        assert_eq!(row.lines_after(line_position(2, 9)).count(), 6);
        assert_eq!(row.lines_after(0).count(), 6);
        assert_eq!(row.lines_after(line_position(4, 0)).count(), 0);
        assert_eq!(row.last_position(), rows[5].id);
        assert_eq!(ChunkQuery::from_position(rows[3].id), 2);
        assert_eq!(ChunkQuery::from_position(0), 0);
    }

    #[test]
    fn a_message_is_as_many_lines_as_it_has() {
        let c = LogChunk::message("gantry", 5, "one\ntwo\n");
        assert_eq!(
            (c.lines(), c.streams(), c.text()),
            (2, "g2".into(), "one\ntwo")
        );
        assert!(LogChunk::default().is_empty());
    }
}
