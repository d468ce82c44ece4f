//! A step's output on its way to the store and the caller: blocks of lines from the runtime
//! become chunks of up to about 1 MiB, written at least every 200 ms (a crash loses at most
//! that); past the step's `logs.max` the middle of the log is dropped, keeping the first and
//! the last half of the cap, with a line saying what was dropped. The caller (the terminal of
//! `gantry run`) gets the lines too, at most [`ECHO_LINES_PER_TICK`] per tick, so a step
//! printing millions of lines cannot flood it or grow its queue.

use std::collections::VecDeque;
use std::time::Duration;

use gantry_runtime::{LogBlock, LogStream};
use gantry_store::{LogChunk, MAX_CHUNK_LINES, Store};
use tokio::sync::mpsc;
use tokio::sync::mpsc::UnboundedSender;

use crate::events::{EchoRoom, Event};

/// How often buffered lines are written to the store.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Lines echoed to the caller per [`FLUSH_EVERY`]; the rest are counted in one line.
pub(crate) const ECHO_LINES_PER_TICK: usize = 1000;
/// Echoed lines the caller may have queued and not yet consumed.
const ECHO_IN_FLIGHT: usize = 10_000;
/// The largest chunk written at once.
const MAX_CHUNK_BYTES: u64 = 1 << 20;

/// What the cap decided about a chunk about to be written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Part of the head: kept.
    Head,
    /// The first chunk past the head: a marker line goes first.
    FirstOfTail,
    /// Part of the tail: kept until the tail's newer chunks fill its half.
    Tail,
}

/// The cap's bookkeeping (pure; the store calls are the caller's).
#[derive(Debug)]
pub(crate) struct Cap {
    half: u64,
    head_bytes: u64,
    in_tail: bool,
    /// Chunks of the tail: (id, bytes, lines), oldest first.
    tail: VecDeque<(i64, u64, u64)>,
    tail_bytes: u64,
    pub(crate) dropped_lines: u64,
    pub(crate) dropped_bytes: u64,
}

impl Cap {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            half: max_bytes / 2,
            head_bytes: 0,
            in_tail: false,
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    /// Bytes at which a chunk is written before its tick: small caps get small chunks, so
    /// that what is kept stays close to the cap.
    pub(crate) fn chunk_bytes(&self) -> u64 {
        (self.half / 8).clamp(4 << 10, MAX_CHUNK_BYTES)
    }

    pub(crate) fn place(&mut self, bytes: u64) -> Placement {
        if self.in_tail {
            return Placement::Tail;
        }
        if self.head_bytes + bytes <= self.half || self.head_bytes == 0 {
            self.head_bytes += bytes;
            return Placement::Head;
        }
        self.in_tail = true;
        Placement::FirstOfTail
    }

    /// A chunk `place` placed could not be stored: its place is given back (the head keeps
    /// its room; a marker that was not written will be tried again with the next chunk).
    pub(crate) fn not_written(&mut self, placement: &Placement, bytes: u64) {
        match placement {
            Placement::Head => self.head_bytes = self.head_bytes.saturating_sub(bytes),
            Placement::FirstOfTail => self.in_tail = false,
            Placement::Tail => {}
        }
    }

    /// Records a written tail chunk; returns the oldest tail chunks (id, bytes, lines) to
    /// drop so that the tail fits its half (the newest chunk always stays).
    pub(crate) fn written_tail(&mut self, id: i64, bytes: u64, lines: u64) -> Vec<(i64, u64, u64)> {
        self.tail.push_back((id, bytes, lines));
        self.tail_bytes += bytes;
        let mut drop = Vec::new();
        while self.tail_bytes > self.half && self.tail.len() > 1 {
            let Some(chunk) = self.tail.pop_front() else {
                break;
            };
            self.tail_bytes -= chunk.1;
            self.dropped_bytes += chunk.1;
            self.dropped_lines += chunk.2;
            drop.push(chunk);
        }
        drop
    }

    /// Chunks `written_tail` gave up could not be deleted: they are still in the log, so
    /// they count again (and are tried again with the next chunk).
    pub(crate) fn not_dropped(&mut self, chunks: Vec<(i64, u64, u64)>) {
        for chunk in chunks.into_iter().rev() {
            self.tail_bytes += chunk.1;
            self.dropped_bytes -= chunk.1;
            self.dropped_lines -= chunk.2;
            self.tail.push_front(chunk);
        }
    }
}

