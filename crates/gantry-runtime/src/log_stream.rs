//! Turns a container's output pipe into [`LogBlock`]s.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc::Sender;

use crate::{LogBlock, LogStream};

/// Longest line delivered in a [`LogBlock`]; longer ones are split so that a step printing
/// gigabytes without a newline cannot make us buffer them.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`], never cutting a UTF-8
/// character in two.
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(&[u8])) {
        self.pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(offset) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + offset;
            let mut line_start = start;
            while end - line_start > MAX_LINE_BYTES {
                let cut = line_start + utf8_cut(&self.pending[line_start..end], MAX_LINE_BYTES);
                emit(&self.pending[line_start..cut]);
                line_start = cut;
            }
            emit(&self.pending[line_start..end]);
            start = end + 1;
        }
        while self.pending.len() - start > MAX_LINE_BYTES {
            let cut = start + utf8_cut(&self.pending[start..], MAX_LINE_BYTES);
            emit(&self.pending[start..cut]);
            start = cut;
        }
        self.pending.drain(..start);
    }

    /// The last line when the stream ended without a newline.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then_some(self.pending)
    }
}

/// A cut point `<= max` that does not split a multi-byte UTF-8 sequence (when the data is
/// UTF-8 at all; arbitrary bytes are cut at `max`).
fn utf8_cut(data: &[u8], max: usize) -> usize {
    if data.len() <= max {
        return data.len();
    }
    for back in 1..=3 {
        let Some(i) = max.checked_sub(back) else {
            break;
        };
        let b = data[i];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let width = match b {
            0xF0..=0xF7 => 4,
            0xE0..=0xEF => 3,
            0xC0..=0xDF => 2,
            _ => return max,
        };
        return if back < width && i > 0 { i } else { max };
    }
    max
}

/// Bytes read from the pipe at a time; also about the largest [`LogBlock`] sent.
const READ_BYTES: usize = 64 * 1024;

/// Reads `reader` to its end, sending the complete lines of each read as one [`LogBlock`]. A
/// full channel makes this wait (the container then blocks on its next write, which is the
/// back-pressure we want); a closed one makes it discard lines but keep draining, so the
/// container never blocks on a dead reader.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: LogStream,
    logs: Sender<LogBlock>,
) {
    let mut splitter = LineSplitter::default();
    let mut chunk = vec![0u8; READ_BYTES];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut block = Block::default();
        splitter.push(&chunk[..n], |line| block.push(line));
        if block.lines > 0 && !logs.is_closed() {
            let _ = logs.send(block.finish(stream)).await;
        }
    }
    if let Some(rest) = splitter.finish() {
        let mut block = Block::default();
        block.push(&rest);
        let _ = logs.send(block.finish(stream)).await;
    }
}

/// Lines joined into one string as they are split off.
#[derive(Default)]
struct Block {
    text: String,
    lines: usize,
}

impl Block {
    fn push(&mut self, line: &[u8]) {
        if self.lines > 0 {
            self.text.push('\n');
        }
        self.text.push_str(&String::from_utf8_lossy(line));
        self.lines += 1;
    }

    fn finish(self, stream: LogStream) -> LogBlock {
        LogBlock {
            stream,
            text: self.text,
            lines: self.lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            splitter.push(c, |l| out.push(l.to_vec()));
        }
        out.extend(splitter.finish());
        out
    }

    #[test]
    fn lines_are_reassembled_across_chunks() {
        assert_eq!(
            split(&[b"he", b"llo\nwor", b"ld\n\nlast"]),
            [&b"hello"[..], b"world", b"", b"last"]
        );
        assert!(split(&[b""]).is_empty());
        assert_eq!(split(&[b"a\n"]), [b"a"]);
    }

    #[test]
    fn long_lines_are_split_at_the_limit() {
        let long = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let mut input = long.clone();
        input.push(b'\n');
        let out = split(&[&input[..1000], &input[1000..]]);
        assert_eq!(
            out.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_LINE_BYTES, MAX_LINE_BYTES, 10]
        );
        assert_eq!(out.concat(), long);
        // Without a newline the buffer still never grows past the limit.
        let out = split(&[&long]);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn splitting_never_cuts_a_utf8_character() {
        // 'é' is 2 bytes; put one across the limit.
        let mut input = vec![b'a'; MAX_LINE_BYTES - 1];
        input.extend("é".as_bytes());
        input.extend(b"tail\n");
        let out = split(&[&input]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), MAX_LINE_BYTES - 1);
        assert!(std::str::from_utf8(&out[0]).is_ok());
        assert_eq!(out[1], "étail".as_bytes());
        // A 4-byte character right at the limit stays whole too.
        let mut input = vec![b'a'; MAX_LINE_BYTES - 2];
        input.extend("🦀".as_bytes());
        let out = split(&[&input]);
        assert!(out.iter().all(|l| std::str::from_utf8(l).is_ok()));
    }

    #[tokio::test]
    async fn pump_sends_lines_in_order_and_survives_a_closed_channel() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let data: &[u8] = b"one\ntwo\n\nthree\nfour";
        let task = tokio::spawn(pump(data, LogStream::Stderr, tx));
        let mut got = Vec::new();
        while let Some(block) = rx.recv().await {
            assert_eq!(block.stream, LogStream::Stderr);
            assert_eq!(block.lines().count(), block.lines);
            got.extend(block.lines().map(str::to_owned));
        }
        task.await.unwrap();
        assert_eq!(got, ["one", "two", "", "three", "four"]);

        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let many = "line\n".repeat(1000);
        pump(many.as_bytes(), LogStream::Stdout, tx).await;
    }

    #[tokio::test]
    async fn a_million_lines_arrive_in_a_few_hundred_blocks() {
        let data: String = (0..1_000_000).map(|i| format!("{i}\n")).collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let reader = std::io::Cursor::new(data.clone().into_bytes());
        let task = tokio::spawn(pump(reader, LogStream::Stdout, tx));
        let (mut blocks, mut lines, mut text) = (0, 0, String::new());
        while let Some(block) = rx.recv().await {
            blocks += 1;
            lines += block.lines;
            text.push_str(&block.text);
            text.push('\n');
        }
        task.await.unwrap();
        assert_eq!(lines, 1_000_000);
        assert_eq!(text, data);
        assert!(blocks <= data.len() / READ_BYTES + 2, "{blocks} blocks");
    }
}
