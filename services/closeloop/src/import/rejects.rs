//! The rejects file: one JSON line per row that was not imported, with where it is in
//! the export, why, and what it said — so the rows can be fixed and imported again
//! (their stable ids keep the rows that did go through from doubling).
//!
//! ```json
//! {"line":7,"stage":"read","errors":[{"field":"rating","reason":"\"6\" is not between 1 and 5"}],"record":{"Ticket":"T-1007",…}}
//! {"line":9,"stage":"ingest","status":422,"event_id":"…","errors":[{"field":"occurred_at","reason":"must not be more than 365 days in the past"}],"item":{…}}
//! ```
//!
//! `stage` is `read` for rows the importer could not read or map (the `record` is the
//! row as read, column by column) and `ingest` for rows ingest refused (the `item` is
//! the event as posted). The file is written anew by every run and removed when a run
//! rejects nothing.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::mapping::Problem;
use super::send::Refused;
use super::ImportError;

#[derive(Serialize)]
struct Line<'a> {
    line: u64,
    stage: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<Uuid>,
    errors: &'a [Problem],
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<&'a Value>,
}

pub struct Rejects {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
}

impl Rejects {
    /// Creates (or empties) the file at `path`.
    pub fn create(path: &Path) -> Result<Self, ImportError> {
        let file = File::create(path).map_err(|source| ImportError::Rejects {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
            written: 0,
        })
    }

    /// A row the importer could not read or map.
    pub fn unreadable(
        &mut self,
        line: u64,
        problems: &[Problem],
        record: &Value,
    ) -> Result<(), ImportError> {
        self.write(&Line {
            line,
            stage: "read",
            status: None,
            event_id: None,
            errors: problems,
            record: (!record.is_null()).then_some(record),
            item: None,
        })
    }

    /// A row ingest refused.
    pub fn refused(&mut self, refused: &Refused) -> Result<(), ImportError> {
        self.write(&Line {
            line: refused.line,
            stage: "ingest",
            status: Some(refused.status),
            event_id: Some(refused.event_id),
            errors: &refused.problems,
            record: None,
            item: Some(&refused.item),
        })
    }

    fn write(&mut self, line: &Line<'_>) -> Result<(), ImportError> {
        let error = |source| ImportError::Rejects {
            path: self.path.clone(),
            source,
        };
        serde_json::to_writer(&mut self.out, line).map_err(|e| error(e.into()))?;
        self.out.write_all(b"\n").map_err(error)?;
        self.written += 1;
        Ok(())
    }

    /// Flushes the file; removes it when nothing was rejected. Returns its path when
    /// it holds rejects.
    pub fn finish(mut self) -> Result<Option<PathBuf>, ImportError> {
        self.out.flush().map_err(|source| ImportError::Rejects {
            path: self.path.clone(),
            source,
        })?;
        if self.written == 0 {
            drop(self.out);
            let _ = std::fs::remove_file(&self.path);
            return Ok(None);
        }
        Ok(Some(self.path))
    }
}