/// The marker line written where the log's middle is dropped.
pub(crate) fn marker_text(max_bytes: u64, dropped_lines: u64, dropped_bytes: u64) -> String {
    if dropped_lines == 0 {
        format!(
            "[gantry] the log reached its cap (logs.max = {}): lines after this one are dropped \
             once the last {} of the log is kept",
            human_bytes(max_bytes),
            human_bytes(max_bytes / 2)
        )
    } else {
        format!(
            "[gantry] the log reached its cap (logs.max = {}): {dropped_lines} lines ({}) were \
             dropped here; what follows is the last part of the log",
            human_bytes(max_bytes),
            human_bytes(dropped_bytes)
        )
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (unit, size) in UNITS {
        if b >= size {
            return if b.is_multiple_of(size) {
                format!("{}{unit}", b / size)
            } else {
                format!("{:.1}{unit}", b as f64 / size as f64)
            };
        }
    }
    format!("{b} bytes")
}

/// Where one attempt's output goes.
pub(crate) struct StepLog {
    pub(crate) store: Store,
    pub(crate) run_id: String,
    pub(crate) step_run_id: String,
    pub(crate) step: String,
    pub(crate) max_bytes: u64,
    pub(crate) events: UnboundedSender<Event>,
}

impl StepLog {
    /// Forwards `rx` until the runtime closes it; returns the last non-empty stderr line
    /// (shortened), for the failure reason.
    pub(crate) async fn forward(self, mut rx: mpsc::Receiver<LogBlock>) -> Option<String> {
        let mut w = Writer {
            cap: Cap::new(self.max_bytes),
            marker: None,
            pending: LogChunk::default(),
            log: &self,
        };
        let mut last_stderr = None;
        let mut echoed = 0usize;
        let mut hidden = 0u64;
        let room = std::sync::Arc::new(tokio::sync::Semaphore::new(ECHO_IN_FLIGHT));
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                block = rx.recv() => {
                    let Some(block) = block else { break };
                    let stream = match block.stream {
                        LogStream::Stdout => "stdout",
                        LogStream::Stderr => "stderr",
                    };
                    if block.stream == LogStream::Stderr
                        && let Some(line) = block.lines().rev().find(|l| !l.trim().is_empty())
                    {
                        last_stderr = Some(crate::execute::shorten(line.trim(), 300));
                    }
                    for line in block.lines() {
                        let permit = (echoed < ECHO_LINES_PER_TICK)
                            .then(|| room.clone().try_acquire_owned().ok())
                            .flatten();
                        match permit {
                            Some(permit) => {
                                echoed += 1;
                                let _ = self.events.send(Event::StepLog {
                                    step: self.step.clone(),
                                    stream: stream.into(),
                                    line: line.to_owned(),
                                    room: EchoRoom::held(permit),
                                });
                            }
                            None => hidden += 1,
                        }
                    }
                    let limit = w.cap.chunk_bytes();
                    let ts = now_ms();
                    if ((w.pending.bytes() + block.text.len() + 1) as u64) < limit {
                        w.pending.push_lines(stream, &block.text, block.lines, ts);
                    } else {
                        // Line by line, so that no chunk outgrows the limit by more than a
                        // line (a small cap then keeps close to its size).
                        for line in block.lines() {
                            w.pending.push_lines(stream, line, 1, ts);
                            if w.pending.bytes() as u64 >= limit
                                || w.pending.lines() >= MAX_CHUNK_LINES
                            {
                                w.flush().await;
                            }
                        }
                    }
                }
                _ = tick.tick() => {
                    w.flush().await;
                    self.note_hidden(hidden);
                    hidden = 0;
                    echoed = 0;
                }
            }
        }
        w.flush().await;
        self.note_hidden(hidden);
        w.finish().await;
        last_stderr
    }
}

impl StepLog {
    /// Tells the caller how many lines the echo left out (they are all in the store).
    fn note_hidden(&self, hidden: u64) {
        if hidden == 0 {
            return;
        }
        let _ = self.events.send(Event::StepLog {
            step: self.step.clone(),
            stream: "gantry".into(),
            room: EchoRoom::default(),
            line: format!(
                "… {hidden} more lines not shown here (gantry logs {} {})",
                self.run_id, self.step
            ),
        });
    }
}

struct Writer<'a> {
    cap: Cap,
    marker: Option<i64>,
    pending: LogChunk,
    log: &'a StepLog,
}

