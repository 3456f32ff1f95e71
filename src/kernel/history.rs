//! Input history: numbered sessions, one line per stored execution, persisted as JSON lines so
//! that `history_request` sees earlier kernel processes, as IPython's history database does.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the history file; an empty value keeps history in
/// memory only.
pub const HISTORY_ENV: &str = "NOTEBOOK_PREDICTOR_HISTORY";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot create history directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read history file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write history file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid history search pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
}

/// One stored execution.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub session: u32,
    pub line: u32,
    pub input: String,
    /// The `text/plain` of the execution's result, if it had one.
    pub output: Option<String>,
}

impl HistoryEntry {
    /// The entry as it appears in a `history_reply`: `[session, line, input]`, or
    /// `[session, line, [input, output]]` when outputs were requested.
    pub fn to_reply_item(&self, with_output: bool) -> Value {
        if with_output {
            json!([self.session, self.line, [self.input, self.output]])
        } else {
            json!([self.session, self.line, self.input])
        }
    }
}

/// A line of the history file: either a session start or a stored execution.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    session: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
}

/// The history of this and earlier sessions.
#[derive(Debug)]
pub struct History {
    file: Option<PathBuf>,
    session: u32,
    entries: Vec<HistoryEntry>,
}

impl History {
    /// History kept in memory only, as session 1.
    pub fn in_memory() -> Self {
        History {
            file: None,
            session: 1,
            entries: Vec::new(),
        }
    }

    /// The history file to use: `$NOTEBOOK_PREDICTOR_HISTORY` if set (empty means none), else
    /// `<user data dir>/notebook-predictor/history.jsonl`.
    pub fn default_path() -> Option<PathBuf> {
        match std::env::var_os(HISTORY_ENV) {
            Some(value) if value.is_empty() => None,
            Some(value) => Some(PathBuf::from(value)),
            None => {
                dirs::data_dir().map(|dir| dir.join("notebook-predictor").join("history.jsonl"))
            }
        }
    }

