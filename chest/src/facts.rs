//! Automatic request facts: what chest itself can say about each request, recorded when
//! [`Recorder::request_facts`](crate::Recorder::request_facts) is on (it is off by default).
//!
//! | name | value | when it is known |
//! |---|---|---|
//! | [`STATUS`] `chest.status` | Int: the handler's response status | the handler's response |
//! | [`TIME_TO_HEADERS`] `chest.time_to_headers_s` | Float: seconds from the request entering chest's middleware to the handler's response | the handler's response |
//! | [`REQUEST_BYTES`] `chest.request_bytes` | Int: the request body's size, from its `Content-Length` (absent when the request declares none) | the handler's response |
//! | [`TIME_TO_LAST_BYTE`] `chest.time_to_last_byte_s` | Float: seconds from the request entering chest's middleware to the response body's last byte being handed to the server (or to the body being dropped) | the body's end |
//! | [`RESPONSE_BYTES`] `chest.response_bytes` | Int: bytes of response body handed to the server | the body's end |
//! | [`BODY_COMPLETE`] `chest.body_complete` | Bool: whether the whole body was handed to the server (`false` when the client went away, or the body failed, before its end) | the body's end |
//!
//! "Handed to the server" is as far as the server can tell: bytes written into the socket's
//! buffers count as sent even if the client leaves before reading them, so a client that leaves
//! near the end of a small body may still show a complete one.
//!
//! Every name starts with the reserved prefix `chest.`, which [`Vars::set`](crate::Vars::set)
//! refuses, so facts never clash with your variables. Facts go through the recorder's
//! [`Tracked`](crate::Tracked) selection like any variable: with a per-method selection, list the
//! facts you want.
//!
//! ## When they are written
//! - The first three are recorded with the handler's variables, in the same write, when the
//!   handler has returned its response and before it is sent. `raise_exceptions` applies to
//!   that write as always; `chest.time_to_headers_s` does not include the write itself (with an
//!   inline chest, the write delays the headers by its own duration, which is then in
//!   `chest.time_to_last_byte_s`).
//! - The last three need the end of the body, which comes after the response's status and
//!   headers have gone out: they are written in a second, separate write when the body ends or
//!   is dropped (a client that leaves early drops it). That write cannot turn the response into
//!   a 500 any more, so `raise_exceptions` does not apply to it: its failures are only logged. It
//!   does not hold up the body: a write that does not complete at once (an inline chest) runs as
//!   a task of its own on the current tokio runtime; through
//!   [`Batched`](crate::batch::Batched) it is only an enqueue.
//! - A response replaced by the bare 500 of a failed write keeps the first three in that write
//!   (`chest.status` is then the handler's status, not the 500) and gets no body facts. A request
//!   whose inner service failed instead of answering gets no facts: there is no response.
//!
//! ```
//! use chest::{facts, layer::ChestLayer, MemoryChest, Recorder};
//! use axum::{routing::get, Router};
//!
//! let memory = MemoryChest::new();
//! let recorder = Recorder::new().chest(memory.clone()).request_facts(true);
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .route_layer(ChestLayer::new(recorder));
//! // Each request to `/` then writes chest.status, chest.time_to_headers_s, ... to `memory`.
//! assert!(facts::ALL.contains(&facts::TIME_TO_LAST_BYTE));
//! ```

/// The response status the handler returned (Int).
pub const STATUS: &str = "chest.status";
/// Seconds from the request entering chest's middleware to the handler's response (Float).
pub const TIME_TO_HEADERS: &str = "chest.time_to_headers_s";
/// The request body's declared size, its `Content-Length` (Int; absent without one).
pub const REQUEST_BYTES: &str = "chest.request_bytes";
/// Seconds from the request entering chest's middleware to the response body's end (Float).
pub const TIME_TO_LAST_BYTE: &str = "chest.time_to_last_byte_s";
/// Bytes of response body handed to the server (Int).
pub const RESPONSE_BYTES: &str = "chest.response_bytes";
/// Whether the whole response body was sent (Bool).
pub const BODY_COMPLETE: &str = "chest.body_complete";