impl Writer<'_> {
    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        let (bytes, lines) = (chunk.bytes() as u64, chunk.lines() as u64);
        let placement = self.cap.place(bytes);
        let mut chunks = Vec::with_capacity(2);
        if placement == Placement::FirstOfTail {
            chunks.push(LogChunk::message(
                "gantry",
                chunk.ts_ms,
                &marker_text(self.log.max_bytes, 0, 0),
            ));
        }
        chunks.push(chunk);
        let ids = match self
            .log
            .store
            .append_logs(&self.log.step_run_id, &chunks)
            .await
        {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(
                    "could not store {lines} log lines of {}: {e}",
                    self.log.step_run_id
                );
                self.cap.not_written(&placement, bytes);
                return;
            }
        };
        if placement == Placement::Head {
            return;
        }
        if placement == Placement::FirstOfTail {
            self.marker = ids.first().copied();
        }
        let Some(&id) = ids.last() else { return };
        let drop = self.cap.written_tail(id, bytes, lines);
        let ids: Vec<i64> = drop.iter().map(|c| c.0).collect();
        if !ids.is_empty()
            && let Err(e) = self
                .log
                .store
                .drop_log_chunks(&self.log.step_run_id, &ids)
                .await
        {
            tracing::warn!(
                "could not drop old log lines of {}: {e}",
                self.log.step_run_id
            );
            self.cap.not_dropped(drop);
        }
    }

    async fn finish(self) {
        let Some(marker) = self.marker else { return };
        if self.cap.dropped_lines == 0 {
            return;
        }
        let text = marker_text(
            self.log.max_bytes,
            self.cap.dropped_lines,
            self.cap.dropped_bytes,
        );
        if let Err(e) = self
            .log
            .store
            .rewrite_log_line(&self.log.step_run_id, marker, &text, now_ms())
            .await
        {
            tracing::warn!(
                "could not note the dropped log lines of {}: {e}",
                self.log.step_run_id
            );
        }
    }
}

use crate::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_fills_first_then_the_tail_keeps_the_newest_half() {
        let mut cap = Cap::new(1000);
        assert_eq!(cap.chunk_bytes(), 4 << 10);
        assert_eq!(cap.place(300), Placement::Head);
        assert_eq!(cap.place(200), Placement::Head);
        assert_eq!(cap.place(1), Placement::FirstOfTail);
        assert!(cap.written_tail(10, 1, 1).is_empty());
        assert_eq!(cap.place(300), Placement::Tail);
        assert!(cap.written_tail(11, 300, 30).is_empty());
        assert_eq!(cap.place(300), Placement::Tail);
        // 601 > 500: the oldest tail chunks go, the newest stays.
        assert_eq!(cap.written_tail(12, 300, 30), [(10, 1, 1), (11, 300, 30)]);
        assert_eq!((cap.dropped_lines, cap.dropped_bytes), (31, 301));
        // A chunk larger than the half alone is still kept.
        assert_eq!(cap.written_tail(13, 900, 90), [(12, 300, 30)]);
        assert_eq!(cap.tail.len(), 1);
    }

    #[test]
    fn what_could_not_be_stored_or_dropped_is_accounted_again() {
        let mut cap = Cap::new(1000);
        let first = cap.place(400);
        assert_eq!(first, Placement::Head);
        cap.not_written(&first, 400);
        // The head still has its room.
        assert_eq!(cap.place(500), Placement::Head);
        let marker = cap.place(10);
        assert_eq!(marker, Placement::FirstOfTail);
        // The marker's chunk was lost: the next chunk brings the marker again.
        cap.not_written(&marker, 10);
        assert_eq!(cap.place(10), Placement::FirstOfTail);
        assert!(cap.written_tail(1, 400, 4).is_empty());
        let drop = cap.written_tail(2, 400, 4);
        assert_eq!(drop, [(1, 400, 4)]);
        // The delete failed: chunk 1 is still there and is tried again next time.
        cap.not_dropped(drop);
        assert_eq!((cap.dropped_lines, cap.dropped_bytes), (0, 0));
        assert_eq!(cap.written_tail(3, 10, 1), [(1, 400, 4)]);
        assert_eq!((cap.dropped_lines, cap.dropped_bytes), (4, 400));
    }

    #[test]
    fn a_first_chunk_larger_than_the_head_is_kept_whole() {
        let mut cap = Cap::new(100);
        assert_eq!(cap.place(400), Placement::Head);
        assert_eq!(cap.place(1), Placement::FirstOfTail);
    }

    #[test]
    fn big_caps_write_chunks_of_a_mebibyte() {
        assert_eq!(Cap::new(256 << 20).chunk_bytes(), 1 << 20);
        assert_eq!(Cap::new(1 << 20).chunk_bytes(), 64 << 10);
    }

    #[test]
    fn the_marker_says_what_was_dropped() {
        assert!(marker_text(256 << 20, 0, 0).contains("logs.max = 256Mi"));
        let t = marker_text(1 << 20, 1234, 3 << 19);
        assert!(t.contains("1234 lines (1.5Mi) were dropped"), "{t}");
        assert_eq!(human_bytes(100), "100 bytes");
    }
}
