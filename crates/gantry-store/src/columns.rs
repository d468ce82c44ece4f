//! A prediction's inputs as columns: what the prediction log stores for a request that
//! arrived as tensors (one typed vector per model column) instead of a JSON object per row,
//! so logging a batch copies numbers instead of formatting them, and the monitor counts a
//! column without looking names up row by row.
//!
//! The encoding (little-endian; version 1):
//!
//! ```text
//! "GCOL" u8:version u32:rows u32:columns
//! per column: u32:name length, name (UTF-8), u8:kind, then `rows` values of that kind:
//!   0 f64 (8 bytes)   1 i64 (8 bytes)   2 u64 (8 bytes)   3 bool (1 byte, 0 or 1)
//!   4 text (u32 length, UTF-8)          5 JSON (u32 length, JSON text of any value)
//! ```
//!
//! Read back as rows ([`Columns::to_rows`]), a record is the JSON a row-wise record holds:
//! one object per row with the columns as keys (sorted), a non-finite float as `null`.

use serde_json::{Map, Value};

const MAGIC: &[u8; 4] = b"GCOL";
const VERSION: u8 = 1;

/// The values of one column, one per row.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValues {
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    Text(Vec<String>),
    /// Anything else, as JSON values (null for a missing value).
    Json(Vec<Value>),
}

