//! A TOML file describing a whole pipeline: chests (by URL), delivery, tracked variables and
//! request-id options. Unknown keys are errors, so a typo cannot silently change behaviour.
//!
//! ```
//! # async fn demo() -> Result<(), chest::Error> {
//! let config = chest::config::Config::from_toml(r#"
//!     raise_exceptions = false
//!     request_id_header = "x-trace-id"
//!
//!     [tracked_vars]
//!     GET = ["transaction"]
//!     POST = ["transaction", "response_time"]
//!
//!     [[chest]]
//!     url = "memory://audit"
//!     delivery = "inline"
//! "#)?;
//! let pipeline = config.build().await?;
//! assert_eq!(pipeline.recorder.chest_names(), ["audit"]);
//! # Ok(()) }
//! ```
//!
//! Every key:
//!
//! ```toml
//! raise_exceptions = true              # default true (Flask-Chest's default)
//! request_id_header = "x-request-id"   # default; "" sends no header
//! trust_incoming_request_id = false    # default false
//!
//! [tracked_vars]                       # omitted: every variable the handler sets
//! GET = ["transaction"]
//!
//! [[chest]]                            # one table per chest, written in order
//! url = "sqlite://chest.db"            # see chest::open for the schemes
//! delivery = "batched"                 # default "batched" (feature `batch`); or "inline"
//!
//! [chest.batch]                        # Batched settings, all optional
//! max_batch_records = 5000
//! max_batch_bytes = 1048576
//! linger = "1s"                        # durations: "250ms", "5s", "2m"
//! max_in_flight = 1
//! queue_capacity = 100000
//! queue_max_bytes = 67108864
//! overflow = "drop_oldest"             # drop_newest, reject, or "block:2s"
//! durability = "memory"                # or "process" (survives a crash), "disk" (and power loss)
//! sync_every = "1s"                    # process: how often the journal and spool are synced
//! journal_segment_bytes = 8388608      # process: the size of each journal segment file
//! journal_max_bytes = 1073741824       # process: the bound on the journal (default spool_max_bytes)
//! backoff_initial = "100ms"
//! backoff_max = "30s"
//! retry_budget = "1m"
//! spool = "chest-spool.db"
//! spool_max_bytes = 1073741824
//! dead_letter = "chest-dead.jsonl"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
#[cfg(feature = "batch")]
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;

pub use crate::url::parse_duration;
use crate::{Error, Recorder, Tracked};

/// A pipeline's configuration, as read from TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Flask-Chest's `raise_exceptions` (default true).
    #[serde(default = "default_true")]
    pub raise_exceptions: bool,
    /// The request-id response header; empty for none (default `x-request-id`).
    #[serde(default = "default_header")]
    pub request_id_header: String,
    /// Use a client's request id (default false).
    #[serde(default)]
    pub trust_incoming_request_id: bool,
    /// Method → names; absent for every variable.
    #[serde(default)]
    pub tracked_vars: Option<BTreeMap<String, Vec<String>>>,
    /// The chests, in order.
    #[serde(default, rename = "chest")]
    pub chests: Vec<ChestConfig>,
}

/// One `[[chest]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ChestConfig {
    /// The chest's URL (see [`crate::open`]).
    pub url: String,
    /// Inline or batched delivery.
    #[serde(default)]
    pub delivery: Delivery,
    /// Settings of batched delivery.
    #[serde(default)]
    pub batch: BatchConfig,
}

/// How a chest's records are delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Delivery {
    /// In the background through [`Batched`](crate::batch::Batched) (needs feature `batch`).
    #[default]
    Batched,
    /// Awaited before the response leaves.
    Inline,
}

/// The `[chest.batch]` table: every field overrides one [`BatchedBuilder`](crate::batch::BatchedBuilder)
/// default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
#[allow(missing_docs)] // Each field is the builder method of the same name.
pub struct BatchConfig {
    pub max_batch_records: Option<usize>,
    pub max_batch_bytes: Option<usize>,
    pub linger: Option<String>,
    pub max_in_flight: Option<usize>,
    pub queue_capacity: Option<usize>,
    pub queue_max_bytes: Option<usize>,
    pub overflow: Option<String>,
    pub durability: Option<String>,
    pub sync_every: Option<String>,
    pub journal_segment_bytes: Option<usize>,
    pub journal_max_bytes: Option<u64>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub retry_budget: Option<String>,
    pub spool: Option<PathBuf>,
    pub spool_max_bytes: Option<u64>,
    pub dead_letter: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}

fn default_header() -> String {
    "x-request-id".to_owned()
}

