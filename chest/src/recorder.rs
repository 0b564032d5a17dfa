//! The framework-independent core shared by the axum layer and the actix-web middleware: the
//! decorator's parameters, request ids, selection, record building and writing.

use std::sync::Arc;
use std::task::Poll;

use futures_util::future::join_all;
use http::HeaderName;

use crate::record::RequestClock;
use crate::request_id::{self, MakeRequestId, Uuid7};
use crate::{Chest, ChestError, Record, Tracked, Vars};

/// The body of the 500 that replaces the handler's response when a chest failed and
/// `raise_exceptions` is on. It names no chest and no cause: those are logged. Every framework
/// adapter sends this same response.
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) const FAILED_WRITE_BODY: &str = "Internal Server Error";

/// The content type of [`FAILED_WRITE_BODY`].
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) const FAILED_WRITE_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What to record and where to write it: every parameter of Flask-Chest's `flask_chest`
/// decorator, plus request-id header options. Turn it into a layer with
/// [`ChestLayer::new`](crate::layer::ChestLayer::new) (axum) or a middleware with
/// `chest::actix::ChestMiddleware::new` (actix-web, feature `actix`): both behave the same.
///
/// | Flask-Chest | chest |
/// |---|---|
/// | `chests` | [`chest`](Recorder::chest), [`chests`](Recorder::chests) |
/// | `tracked_vars` | [`tracked_vars`](Recorder::tracked_vars) (default: all) |
/// | `request_id_generator` | [`request_id_generator`](Recorder::request_id_generator) (default: time-ordered UUIDs, [`Uuid7`](crate::Uuid7); [`Uuid4`](crate::Uuid4) is Flask-Chest's) |
/// | `raise_exceptions` | [`raise_exceptions`](Recorder::raise_exceptions) (default: `true`) |
///
/// ```
/// use chest::{MemoryChest, Recorder, Tracked};
///
/// let memory = MemoryChest::new();
/// let recorder = Recorder::new()
///     .chest(memory.clone())
///     .tracked_vars(Tracked::methods().method("GET", ["transaction"]))
///     .request_id_generator(|| "fixed".to_string())
///     .raise_exceptions(false);
/// assert_eq!(recorder.chest_names(), ["memory"]);
/// ```
#[derive(Clone)]
pub struct Recorder {
    chests: Vec<Arc<dyn Chest>>,
    tracked: Tracked,
    make_request_id: Arc<dyn MakeRequestId>,
    raise_exceptions: bool,
    header: Option<HeaderName>,
    trust_incoming_id: bool,
    request_facts: bool,
    /// Shared by clones, so that every request of this recorder gets its own stamp.
    clock: Arc<RequestClock>,
}

/// The methods whose shared strings each thread makes once.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

