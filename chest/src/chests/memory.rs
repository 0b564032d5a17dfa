//! An in-memory chest, for tests.

use std::sync::{Arc, Mutex, MutexGuard};

use super::scheme::{Opening, Scheme};
use crate::url::ChestUrl;
use crate::{BoxFuture, Chest, ChestError, Error, ErrorKind, Record};

/// `memory://[NAME]`: a [`MemoryChest`] named NAME (default `memory`). It takes no parameter.
pub(crate) const SCHEME: Scheme = Scheme {
    names: &["memory"],
    open: open_url,
    read: None,
};

fn open_url(url: &ChestUrl<'_>) -> Result<Opening<Arc<dyn Chest>>, Error> {
    url.check_all_used()?;
    let name = Some(url.rest).filter(|n| !n.is_empty());
    let chest: Arc<dyn Chest> = Arc::new(MemoryChest::named(name.unwrap_or("memory")));
    Ok(Box::pin(async move { Ok(chest) }))
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
    records: Vec<Record>,
    failure: Option<ErrorKind>,
    writes: usize,
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

    /// A copy of the records written so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.shared().records.clone()
    }

    /// How many records were written.
    pub fn len(&self) -> usize {
        self.shared().records.len()
    }

    /// True when nothing was written.
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
                shared.records.extend_from_slice(records);
                shared.writes += 1;
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
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
