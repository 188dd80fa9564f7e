//! Reading an export one row at a time: CSV (any delimiter, found from the header line
//! when not given; quoted fields with delimiters, quotes and line breaks; UTF-8 with or
//! without a byte-order mark) or JSON lines. Nothing but the current row is held, so a
//! file of any length reads in constant memory.
//!
//! A row that cannot be read (a line that is not JSON, a CSV row that is not UTF-8 or
//! has another number of fields than the header) is a [`RowError`] for the rejects file;
//! only a failure to read the file itself stops the import.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Map, Value};

use super::ImportError;

/// Longest JSON line read; a longer one is a row error (and skipped, not held).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// The delimiters looked for in the header line, in order of preference on a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma- (or otherwise) separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// From the file name: `.jsonl`, `.ndjson` and `.json` are JSON lines, anything else CSV.
    pub fn from_path(path: &Path) -> Format {
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            _ => Format::Csv,
        }
    }
}

/// A delimiter as written on the command line or in the mapping file: one ASCII
/// character, or `tab` (also `\t`).
pub fn parse_delimiter(value: &str) -> Result<u8, String> {
    match value {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if value.len() == 1 && value.is_ascii() && value != "\"" && value != "\n" => {
            Ok(value.as_bytes()[0])
        }
        _ => Err(format!(
            "a delimiter is one ASCII character (or `tab`), not {value:?}"
        )),
    }
}

/// The delimiter of a CSV header line: whichever of `,` `;` tab `|` occurs most often
/// outside quotes (a comma when none does).
pub fn detect_delimiter(header_line: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &byte in header_line {
        if byte == b'"' {
            quoted = !quoted;
        } else if byte == b'\n' && !quoted {
            break;
        } else if !quoted {
            if let Some(i) = DELIMITERS.iter().position(|&d| d == byte) {
                counts[i] += 1;
            }
        }
    }
    let mut best = 0;
    for (i, &count) in counts.iter().enumerate() {
        if count > counts[best] {
            best = i;
        }
    }
    DELIMITERS[best]
}

/// One row of the export, with where it starts.
pub struct Row {
    /// Line of the file the row starts on (1 is a CSV file's header).
    pub line: u64,
    pub fields: Result<Fields, RowError>,
}

/// A row that cannot be read as a row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    pub reason: String,
    /// What there was of it, for the rejects file.
    pub raw: Value,
}

/// The values of one row, looked up by column name.
pub enum Fields {
    Csv {
        header: std::sync::Arc<Header>,
        record: csv::StringRecord,
    },
    Json(Map<String, Value>),
}

/// A CSV file's column names and where each is.
#[derive(Debug)]
pub struct Header {
    pub names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Header {
    fn new(names: Vec<String>) -> Self {
        let mut index = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            // The first of two equal names wins, as a reader of the file would assume.
            index.entry(name.clone()).or_insert(i);
        }
        Self { names, index }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

impl Fields {
    /// The value of `column`: `None` when the row has no such column or the value is
    /// empty (or JSON `null`). JSON numbers and booleans read as their text; in JSON
    /// lines `a.b` reaches into nested objects when there is no key `a.b` itself.
    pub fn get(&self, column: &str) -> Result<Option<Cow<'_, str>>, String> {
        let text = match self {
            Fields::Csv { header, record } => header
                .index
                .get(column)
                .and_then(|&i| record.get(i))
                .map(Cow::Borrowed),
            Fields::Json(object) => match json_path(object, column) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
                Some(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
                Some(Value::Bool(b)) => Some(Cow::Owned(b.to_string())),
                Some(Value::Array(_) | Value::Object(_)) => {
                    return Err(format!("`{column}` is not a single value"))
                }
            },
        };
        Ok(text.filter(|value| !value.trim().is_empty()))
    }

    /// The row as a JSON object (column → value), for the rejects file.
    pub fn to_json(&self) -> Value {
        match self {
            Fields::Csv { header, record } => Value::Object(csv_object(&header.names, record)),
            Fields::Json(object) => Value::Object(object.clone()),
        }
    }
}

fn json_path<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    let mut parts = path.split('.');
    let mut value = object.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

fn csv_object<'a>(
    names: &[String],
    values: impl IntoIterator<Item = &'a str>,
) -> Map<String, Value> {
    let mut object = Map::new();
    for (i, value) in values.into_iter().enumerate() {
        let name = names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{}", i + 1));
        object.insert(name, Value::String(value.to_owned()));
    }
    object
}