/// What [`Config::build`] makes: the recorder to give a layer, and handles on the batched chests
/// (for [`Batched::stats`](crate::batch::Batched::stats) and
/// [`Batched::shutdown`](crate::batch::Batched::shutdown)).
#[derive(Debug)]
#[non_exhaustive]
pub struct Pipeline {
    /// The recorder, with every chest.
    pub recorder: Recorder,
    /// The batched chests, in configuration order.
    #[cfg(feature = "batch")]
    pub batched: Vec<crate::batch::Batched>,
}

impl Pipeline {
    /// A pipeline built by hand.
    #[cfg(feature = "batch")]
    pub fn new(recorder: Recorder, batched: Vec<crate::batch::Batched>) -> Self {
        Pipeline { recorder, batched }
    }
}

impl Config {
    /// Parses TOML. Errors carry the line and column.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), strip_config(e))))
    }

    /// Opens every chest and builds the recorder. Batched chests start their workers, so call it
    /// inside a tokio runtime.
    pub async fn build(&self) -> Result<Pipeline, Error> {
        let header = match self.request_id_header.as_str() {
            "" => None,
            name => Some(HeaderName::try_from(name).map_err(|_| {
                Error::Config(format!(
                    "request_id_header `{name}` is not a valid header name"
                ))
            })?),
        };
        let tracked = match &self.tracked_vars {
            None => Tracked::all(),
            Some(map) => map.iter().collect(),
        };
        let mut recorder = Recorder::new()
            .raise_exceptions(self.raise_exceptions)
            .request_id_header(header)
            .trust_incoming_request_id(self.trust_incoming_request_id)
            .tracked_vars(tracked);
        #[cfg(feature = "batch")]
        let mut batched = Vec::new();
        for chest in &self.chests {
            let opened = crate::open(&chest.url).await?;
            recorder = match chest.delivery {
                Delivery::Inline => recorder.chest(opened),
                #[cfg(feature = "batch")]
                Delivery::Batched => {
                    let b = chest
                        .batch
                        .apply(crate::batch::Batched::builder(opened))?
                        .build()?;
                    batched.push(b.clone());
                    recorder.chest(b)
                }
                #[cfg(not(feature = "batch"))]
                Delivery::Batched => {
                    return Err(Error::Config(
                        "delivery = \"batched\" needs chest's `batch` feature; use \"inline\""
                            .into(),
                    ))
                }
            };
        }
        Ok(Pipeline {
            recorder,
            #[cfg(feature = "batch")]
            batched,
        })
    }
}

fn strip_config(e: Error) -> String {
    match e {
        Error::Config(text) => text,
        other => other.to_string(),
    }
}