/// Every fact's name.
pub const ALL: [&str; 6] = [
    STATUS,
    TIME_TO_HEADERS,
    REQUEST_BYTES,
    TIME_TO_LAST_BYTE,
    RESPONSE_BYTES,
    BODY_COMPLETE,
];

#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) use tracked::{BodyFacts, Started};

#[cfg(any(feature = "axum", feature = "actix"))]
mod tracked {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Waker};
    use std::time::Instant;

    use super::TIME_TO_LAST_BYTE;
    use super::{BODY_COMPLETE, REQUEST_BYTES, RESPONSE_BYTES, STATUS, TIME_TO_HEADERS};
    use crate::{Recorder, Value, Vars};

    /// What an adapter keeps of a request from its start when facts are on.
    pub(crate) struct Started {
        at: Instant,
        request_bytes: Option<u64>,
    }

    impl Started {
        /// The request starts now; `content_length` is its `Content-Length` header, if any.
        /// Boxed, as is what [`at_headers`](Self::at_headers) returns: the adapters' response
        /// futures then carry a pointer, not the facts, through the request path without them.
        pub(crate) fn now(content_length: Option<&[u8]>) -> Box<Self> {
            let request_bytes = content_length
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse().ok());
            Box::new(Started {
                at: Instant::now(),
                request_bytes,
            })
        }

        /// The handler answered `status`: records the facts known now into `vars`, and returns
        /// what the body will need for the rest. Call it once the route is known.
        pub(crate) fn at_headers(
            &self,
            recorder: &Arc<Recorder>,
            vars: &Vars,
            method: &str,
            status: u16,
        ) -> Box<BodyFacts> {
            let request_bytes = self
                .request_bytes
                .map(|b| fact(REQUEST_BYTES, Value::from(b)));
            vars.push_facts(
                [
                    fact(STATUS, Value::from(status)),
                    fact(TIME_TO_HEADERS, Value::from(self.at.elapsed())),
                ]
                .into_iter()
                .chain(request_bytes),
            );
            Box::new(BodyFacts {
                recorder: recorder.clone(),
                vars: vars.sibling(),
                method: method.into(),
                started: self.at,
                bytes: 0,
                expected: None,
                done: true,
            })
        }
    }

    /// The response body's facts: counts the bytes, notices the end (or the drop) and then
    /// writes them. Shared by the axum and actix-web body wrappers.
    pub(crate) struct BodyFacts {
        recorder: Arc<Recorder>,
        /// A store of the request's own (its id and route), written through `Recorder::finish`
        /// like the first.
        vars: Vars,
        method: Box<str>,
        started: Instant,
        bytes: u64,
        /// The body's exact size, when it says so: reaching it is the end.
        expected: Option<u64>,
        /// Written already, or not to be written (not yet watching a body).
        done: bool,
    }

    impl BodyFacts {
        /// Starts watching a body of `expected` bytes (when known). A body that is empty from
        /// the start may never be polled, so it ends at once.
        pub(crate) fn watch(mut self: Box<Self>, expected: Option<u64>) -> Box<Self> {
            self.done = false;
            self.expected = expected;
            if expected == Some(0) {
                self.end(true);
            }
            self
        }

        /// `len` bytes went to the server.
        pub(crate) fn sent(&mut self, len: usize) {
            self.bytes += len as u64;
            if self.expected == Some(self.bytes) {
                self.end(true);
            }
        }

        /// The body ended (`complete`) or failed: the facts are written, once.
        pub(crate) fn end(&mut self, complete: bool) {
            if std::mem::replace(&mut self.done, true) {
                return;
            }
            self.vars.push_facts([
                fact(TIME_TO_LAST_BYTE, Value::from(self.started.elapsed())),
                fact(RESPONSE_BYTES, Value::from(self.bytes)),
                fact(BODY_COMPLETE, Value::Bool(complete)),
            ]);
            finish_detached(
                self.recorder.clone(),
                self.vars.clone(),
                std::mem::take(&mut self.method),
            );
        }
    }

    impl Drop for BodyFacts {
        /// Dropped before its end: the client went away, or the server stopped polling a body
        /// whose end it knew (`sent` has then already ended it).
        fn drop(&mut self) {
            self.end(false);
        }
    }

    thread_local! {
        /// The facts' names as shared strings, made once per thread: a request's facts then
        /// allocate no name (per thread, so that no count is written by every core).
        static NAMES: [Arc<str>; 6] = super::ALL.map(Arc::from);
    }

    /// A fact, its name shared.
    fn fact(name: &'static str, value: Value) -> crate::vars::Entry {
        let shared = NAMES.with(|names| names.iter().find(|n| ***n == *name).cloned());
        (shared.unwrap_or_else(|| Arc::from(name)), value)
    }

    /// Writes `vars` without waiting: a write that completes at once (an enqueue) is done here,
    /// any other becomes a task on the current tokio runtime.
    fn finish_detached(recorder: Arc<Recorder>, vars: Vars, method: Box<str>) {
        let mut write = Box::pin(async move {
            // Failures are logged by `finish`; the response is gone, nothing else to do.
            let _ = recorder.finish(&vars, &method).await;
        });
        // The no-op waker is replaced by the runtime's when the write has to wait and is spawned.
        if write
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(write)),
                Err(_) => tracing::error!(
                    target: "chest",
                    "no tokio runtime to finish writing a request's body facts; they are lost"
                ),
            }
        }
    }
}