thread_local! {
    /// [`STANDARD_METHODS`] as shared strings, so that a request's records need not allocate
    /// one. Per thread: a string shared by every thread would have its count written by every
    /// core on every request.
    static SHARED_METHODS: [Arc<str>; 9] = STANDARD_METHODS.map(Arc::from);
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// No chests yet, every variable tracked, [`Uuid7`] ids sent back in `x-request-id`, incoming ids
    /// ignored, `raise_exceptions` on.
    pub fn new() -> Self {
        Recorder {
            chests: Vec::new(),
            tracked: Tracked::all(),
            make_request_id: Arc::new(Uuid7),
            raise_exceptions: true,
            header: Some(HeaderName::from_static("x-request-id")),
            trust_incoming_id: false,
            request_facts: false,
            clock: Arc::default(),
        }
    }

    /// Adds a chest. Every chest is written for each request.
    pub fn chest(mut self, chest: impl Chest) -> Self {
        self.chests.push(Arc::new(chest));
        self
    }

    /// Adds chests that are already shared.
    pub fn chests(mut self, chests: impl IntoIterator<Item = Arc<dyn Chest>>) -> Self {
        self.chests.extend(chests);
        self
    }

    /// Which variables to write for which method (Flask-Chest's `tracked_vars`).
    pub fn tracked_vars(mut self, tracked: Tracked) -> Self {
        self.tracked = tracked;
        self
    }

    /// How a request's id is made (Flask-Chest's `request_id_generator`). Ids longer than 255 bytes
    /// are cut at a character boundary.
    pub fn request_id_generator(mut self, generator: impl MakeRequestId) -> Self {
        self.make_request_id = Arc::new(generator);
        self
    }

    /// With `true` (the default), a failed chest write turns the response into a 500 whose body
    /// says nothing of the cause (the cause is logged). With `false`, failures are only logged.
    /// Either way every chest is attempted.
    pub fn raise_exceptions(mut self, raise: bool) -> Self {
        self.raise_exceptions = raise;
        self
    }

    /// The response header that carries the request id (default `x-request-id`); `None` sends no
    /// header. The same header is read when [`trust_incoming_request_id`](Self::trust_incoming_request_id)
    /// is on. Ids that are not valid header values are not sent.
    pub fn request_id_header(mut self, header: Option<HeaderName>) -> Self {
        self.header = header;
        self
    }

    /// Use the id a client (or a proxy) sent in the request-id header instead of making one. Off by
    /// default: a client could otherwise choose the ids written to your chests.
    pub fn trust_incoming_request_id(mut self, trust: bool) -> Self {
        self.trust_incoming_id = trust;
        self
    }

    /// Record chest's own facts about each request (off by default): its status, the time to the
    /// response headers and to the body's last byte, the response and request body sizes. They
    /// are named in the reserved `chest.` namespace and go through the same selection as the
    /// handler's variables; [`crate::facts`] says what each means and when it is written.
    /// Both adapters record them.
    ///
    /// ```
    /// use chest::{facts, MemoryChest, Recorder, Tracked};
    ///
    /// let recorder = Recorder::new()
    ///     .chest(MemoryChest::new())
    ///     .request_facts(true)
    ///     // With a per-method selection, list the facts to keep like any variable.
    ///     .tracked_vars(Tracked::methods().method("GET", ["user_id", facts::STATUS]));
    /// assert!(recorder.records_request_facts());
    /// ```
    pub fn request_facts(mut self, on: bool) -> Self {
        self.request_facts = on;
        self
    }

    /// Whether [`request_facts`](Self::request_facts) is on.
    pub fn records_request_facts(&self) -> bool {
        self.request_facts
    }

    /// The names of the configured chests, in order.
    pub fn chest_names(&self) -> Vec<&str> {
        self.chests.iter().map(|c| c.name()).collect()
    }

    /// The request-id header, if one is configured.
    pub fn header(&self) -> Option<&HeaderName> {
        self.header.as_ref()
    }

    /// The header to read a client's request id from: the request-id header when incoming ids are
    /// trusted, else `None` (so adapters do not even look).
    #[cfg(any(feature = "axum", feature = "actix"))]
    pub(crate) fn incoming_id_header(&self) -> Option<&HeaderName> {
        self.header.as_ref().filter(|_| self.trust_incoming_id)
    }

    /// Starts a request: its [`Vars`] store with a new id, or with `incoming` (the value of the
    /// request-id header) when incoming ids are trusted and the value is not empty.
    pub fn begin(&self, incoming: Option<&str>) -> Vars {
        let id = match incoming.filter(|id| self.trust_incoming_id && !id.is_empty()) {
            Some(id) => Arc::from(request_id::truncate(id.to_owned())),
            None => self.make_request_id.make_shared_request_id(),
        };
        Vars::new(id)
    }

    /// Ends a request: builds the records the selection keeps for `method`, writes them to every
    /// chest and logs each failure. The [`Finished`] says what became of them, and
    /// [`Finished::should_fail_response`] whether the response must become a 500.
    ///
    /// ```
    /// # async fn demo() {
    /// use chest::{ErrorKind, Finished, MemoryChest, Recorder};
    ///
    /// let broken = MemoryChest::new();
    /// broken.fail_with(Some(ErrorKind::Permanent));
    /// let recorder = Recorder::new().chest(broken);
    ///
    /// let vars = recorder.begin(None);
    /// assert_eq!(recorder.finish(&vars, "GET").await, Finished::NothingToWrite);
    ///
    /// let vars = recorder.begin(None);
    /// vars.set("a", 1).unwrap();
    /// let finished = recorder.finish(&vars, "GET").await;
    /// assert_eq!(finished, Finished::Failed { fail_response: true });
    /// assert!(finished.should_fail_response());
    /// # }
    /// ```
    pub async fn finish(&self, vars: &Vars, method: &str) -> Finished {
        let records = self.records(vars, method);
        if records.is_empty() {
            return Finished::NothingToWrite;
        }
        let errors = match &*self.chests {
            // The common case, one chest: hand the records over, no copy, no joined futures.
            [chest] => chest.write_owned(records).await.err().into_iter().collect(),
            _ => self.write_owned(records).await,
        };
        for error in &errors {
            tracing::error!(
                target: "chest",
                chest = error.chest(),
                request_id = vars.request_id(),
                error = %error,
                "chest write failed"
            );
        }
        if errors.is_empty() {
            Finished::Written
        } else {
            Finished::Failed {
                fail_response: self.raise_exceptions,
            }
        }
    }

    /// The records to write for a request: the selected variables, in order, stamped now (a
    /// stamp no other request of this recorder has, to the microsecond).
    pub fn records(&self, vars: &Vars, method: &str) -> Vec<Record> {
        let (set, route) = vars.take();
        let selected = self.tracked.select(method, set);
        if selected.is_empty() {
            return Vec::new();
        }
        let request_id = vars.shared_request_id();
        let method = SHARED_METHODS
            .with(|shared| shared.iter().find(|m| ***m == *method).cloned())
            .unwrap_or_else(|| Arc::from(method));
        let time = self.clock.stamp();
        selected
            .into_iter()
            .map(|(name, value)| Record {
                request_id: request_id.clone(),
                name,
                value,
                method: method.clone(),
                route: route.clone(),
                time,
            })
            .collect()
    }

    /// [`write`](Self::write) for records the recorder owns. Most chests answer at once (a
    /// queue, an in-memory observation), so each is asked in turn, and when all before the last
    /// have answered, the last is handed the records themselves instead of a copy.
    async fn write_owned(&self, records: Vec<Record>) -> Vec<ChestError> {
        let Some((last, rest)) = self.chests.split_last() else {
            return Vec::new();
        };
        let mut errors = Vec::new();
        let mut waiting = Vec::new();
        for chest in rest {
            let mut write = chest.write(&records);
            // Polled once, with this task's waker: a pending write wakes it as usual.
            let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
            match first {
                Poll::Ready(result) => errors.extend(result.err()),
                Poll::Pending => waiting.push(write),
            }
        }
        if waiting.is_empty() {
            drop(waiting);
            errors.extend(last.write_owned(records).await.err());
        } else {
            waiting.push(last.write(&records));
            errors.extend(join_all(waiting).await.into_iter().filter_map(Result::err));
        }
        errors
    }

    /// Writes `records` to every chest concurrently; returns the errors of those that failed.
    pub async fn write(&self, records: &[Record]) -> Vec<ChestError> {
        join_all(self.chests.iter().map(|c| c.write(records)))
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }
}