impl ColumnValues {
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::F64(v) => v.len(),
            ColumnValues::I64(v) => v.len(),
            ColumnValues::U64(v) => v.len(),
            ColumnValues::Bool(v) => v.len(),
            ColumnValues::Text(v) => v.len(),
            ColumnValues::Json(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`'s value as JSON (null past the end).
    pub fn json(&self, i: usize) -> Value {
        let v = match self {
            ColumnValues::F64(v) => v.get(i).map(|x| Value::from(*x)),
            ColumnValues::I64(v) => v.get(i).map(|x| Value::from(*x)),
            ColumnValues::U64(v) => v.get(i).map(|x| Value::from(*x)),
            ColumnValues::Bool(v) => v.get(i).map(|x| Value::Bool(*x)),
            ColumnValues::Text(v) => v.get(i).map(|x| Value::from(x.as_str())),
            ColumnValues::Json(v) => v.get(i).cloned(),
        };
        v.unwrap_or(Value::Null)
    }

    fn kind(&self) -> u8 {
        match self {
            ColumnValues::F64(_) => 0,
            ColumnValues::I64(_) => 1,
            ColumnValues::U64(_) => 2,
            ColumnValues::Bool(_) => 3,
            ColumnValues::Text(_) => 4,
            ColumnValues::Json(_) => 5,
        }
    }
}

/// One named column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub values: ColumnValues,
}

/// A batch of rows stored column by column; every column has one value per row and the
/// names are distinct.
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    rows: usize,
    columns: Vec<Column>,
}

/// Why columns could not be built or read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ColumnsError(pub String);

fn err(detail: impl Into<String>) -> ColumnsError {
    ColumnsError(detail.into())
}

impl Columns {
    /// `rows` rows of `columns`; fails when a column's length differs or a name repeats.
    pub fn new(rows: usize, columns: Vec<Column>) -> Result<Columns, ColumnsError> {
        let mut names: Vec<&str> = Vec::with_capacity(columns.len());
        for c in &columns {
            if c.values.len() != rows {
                return Err(err(format!(
                    "column `{}` has {} values for {rows} rows",
                    c.name,
                    c.values.len()
                )));
            }
            if names.contains(&c.name.as_str()) {
                return Err(err(format!("column `{}` appears twice", c.name)));
            }
            names.push(&c.name);
        }
        Ok(Columns { rows, columns })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The rows as JSON objects (keys sorted, as a row-wise record holds them).
    pub fn to_rows(&self) -> Value {
        let mut order: Vec<&Column> = self.columns.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        Value::Array(
            (0..self.rows)
                .map(|i| {
                    let mut row = Map::with_capacity(order.len());
                    for c in &order {
                        row.insert(c.name.clone(), c.values.json(i));
                    }
                    Value::Object(row)
                })
                .collect(),
        )
    }

    /// Exactly the length of [`Columns::encode`]'s output, without encoding (JSON columns
    /// are measured by serializing them).
    pub fn encoded_len(&self) -> usize {
        let mut n = 4 + 1 + 4 + 4;
        for c in &self.columns {
            n += 4 + c.name.len() + 1;
            n += match &c.values {
                ColumnValues::F64(v) => v.len() * 8,
                ColumnValues::I64(v) => v.len() * 8,
                ColumnValues::U64(v) => v.len() * 8,
                ColumnValues::Bool(v) => v.len(),
                ColumnValues::Text(v) => v.iter().map(|s| 4 + s.len()).sum(),
                ColumnValues::Json(v) => v.iter().map(|x| 4 + x.to_string().len()).sum(),
            };
        }
        n
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_len(&mut out, self.rows);
        put_len(&mut out, self.columns.len());
        for c in &self.columns {
            put_len(&mut out, c.name.len());
            out.extend_from_slice(c.name.as_bytes());
            out.push(c.values.kind());
            match &c.values {
                ColumnValues::F64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                ColumnValues::I64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                ColumnValues::U64(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                ColumnValues::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
                ColumnValues::Text(v) => {
                    for s in v {
                        put_len(&mut out, s.len());
                        out.extend_from_slice(s.as_bytes());
                    }
                }
                ColumnValues::Json(v) => {
                    for x in v {
                        let text = x.to_string();
                        put_len(&mut out, text.len());
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
        }
        out
    }

    /// Reads [`Columns::encode`]'s output back; anything malformed is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Columns, ColumnsError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(err("not a column record (bad magic)"));
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(err(format!("column record version {version} is unknown")));
        }
        let rows = r.len()?;
        let count = r.len()?;
        let mut columns = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            let n = r.len()?;
            let name = std::str::from_utf8(r.take(n)?)
                .map_err(|_| err("a column name is not UTF-8"))?
                .to_string();
            let kind = r.take(1)?[0];
            // Bounded by what is left before anything is allocated.
            let fixed = |width: usize| -> Result<(), ColumnsError> {
                if rows.checked_mul(width).is_none_or(|need| need > r.left()) {
                    Err(err(format!("column `{name}` is cut short")))
                } else {
                    Ok(())
                }
            };
            let values = match kind {
                0 => {
                    fixed(8)?;
                    ColumnValues::F64(
                        (0..rows)
                            .map(|_| r.array8().map(f64::from_le_bytes))
                            .collect::<Result<_, _>>()?,
                    )
                }
                1 => {
                    fixed(8)?;
                    ColumnValues::I64(
                        (0..rows)
                            .map(|_| r.array8().map(i64::from_le_bytes))
                            .collect::<Result<_, _>>()?,
                    )
                }
                2 => {
                    fixed(8)?;
                    ColumnValues::U64(
                        (0..rows)
                            .map(|_| r.array8().map(u64::from_le_bytes))
                            .collect::<Result<_, _>>()?,
                    )
                }
                3 => {
                    fixed(1)?;
                    ColumnValues::Bool(r.take(rows)?.iter().map(|b| *b != 0).collect())
                }
                4 | 5 => {
                    // Each value takes at least its 4-byte length.
                    fixed(4)?;
                    let mut texts = Vec::with_capacity(rows);
                    for _ in 0..rows {
                        let n = r.len()?;
                        let text = std::str::from_utf8(r.take(n)?).map_err(|_| {
                            err(format!("column `{name}` holds text that is not UTF-8"))
                        })?;
                        texts.push(text);
                    }
                    if kind == 4 {
                        ColumnValues::Text(texts.into_iter().map(str::to_owned).collect())
                    } else {
                        ColumnValues::Json(
                            texts
                                .into_iter()
                                .map(serde_json::from_str)
                                .collect::<Result<_, _>>()
                                .map_err(|e| err(format!("column `{name}`: {e}")))?,
                        )
                    }
                }
                other => return Err(err(format!("column `{name}` has unknown kind {other}"))),
            };
            columns.push(Column { name, values });
        }
        if r.left() != 0 {
            return Err(err(format!("{} bytes follow the last column", r.left())));
        }
        Columns::new(rows, columns)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Lengths above u32::MAX never reach here: records are bounded far below.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ColumnsError> {
        if n > self.left() {
            return Err(err("the column record is cut short"));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array8(&mut self) -> Result<[u8; 8], ColumnsError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(a)
    }

    fn len(&mut self) -> Result<usize, ColumnsError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Columns {
        Columns::new(
            3,
            vec![
                Column {
                    name: "b".into(),
                    values: ColumnValues::F64(vec![1.5, f64::NAN, -0.0]),
                },
                Column {
                    name: "a".into(),
                    values: ColumnValues::I64(vec![1, -2, i64::MAX]),
                },
                Column {
                    name: "u".into(),
                    values: ColumnValues::U64(vec![0, u64::MAX, 7]),
                },
                Column {
                    name: "flag".into(),
                    values: ColumnValues::Bool(vec![true, false, true]),
                },
                Column {
                    name: "city".into(),
                    values: ColumnValues::Text(vec!["Zürich".into(), String::new(), "x".into()]),
                },
                Column {
                    name: "any".into(),
                    values: ColumnValues::Json(vec![json!(null), json!({"k": [1]}), json!("s")]),
                },
            ],
        )
        .expect("valid")
    }

    #[test]
    fn round_trips_and_reads_back_as_sorted_rows() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(bytes.len(), c.encoded_len());
        let back = Columns::decode(&bytes).expect("decodes");
        // NaN != NaN: compare the rows instead.
        assert_eq!(back.to_rows(), c.to_rows());
        let rows = c.to_rows();
        assert_eq!(
            rows[0],
            json!({"a": 1, "any": null, "b": 1.5, "city": "Zürich", "flag": true, "u": 0})
        );
        assert_eq!(rows[1]["b"], Value::Null, "NaN reads back as null");
        assert_eq!(rows[1]["u"], json!(u64::MAX));
        let keys: Vec<&String> = rows[2].as_object().expect("object").keys().collect();
        assert_eq!(keys, ["a", "any", "b", "city", "flag", "u"]);
    }

    #[test]
    fn mismatched_lengths_and_repeated_names_are_refused() {
        let short = Columns::new(
            2,
            vec![Column {
                name: "x".into(),
                values: ColumnValues::F64(vec![1.0]),
            }],
        );
        assert!(short.unwrap_err().0.contains("1 values for 2 rows"));
        let twice = Columns::new(
            1,
            vec![
                Column {
                    name: "x".into(),
                    values: ColumnValues::F64(vec![1.0]),
                },
                Column {
                    name: "x".into(),
                    values: ColumnValues::I64(vec![1]),
                },
            ],
        );
        assert!(twice.unwrap_err().0.contains("appears twice"));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Columns::decode(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Columns::decode(&longer).unwrap_err().0.contains("follow"));
        // A row count far beyond the bytes present is refused before allocating.
        let mut huge = bytes.clone();
        huge[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Columns::decode(&huge).is_err());
        let mut kind = bytes;
        // The first column's kind byte follows the header (13 bytes), its length and name "b".
        kind[13 + 4 + 1] = 9;
        assert!(
            Columns::decode(&kind)
                .unwrap_err()
                .0
                .contains("unknown kind 9")
        );
    }
}
