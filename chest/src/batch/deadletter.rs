//! The dead-letter file: records a chest refused for good, one JSON object per line.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::stats::utc_now;
use crate::Record;

/// One line of the dead-letter file.
#[derive(Serialize)]
struct Line<'a> {
    /// The record, as [`Record`]'s `Serialize` writes it (with `value_type`).
    record: &'a Record,
    /// The chest's error.
    error: &'a str,
    /// When the record was given up on (UTC RFC 3339).
    time: &'a str,
}

/// Appends records with their errors to `path` (created if missing) and syncs the file.
pub(crate) fn append(path: &Path, entries: &[(Record, String)]) -> std::io::Result<()> {
    let time = utc_now();
    let mut text = Vec::new();
    for (record, error) in entries {
        let line = Line {
            record,
            error,
            time: &time,
        };
        serde_json::to_writer(&mut text, &line)?;
        text.push(b'\n');
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(&text)?;
    file.sync_data()
}

/// The default dead-letter file next to a spool: `<spool>.dead-letter.jsonl`.
pub(crate) fn beside(spool: &Path) -> PathBuf {
    let mut name = spool.as_os_str().to_owned();
    name.push(".dead-letter.jsonl");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let r = Record::new("req", "bad", 1.5, "GET", None);
        append(&path, &[(r.clone(), "boom".into())]).unwrap();
        append(&path, &[(r, "again".into())]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["record"]["name"], "bad");
        assert_eq!(lines[0]["record"]["value_type"], "float");
        assert_eq!(lines[1]["error"], "again");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }
}