#[cfg(feature = "axum")]
pub(crate) use axum_body::CountedBody;

#[cfg(feature = "axum")]
mod axum_body {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::{Body, Frame, SizeHint};

    use super::BodyFacts;

    pin_project_lite::pin_project! {
        /// An axum (http-body) response body that feeds [`BodyFacts`].
        pub(crate) struct CountedBody<B> {
            #[pin]
            inner: B,
            facts: Box<BodyFacts>,
        }
    }

    impl<B: Body<Data = Bytes>> CountedBody<B> {
        pub(crate) fn new(inner: B, facts: Box<BodyFacts>) -> Self {
            let facts = facts.watch(inner.size_hint().exact());
            CountedBody { inner, facts }
        }
    }

    impl<B: Body<Data = Bytes>> Body for CountedBody<B> {
        type Data = Bytes;
        type Error = B::Error;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
            let this = self.project();
            let polled = this.inner.poll_frame(cx);
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.facts.sent(data.len());
                    }
                }
                Poll::Ready(None) => this.facts.end(true),
                Poll::Ready(Some(Err(_))) => this.facts.end(false),
                Poll::Pending => {}
            }
            polled
        }

        fn is_end_stream(&self) -> bool {
            self.inner.is_end_stream()
        }

        fn size_hint(&self) -> SizeHint {
            self.inner.size_hint()
        }
    }
}

#[cfg(feature = "actix")]
pub(crate) use actix_body::CountedMessageBody;

#[cfg(feature = "actix")]
mod actix_body {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use actix_web::body::{BodySize, MessageBody};
    use actix_web::web::Bytes;

    use super::BodyFacts;

    pin_project_lite::pin_project! {
        /// An actix-web response body that feeds [`BodyFacts`].
        pub(crate) struct CountedMessageBody<B> {
            #[pin]
            inner: B,
            facts: Box<BodyFacts>,
        }
    }

    impl<B: MessageBody> CountedMessageBody<B> {
        pub(crate) fn new(inner: B, facts: Box<BodyFacts>) -> Self {
            let expected = match inner.size() {
                BodySize::None => Some(0),
                BodySize::Sized(n) => Some(n),
                BodySize::Stream => None,
            };
            CountedMessageBody {
                inner,
                facts: facts.watch(expected),
            }
        }
    }

    impl<B: MessageBody> MessageBody for CountedMessageBody<B> {
        type Error = B::Error;

        fn size(&self) -> BodySize {
            self.inner.size()
        }

        fn poll_next(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Bytes, Self::Error>>> {
            let this = self.project();
            let polled = this.inner.poll_next(cx);
            match &polled {
                Poll::Ready(Some(Ok(data))) => this.facts.sent(data.len()),
                Poll::Ready(None) => this.facts.end(true),
                Poll::Ready(Some(Err(_))) => this.facts.end(false),
                Poll::Pending => {}
            }
            polled
        }
    }
}
