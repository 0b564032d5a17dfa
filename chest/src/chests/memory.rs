//! An in-memory chest, for tests and for measuring the layer alone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use super::scheme::{Opening, Scheme};
use crate::url::ChestUrl;
use crate::{BoxFuture, Chest, ChestError, Error, ErrorKind, Record};

/// `memory://[NAME][?keep=N]`: a [`MemoryChest`] named NAME (default `memory`) that keeps every
/// record, or only the newest N ([`MemoryChest::keeping`]; `keep=0` keeps none).
pub(crate) const SCHEME: Scheme = Scheme {
    names: &["memory"],
    open: open_url,
    read: None,
};

fn open_url(url: &ChestUrl<'_>) -> Result<Opening<Arc<dyn Chest>>, Error> {
    let chest: Arc<dyn Chest> = Arc::new(from_url(url)?);
    Ok(Box::pin(async move { Ok(chest) }))
}

fn from_url(url: &ChestUrl<'_>) -> Result<MemoryChest, Error> {
    let keep = url
        .param("keep")
        .map(|keep| {
            keep.parse::<usize>()
                .map_err(|_| url.invalid("keep", format!("{keep:?} is not a number of records")))
        })
        .transpose()?;
    url.check_all_used()?;
    let name = Some(url.rest).filter(|n| !n.is_empty());
    let mut chest = MemoryChest::named(name.unwrap_or("memory"));
    if let Some(keep) = keep {
        chest = chest.keeping(keep);
    }
    Ok(chest)
}

/// Keeps every record in memory. Clones share the same records, so keep a clone to read what a
/// layer wrote. [`fail_with`](MemoryChest::fail_with) makes writes fail, to test error paths.
///
/// ```
/// # async fn demo() {
/// use chest::{Chest, ErrorKind, MemoryChest, Record};
///
/// let memory = MemoryChest::new();
/// memory.write(&[Record::new("r1", "n", 1, "GET", None)]).await.unwrap();
/// assert_eq!(memory.len(), 1);
///
/// memory.fail_with(Some(ErrorKind::Retryable));
/// assert!(memory.write(&[Record::new("r2", "n", 1, "GET", None)]).await.is_err());
/// assert_eq!(memory.len(), 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct MemoryChest {
    name: Arc<str>,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Default)]
struct Shared {
    records: VecDeque<Record>,
    /// The most records kept; `None`: all.
    keep: Option<usize>,
    failure: Option<ErrorKind>,
    writes: usize,
    written: u64,
}

impl MemoryChest {
    /// An empty chest named `memory`.
    pub fn new() -> Self {
        Self::named("memory")
    }

    /// An empty chest with the given name.
    pub fn named(name: &str) -> Self {
        MemoryChest {
            name: Arc::from(name),
            shared: Arc::default(),
        }
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps only the newest `keep` records: older ones are let go as new ones arrive (still
    /// counted by [`written`](Self::written)). With `0` the chest holds nothing: a chest that
    /// does no I/O and whose memory does not grow, for measuring what the layer alone costs.
    ///
    /// ```
    /// # async fn demo() {
    /// use chest::{Chest, MemoryChest, Record};
    ///
    /// let memory = MemoryChest::new().keeping(2);
    /// let records: Vec<Record> = (0..5).map(|i| Record::new("r", "n", i, "GET", None)).collect();
    /// memory.write(&records).await.unwrap();
    /// assert_eq!((memory.len(), memory.written()), (2, 5));
    /// assert_eq!(memory.records()[0].value, chest::Value::Int(3));
    /// # }
    /// ```
    pub fn keeping(self, keep: usize) -> Self {
        {
            let mut shared = self.shared();
            shared.keep = Some(keep);
            shared.let_go_oldest();
        }
        self
    }

    /// A copy of the records it holds, oldest first.
    pub fn records(&self) -> Vec<Record> {
        self.shared().records.iter().cloned().collect()
    }

    /// How many records it holds: all those written, unless it keeps only the newest
    /// ([`keeping`](Self::keeping)).
    pub fn len(&self) -> usize {
        self.shared().records.len()
    }

    /// How many records were written in all, whether it still holds them or not.
    pub fn written(&self) -> u64 {
        self.shared().written
    }

    /// True when it holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many successful `write` calls there were.
    pub fn writes(&self) -> usize {
        self.shared().writes
    }

    /// Forgets the records written so far.
    pub fn clear(&self) {
        self.shared().records.clear();
    }

    /// `Some(kind)`: every write fails with an error of that kind and stores nothing, until
    /// `fail_with(None)`.
    pub fn fail_with(&self, failure: Option<ErrorKind>) {
        self.shared().failure = failure;
    }
}

impl Chest for MemoryChest {
    fn name(&self) -> &str {
        &self.name
    }

    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        let mut shared = self.shared();
        let result = match shared.failure {
            Some(kind) => Err(ChestError::new(
                &*self.name,
                kind,
                "failure injected by fail_with",
            )),
            None => {
                shared.written += records.len() as u64;
                shared.writes += 1;
                let room = shared.keep.unwrap_or(usize::MAX);
                // Only the records that will stay are copied.
                let newest = &records[records.len().saturating_sub(room)..];
                shared.records.extend(newest.iter().cloned());
                shared.let_go_oldest();
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }
}

impl Shared {
    fn let_go_oldest(&mut self) {
        if let Some(keep) = self.keep {
            let over = self.records.len().saturating_sub(keep);
            self.records.drain(..over);
        }
    }
}

impl std::fmt::Debug for MemoryChest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryChest")
            .field("name", &self.name)
            .field("records", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    /// `keep=N` holds the newest N records over several writes and still counts every one; a
    /// bad number is refused, naming the parameter.
    #[tokio::test]
    async fn urls_keep_the_newest() {
        let records: Vec<Record> = (0..10)
            .map(|i| Record::new("r", "n", i, "GET", None))
            .collect();
        for (url, name, held) in [
            ("memory://a", "a", 10),
            ("memory://b?keep=3", "b", 3),
            ("memory://?keep=0", "memory", 0),
        ] {
            let chest = from_url(&ChestUrl::parse(url).unwrap()).unwrap();
            chest.write(&records[..4]).await.unwrap();
            chest.write(&records[4..]).await.unwrap();
            let held_values: Vec<Value> = chest.records().into_iter().map(|r| r.value).collect();
            let newest: Vec<Value> = (10 - held..10).map(Value::Int).collect();
            assert_eq!((chest.name(), held_values), (name, newest), "{url}");
            assert_eq!((chest.written(), chest.writes()), (10, 2), "{url}");
        }
        let err = from_url(&ChestUrl::parse("memory://?keep=lots").unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep") && err.contains("lots"), "{err}");
    }
}