/// Counts the bytes read through it, for the progress bar's share of the file.
struct Counting<R> {
    inner: R,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Rows of an export file, in order.
pub struct Rows {
    kind: Kind,
    /// Bytes of the file read so far (read ahead of the rows by at most a buffer).
    pub bytes_read: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The file's size, when known.
    pub size: Option<u64>,
}

enum Kind {
    Csv {
        // Boxed: the csv reader's state machine is large beside the other variant.
        reader: Box<csv::Reader<BufReader<Counting<File>>>>,
        header: std::sync::Arc<Header>,
        record: csv::ByteRecord,
    },
    Jsonl {
        reader: BufReader<Counting<File>>,
        line: u64,
        buffer: Vec<u8>,
    },
}

impl Rows {
    /// Opens `path` as `format`; a CSV file's delimiter is `delimiter`, or detected from
    /// its header line.
    pub fn open(path: &Path, format: Format, delimiter: Option<u8>) -> Result<Self, ImportError> {
        let io_error = |source| ImportError::Read {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_error)?;
        let size = file.metadata().ok().map(|m| m.len());
        let bytes_read = std::sync::Arc::default();
        let counting = Counting {
            inner: file,
            bytes: std::sync::Arc::clone(&bytes_read),
        };
        let mut reader = BufReader::with_capacity(64 * 1024, counting);
        // A byte-order mark is no part of the first column's name (or the first line).
        let start = reader.fill_buf().map_err(io_error)?;
        if start.starts_with(b"\xEF\xBB\xBF") {
            reader.consume(3);
        }
        let kind = match format {
            Format::Jsonl => Kind::Jsonl {
                reader,
                line: 0,
                buffer: Vec::new(),
            },
            Format::Csv => {
                let delimiter = match delimiter {
                    Some(d) => d,
                    None => detect_delimiter(reader.fill_buf().map_err(io_error)?),
                };
                let mut reader = csv::ReaderBuilder::new()
                    .delimiter(delimiter)
                    .has_headers(true)
                    // Rows with another number of fields are checked (and rejected) here,
                    // with a reason, rather than stopping the reader.
                    .flexible(true)
                    .from_reader(reader);
                let names = reader
                    .headers()
                    .map_err(|error| ImportError::Header {
                        path: path.to_owned(),
                        reason: error.to_string(),
                    })?
                    .iter()
                    .map(|name| name.trim().to_owned())
                    .collect::<Vec<_>>();
                if names.iter().all(String::is_empty) {
                    return Err(ImportError::Header {
                        path: path.to_owned(),
                        reason: "the file is empty or its first line has no column names".into(),
                    });
                }
                Kind::Csv {
                    reader: Box::new(reader),
                    header: std::sync::Arc::new(Header::new(names)),
                    record: csv::ByteRecord::new(),
                }
            }
        };
        Ok(Self {
            kind,
            bytes_read,
            size,
        })
    }

    /// The CSV header, for checking that the mapped columns exist before importing.
    pub fn header(&self) -> Option<&Header> {
        match &self.kind {
            Kind::Csv { header, .. } => Some(header),
            Kind::Jsonl { .. } => None,
        }
    }