/// What [`Recorder::finish`] did with a request's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a failed write may have to turn the response into a 500: see `should_fail_response`"]
pub enum Finished {
    /// The selection kept nothing (or nothing was set): no chest was called.
    NothingToWrite,
    /// Every chest took the records.
    Written,
    /// At least one chest failed (each failure is logged); the others were still written.
    Failed {
        /// Whether the response must be replaced by the bare 500: `raise_exceptions` is on.
        fail_response: bool,
    },
}

impl Finished {
    /// Whether the adapter must send the bare 500 instead of the handler's response: a chest
    /// failed and `raise_exceptions` is on.
    ///
    /// ```
    /// use chest::Finished;
    ///
    /// assert!(!Finished::Written.should_fail_response());
    /// assert!(!Finished::Failed { fail_response: false }.should_fail_response());
    /// assert!(Finished::Failed { fail_response: true }.should_fail_response());
    /// ```
    pub fn should_fail_response(self) -> bool {
        matches!(
            self,
            Finished::Failed {
                fail_response: true
            }
        )
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("chests", &self.chest_names())
            .field("tracked", &self.tracked)
            .field("raise_exceptions", &self.raise_exceptions)
            .field("header", &self.header)
            .field("trust_incoming_id", &self.trust_incoming_id)
            .field("request_facts", &self.request_facts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chests::memory::MemoryChest;
    use crate::BoxFuture;

    /// A chest that answers only on its second poll, as one waiting on I/O does.
    struct Later(MemoryChest);

    impl Chest for Later {
        fn name(&self) -> &str {
            "later"
        }

        fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.write(records).await
            })
        }
    }

    async fn set_and_finish(recorder: &Recorder) -> Finished {
        let vars = recorder.begin(None);
        vars.set("a", 1).unwrap();
        vars.set("b", "text").unwrap();
        recorder.finish(&vars, "GET").await
    }

    #[tokio::test]
    async fn every_chest_gets_every_record_whether_it_answers_at_once_or_later() {
        let (first, later, last) = (
            MemoryChest::named("first"),
            MemoryChest::new(),
            MemoryChest::named("last"),
        );
        // All before the last answer at once: the last is handed the records.
        let at_once = Recorder::new().chest(first.clone()).chest(last.clone());
        // One waits: every chest is written from the same records, joined.
        let one_waits = Recorder::new()
            .chest(first.clone())
            .chest(Later(later.clone()))
            .chest(last.clone());
        for recorder in [at_once, one_waits] {
            assert_eq!(set_and_finish(&recorder).await, Finished::Written);
        }
        assert_eq!((first.len(), later.len(), last.len()), (4, 2, 4));
        let names: Vec<_> = last.records().iter().map(|r| r.name.to_string()).collect();
        assert_eq!(names, ["a", "b", "a", "b"]);
        assert_eq!(last.records()[1].value, crate::Value::from("text"));
    }

    #[tokio::test]
    async fn a_failing_chest_fails_the_response_and_the_others_still_get_the_records() {
        let (failing, later, last) = (
            MemoryChest::named("failing"),
            MemoryChest::new(),
            MemoryChest::named("last"),
        );
        failing.fail_with(Some(crate::ErrorKind::Permanent));
        for with_later in [false, true] {
            let mut recorder = Recorder::new().chest(failing.clone());
            if with_later {
                recorder = recorder.chest(Later(later.clone()));
            }
            let recorder = recorder.chest(last.clone());
            assert!(set_and_finish(&recorder).await.should_fail_response());
        }
        assert_eq!((failing.len(), later.len(), last.len()), (0, 2, 4));
    }
}