    /// Loads the file at `path` (creating it if needed) and starts a new session numbered one
    /// past the highest found. Unreadable lines are skipped.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(HistoryError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut last_session = 0;
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(record) => {
                    last_session = last_session.max(record.session);
                    if let (Some(line), Some(input)) = (record.line, record.input) {
                        entries.push(HistoryEntry {
                            session: record.session,
                            line,
                            input,
                            output: record.output,
                        });
                    }
                }
                Err(err) => tracing::warn!(
                    "skipping line {} of history file {}: {err}",
                    number + 1,
                    path.display()
                ),
            }
        }
        let mut history = History {
            file: Some(path.to_path_buf()),
            session: last_session + 1,
            entries,
        };
        history.append(&Record {
            session: history.session,
            started: Some(crate::protocol::now_iso8601()),
            line: None,
            input: None,
            output: None,
        })?;
        Ok(history)
    }

    /// The number of this session.
    pub fn session(&self) -> u32 {
        self.session
    }

    /// The file history is persisted to, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn append(&mut self, record: &Record) -> Result<(), HistoryError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let write_error = |source| HistoryError::Write {
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_string(record).map_err(|err| {
            write_error(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
        })?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(write_error)?;
        // One write per line, so concurrent kernels append whole lines.
        file.write_all(line.as_bytes()).map_err(write_error)
    }

    /// Stores line `line` of this session. The entry is kept in memory even when writing the
    /// file fails; the error is returned so the caller can log it.
    pub fn record(
        &mut self,
        line: u32,
        input: &str,
        output: Option<String>,
    ) -> Result<(), HistoryError> {
        let entry = HistoryEntry {
            session: self.session,
            line,
            input: input.to_string(),
            output,
        };
        let record = Record {
            session: entry.session,
            started: None,
            line: Some(entry.line),
            input: Some(entry.input.clone()),
            output: entry.output.clone(),
        };
        self.entries.push(entry);
        self.append(&record)
    }

    /// The last `n` entries across all sessions, oldest first.
    pub fn tail(&self, n: usize) -> Vec<&HistoryEntry> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries.iter().skip(skip).collect()
    }

    /// Lines `start..stop` of a session. `session` <= 0 counts back from this session (0 is
    /// this one); a `stop` of `None` or 0 means to the end.
    pub fn range(&self, session: i64, start: i64, stop: Option<i64>) -> Vec<&HistoryEntry> {
        let session = if session <= 0 {
            i64::from(self.session) + session
        } else {
            session
        };
        let stop = stop.filter(|stop| *stop != 0);
        self.entries
            .iter()
            .filter(|entry| i64::from(entry.session) == session)
            .filter(|entry| i64::from(entry.line) >= start)
            .filter(|entry| stop.is_none_or(|stop| i64::from(entry.line) < stop))
            .collect()
    }

    /// Entries whose whole input matches the glob `pattern` (case-sensitive, `*` crosses
    /// newlines), oldest first. `n` keeps the last `n`; `unique` keeps only the latest
    /// occurrence of each input.
    pub fn search(
        &self,
        pattern: &str,
        n: Option<usize>,
        unique: bool,
    ) -> Result<Vec<&HistoryEntry>, HistoryError> {
        let glob = glob::Pattern::new(pattern).map_err(|source| HistoryError::Pattern {
            pattern: pattern.to_string(),
            source,
        })?;
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        let mut matches: Vec<&HistoryEntry> = self
            .entries
            .iter()
            .filter(|entry| glob.matches_with(&entry.input, options))
            .collect();
        if unique {
            let mut seen = std::collections::HashSet::new();
            let mut latest_first: Vec<&HistoryEntry> = matches
                .into_iter()
                .rev()
                .filter(|entry| seen.insert(entry.input.as_str()))
                .collect();
            latest_first.reverse();
            matches = latest_first;
        }
        if let Some(n) = n {
            let skip = matches.len().saturating_sub(n);
            matches.drain(..skip);
        }
        Ok(matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(entries: &[&HistoryEntry]) -> Vec<String> {
        entries.iter().map(|e| e.input.clone()).collect()
    }

    fn filled() -> History {
        let mut history = History::in_memory();
        for (line, input) in ["a = 1", "print(a)", "b = 2", "print(a)", "print(b)"]
            .iter()
            .enumerate()
        {
            history
                .record(line as u32 + 1, input, None)
                .expect("in memory");
        }
        history
    }

    #[test]
    fn tail_returns_the_last_entries_oldest_first() {
        let history = filled();
        assert_eq!(inputs(&history.tail(2)), ["print(a)", "print(b)"]);
        assert_eq!(history.tail(100).len(), 5);
        assert!(history.tail(0).is_empty());
    }

    #[test]
    fn range_selects_lines_of_a_session() {
        let history = filled();
        assert_eq!(inputs(&history.range(0, 2, Some(4))), ["print(a)", "b = 2"]);
        assert_eq!(history.range(0, 1, None).len(), 5);
        assert_eq!(history.range(1, 4, Some(0)).len(), 2);
        assert!(history.range(-1, 1, None).is_empty());
    }

    #[test]
    fn search_matches_globs_with_n_and_unique() {
        let history = filled();
        assert_eq!(
            inputs(&history.search("print*", None, false).expect("glob")),
            ["print(a)", "print(a)", "print(b)"]
        );
        assert_eq!(
            inputs(&history.search("print*", None, true).expect("glob")),
            ["print(a)", "print(b)"]
        );
        let lines: Vec<u32> = history
            .search("print*", None, true)
            .expect("glob")
            .iter()
            .map(|e| e.line)
            .collect();
        assert_eq!(lines, [4, 5], "unique keeps the latest occurrence");
        assert_eq!(
            inputs(&history.search("*", Some(1), false).expect("glob")),
            ["print(b)"]
        );
        assert_eq!(
            inputs(&history.search("?", None, false).expect("glob")),
            Vec::<String>::new()
        );
        assert_eq!(
            inputs(&history.search("PRINT*", None, false).expect("glob")),
            Vec::<String>::new()
        );
        assert!(matches!(
            history.search("[", None, false),
            Err(HistoryError::Pattern { .. })
        ));
    }

    #[test]
    fn reply_items_follow_the_spec() {
        let entry = HistoryEntry {
            session: 2,
            line: 3,
            input: "6*7".into(),
            output: Some("42".into()),
        };
        assert_eq!(entry.to_reply_item(false), json!([2, 3, "6*7"]));
        assert_eq!(entry.to_reply_item(true), json!([2, 3, ["6*7", "42"]]));
    }

    #[test]
    fn sessions_persist_across_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("history.jsonl");
        let mut first = History::open(&path).expect("open");
        assert_eq!(first.session(), 1);
        first.record(1, "x = 1", None).expect("write");
        first.record(2, "x\n+ 1", Some("2".into())).expect("write");
        drop(first);

        // A session that stores nothing still claims its number.
        assert_eq!(History::open(&path).expect("open").session(), 2);

        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"not json\n"))
            .expect("corrupt a line");

        let mut third = History::open(&path).expect("open");
        assert_eq!(third.session(), 3);
        third.record(1, "y = 2", None).expect("write");
        assert_eq!(inputs(&third.tail(3)), ["x = 1", "x\n+ 1", "y = 2"]);
        assert_eq!(inputs(&third.range(-2, 1, None)), ["x = 1", "x\n+ 1"]);
        assert_eq!(third.range(-2, 2, None)[0].output.as_deref(), Some("2"));
        assert_eq!(inputs(&third.range(0, 1, None)), ["y = 2"]);
    }
}