    /// The next row, `None` at the end; `Err` only when the file cannot be read.
    pub fn next_row(&mut self) -> Result<Option<Row>, std::io::Error> {
        match &mut self.kind {
            Kind::Csv {
                reader,
                header,
                record,
            } => next_csv_row(&mut **reader, header, record),
            Kind::Jsonl {
                reader,
                line,
                buffer,
            } => next_json_row(reader, line, buffer),
        }
    }
}

fn next_csv_row<R: Read>(
    reader: &mut csv::Reader<R>,
    header: &std::sync::Arc<Header>,
    record: &mut csv::ByteRecord,
) -> Result<Option<Row>, std::io::Error> {
    loop {
        match reader.read_byte_record(record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(error) => match error.into_kind() {
                csv::ErrorKind::Io(error) => return Err(error),
                // The csv reader reports nothing else on a flexible byte record; were
                // it to, the row is rejected and reading goes on.
                other => {
                    let line = reader.position().line();
                    return Ok(Some(Row {
                        line,
                        fields: Err(RowError {
                            reason: format!("unreadable CSV: {other:?}"),
                            raw: Value::Null,
                        }),
                    }));
                }
            },
        }
        // The csv reader's position of a record is where reading it began, before any
        // blank lines it skipped; so count back from where the record ended, past the
        // line breaks inside its quoted fields (a last record without a final line break
        // after blank lines is the one case this puts a line early).
        let started = record.position().map_or(1, |p| p.line());
        let embedded: u64 = record
            .iter()
            .map(|field| field.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum();
        let line = reader
            .position()
            .line()
            .saturating_sub(embedded + 1)
            .max(started);
        // A line with nothing on it is no row.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        let lossy = || {
            let fields: Vec<Cow<str>> = record.iter().map(String::from_utf8_lossy).collect();
            Value::Object(csv_object(&header.names, fields.iter().map(|f| f.as_ref())))
        };
        if record.len() != header.names.len() {
            return Ok(Some(Row {
                line,
                fields: Err(RowError {
                    reason: format!(
                        "has {} fields where the header has {} (a delimiter in an unquoted value?)",
                        record.len(),
                        header.names.len()
                    ),
                    raw: lossy(),
                }),
            }));
        }
        let fields = match csv::StringRecord::from_byte_record(record.clone()) {
            Ok(record) => Ok(Fields::Csv {
                header: std::sync::Arc::clone(header),
                record,
            }),
            Err(_) => Err(RowError {
                reason: "is not UTF-8 (export the file as UTF-8)".into(),
                raw: lossy(),
            }),
        };
        return Ok(Some(Row { line, fields }));
    }
}

fn next_json_row<R: BufRead>(
    reader: &mut R,
    line: &mut u64,
    buffer: &mut Vec<u8>,
) -> Result<Option<Row>, std::io::Error> {
    loop {
        buffer.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', buffer)?;
        if read == 0 {
            return Ok(None);
        }
        *line += 1;
        if buffer.len() > MAX_LINE_BYTES && buffer.last() != Some(&b'\n') {
            // Skip the rest of the long line without holding it.
            loop {
                let available = reader.fill_buf()?;
                if available.is_empty() {
                    break;
                }
                match available.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        reader.consume(end + 1);
                        break;
                    }
                    None => {
                        let n = available.len();
                        reader.consume(n);
                    }
                }
            }
            return Ok(Some(Row {
                line: *line,
                fields: Err(RowError {
                    reason: format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                    raw: Value::Null,
                }),
            }));
        }
        let text = String::from_utf8_lossy(buffer);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let fields = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => Ok(Fields::Json(object)),
            Ok(_) => Err(RowError {
                reason: "is not a JSON object".into(),
                raw: Value::String(text.to_owned()),
            }),
            Err(error) => Err(RowError {
                reason: format!("is not JSON: {error}"),
                raw: Value::String(text.to_owned()),
            }),
        };
        return Ok(Some(Row {
            line: *line,
            fields,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8], extension: &str) -> tempfile_lite::TempFile {
        let file = tempfile_lite::TempFile::new(extension);
        std::fs::File::create(&file.path)
            .and_then(|mut f| f.write_all(content))
            .expect("write test file");
        file
    }

    fn all(rows: &mut Rows) -> Vec<Row> {
        let mut out = Vec::new();
        while let Some(row) = rows.next_row().expect("readable") {
            out.push(row);
        }
        out
    }

    fn value(row: &Row, column: &str) -> Option<String> {
        row.fields
            .as_ref()
            .expect("a row")
            .get(column)
            .expect("a value")
            .map(|v| v.into_owned())
    }

    #[test]
    fn the_delimiter_is_found_in_the_header_line() {
        assert_eq!(detect_delimiter(b"id,text,date\n1;2;3"), b',');
        assert_eq!(detect_delimiter(b"id;text;date\r\n"), b';');
        assert_eq!(detect_delimiter(b"id\ttext\tdate"), b'\t');
        assert_eq!(detect_delimiter(b"id|text|date"), b'|');
        assert_eq!(
            detect_delimiter(b"\"a;b\",\"c;d\",e"),
            b',',
            "quoted delimiters do not count"
        );
        assert_eq!(detect_delimiter(b"text"), b',', "one column: a comma");
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter(";;").is_err());
    }

    #[test]
    fn quoted_csv_fields_keep_delimiters_quotes_and_line_breaks() {
        let csv = "\u{feff}id;text;rating\n\
                   1;\"Late; very late\";2\n\
                   2;\"He said \"\"never again\"\"\";1\n\
                   3;\"Line one\nline two\";3\n\
                   \n\
                   4;plain;5\n";
        let temp = file(csv.as_bytes(), "csv");
        let mut rows = Rows::open(&temp.path, Format::Csv, None).expect("opens");
        assert_eq!(
            rows.header().expect("a header").names,
            ["id", "text", "rating"],
            "no byte-order mark in the first name"
        );
        let rows = all(&mut rows);
        assert_eq!(rows.len(), 4, "the empty line is no row");
        assert_eq!(value(&rows[0], "text").as_deref(), Some("Late; very late"));
        assert_eq!(
            value(&rows[1], "text").as_deref(),
            Some("He said \"never again\"")
        );
        assert_eq!(
            value(&rows[2], "text").as_deref(),
            Some("Line one\nline two")
        );
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 7], "where each row starts");
    }

    #[test]
    fn tab_separated_without_a_byte_order_mark() {
        let temp = file(b"id\ttext\n1\tgood, really\n", "tsv");
        let mut rows = Rows::open(&temp.path, Format::Csv, None).expect("opens");
        let rows = all(&mut rows);
        assert_eq!(value(&rows[0], "text").as_deref(), Some("good, really"));
    }

    #[test]
    fn rows_that_do_not_fit_the_header_are_row_errors() {
        let temp = file(b"id,text\n1,fine\n2,a,b\n3,\xff\xfe\n4,last\n", "csv");
        let mut rows = Rows::open(&temp.path, Format::Csv, None).expect("opens");
        let rows = all(&mut rows);
        assert_eq!(rows.len(), 4);
        let error = rows[1].fields.as_ref().err().expect("too many fields");
        assert!(error.reason.contains("has 3 fields"), "{error:?}");
        assert_eq!(error.raw["#3"], "b");
        let error = rows[2].fields.as_ref().err().expect("not UTF-8");
        assert!(error.reason.contains("UTF-8"), "{error:?}");
        assert_eq!(value(&rows[3], "text").as_deref(), Some("last"));
    }

    #[test]
    fn json_lines_with_nested_values_and_broken_lines() {
        let temp = file(
            b"{\"text\": \"ok\", \"stars\": 4, \"user\": {\"id\": \"u-1\"}}\n\
              \n\
              not json\n\
              [1, 2]\n\
              {\"text\": null, \"tags\": [\"a\"]}\n",
            "jsonl",
        );
        assert_eq!(Format::from_path(&temp.path), Format::Jsonl);
        let mut rows = Rows::open(&temp.path, Format::Jsonl, None).expect("opens");
        let rows = all(&mut rows);
        assert_eq!(rows.len(), 4, "the blank line is no row");
        assert_eq!(value(&rows[0], "stars").as_deref(), Some("4"));
        assert_eq!(value(&rows[0], "user.id").as_deref(), Some("u-1"));
        assert_eq!(value(&rows[0], "missing"), None);
        assert_eq!(rows[1].line, 3);
        assert!(rows[1].fields.is_err());
        assert!(rows[2].fields.is_err(), "an array is no row");
        let last = rows[3].fields.as_ref().expect("an object");
        assert_eq!(last.get("text"), Ok(None), "null is no value");
        assert!(last.get("tags").is_err(), "an array is not one value");
    }
}

/// A file in the temporary directory that is removed when dropped (tests only).
#[cfg(test)]
pub(crate) mod tempfile_lite {
    pub struct TempFile {
        pub path: std::path::PathBuf,
    }

    impl TempFile {
        pub fn new(extension: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "closeloop-import-{}.{extension}",
                uuid::Uuid::now_v7().simple()
            ));
            Self { path }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