#[cfg(feature = "batch")]
impl BatchConfig {
    fn apply(
        &self,
        mut b: crate::batch::BatchedBuilder,
    ) -> Result<crate::batch::BatchedBuilder, Error> {
        use crate::batch::{Durability, OverflowPolicy};
        let duration = |key: &str, v: &Option<String>| -> Result<Option<Duration>, Error> {
            v.as_deref()
                .map(|text| parse_duration(text).map_err(|e| Error::Config(format!("{key}: {e}"))))
                .transpose()
        };
        if let Some(n) = self.max_batch_records {
            b = b.max_batch_records(n);
        }
        if let Some(n) = self.max_batch_bytes {
            b = b.max_batch_bytes(n);
        }
        if let Some(d) = duration("linger", &self.linger)? {
            b = b.linger(d);
        }
        if let Some(n) = self.max_in_flight {
            b = b.max_in_flight(n);
        }
        if let Some(n) = self.queue_capacity {
            b = b.queue_capacity(n);
        }
        if let Some(n) = self.queue_max_bytes {
            b = b.queue_max_bytes(n);
        }
        if let Some(policy) = self.overflow.as_deref() {
            b = b.overflow(match policy {
                "drop_oldest" => OverflowPolicy::DropOldest,
                "drop_newest" => OverflowPolicy::DropNewest,
                "reject" => OverflowPolicy::Reject,
                other => match other.strip_prefix("block:") {
                    Some(timeout) => OverflowPolicy::Block(
                        parse_duration(timeout)
                            .map_err(|e| Error::Config(format!("overflow: {e}")))?,
                    ),
                    None => return Err(Error::Config(format!(
                        "overflow `{other}`: use drop_oldest, drop_newest, reject or block:<duration>"
                    ))),
                },
            });
        }
        if let Some(durability) = self.durability.as_deref() {
            b = b.durability(match durability {
                "memory" => Durability::Memory,
                "process" => Durability::Process,
                "disk" => Durability::Disk,
                other => {
                    return Err(Error::Config(format!(
                        "durability `{other}`: use memory, process or disk"
                    )))
                }
            });
        }
        if let Some(d) = duration("sync_every", &self.sync_every)? {
            b = b.sync_every(d);
        }
        if let Some(n) = self.journal_segment_bytes {
            b = b.journal_segment_bytes(n);
        }
        if let Some(n) = self.journal_max_bytes {
            b = b.journal_max_bytes(n);
        }
        let initial = duration("backoff_initial", &self.backoff_initial)?;
        let max = duration("backoff_max", &self.backoff_max)?;
        if initial.is_some() || max.is_some() {
            b = b.backoff(
                initial.unwrap_or(Duration::from_millis(100)),
                max.unwrap_or(Duration::from_secs(30)),
            );
        }
        if let Some(d) = duration("retry_budget", &self.retry_budget)? {
            b = b.retry_budget(d);
        }
        if let Some(path) = &self.spool {
            b = b.spool(path);
        }
        if let Some(n) = self.spool_max_bytes {
            b = b.spool_max_bytes(n);
        }
        if let Some(path) = &self.dead_letter {
            b = b.dead_letter(path);
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_with_their_place() {
        let err = Config::from_toml("raise_exception = true")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `raise_exception`"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = Config::from_toml("[[chest]]\nurl = \"memory://\"\n[chest.batch]\nlinger_ms = 5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("linger_ms"), "{err}");
    }

    #[cfg(feature = "batch")]
    #[tokio::test]
    async fn builds_recorder_and_batched_chests() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
            request_id_header = ""
            [tracked_vars]
            get = ["a", "b"]
            [[chest]]
            url = "memory://inline"
            delivery = "inline"
            [[chest]]
            url = "sqlite://{}"
            [chest.batch]
            linger = "10ms"
            overflow = "block:1s"
            durability = "disk"
            sync_every = "250ms"
            spool = "{}"
            "#,
            dir.path().join("c.db").display(),
            dir.path().join("spool.db").display()
        );
        let pipeline = Config::from_toml(&text).unwrap().build().await.unwrap();
        assert!(pipeline.recorder.header().is_none());
        assert_eq!(pipeline.recorder.chest_names().len(), 2);
        assert_eq!(pipeline.batched.len(), 1);
        pipeline.batched[0].shutdown(Duration::from_secs(5)).await;
    }

    /// The journal's knobs reach the builder: a journal capped below one segment protects
    /// nothing, so every record is counted unprotected; with the defaults, none is.
    #[cfg(feature = "batch")]
    #[tokio::test]
    async fn journal_knobs_take_effect() {
        let dir = tempfile::tempdir().unwrap();
        for (knobs, unprotected) in [
            ("", 0),
            ("journal_segment_bytes = 65536\njournal_max_bytes = 4096", 2),
        ] {
            let text = format!(
                "[[chest]]\nurl = \"memory://\"\n[chest.batch]\ndurability = \"process\"\n\
                 spool = \"{}\"\n{knobs}",
                dir.path().join(format!("spool-{unprotected}.db")).display()
            );
            let pipeline = Config::from_toml(&text).unwrap().build().await.unwrap();
            let chest = &pipeline.recorder;
            let vars = chest.begin(None);
            vars.set("a", 1).unwrap();
            vars.set("b", 2).unwrap();
            assert!(!chest.finish(&vars, "GET").await.should_fail_response());
            let stats = pipeline.batched[0].shutdown(Duration::from_secs(5)).await;
            assert_eq!(
                (stats.written, stats.unprotected),
                (2, unprotected),
                "{knobs}"
            );
        }
    }

    #[tokio::test]
    async fn bad_values_are_named() {
        let mut cases = vec![
            (
                "request_id_header = \"bad header\"",
                "not a valid header name",
            ),
            ("[[chest]]\nurl = \"nope://\"", "scheme"),
        ];
        if cfg!(feature = "batch") {
            cases.extend([
                (
                    "[[chest]]\nurl = \"memory://\"\n[chest.batch]\noverflow = \"panic\"",
                    "overflow `panic`",
                ),
                (
                    "[[chest]]\nurl = \"memory://\"\n[chest.batch]\nlinger = \"1h\"",
                    "linger",
                ),
                (
                    "[[chest]]\nurl = \"memory://\"\n[chest.batch]\ndurability = \"fast\"",
                    "use memory, process or disk",
                ),
                (
                    "[[chest]]\nurl = \"memory://\"\n[chest.batch]\ndurability = \"process\"",
                    "Durability::Process needs a spool file",
                ),
                (
                    "[[chest]]\nurl = \"memory://\"\n[chest.batch]\nsync_every = \"soon\"",
                    "sync_every",
                ),
            ]);
        }
        for (text, expect) in cases {
            let err = Config::from_toml(text)
                .unwrap()
                .build()
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
