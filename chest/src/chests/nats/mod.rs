//! NATS JetStream: [`NatsChest`] publishes each batch of records as one message to a stream, and
//! [`NatsSource`] reads them back through a durable pull consumer (what `chest export --from
//! nats://…` uses). Between a fleet of service instances and the stores, JetStream is a
//! replicated log: instances publish, exporters consume and write to PostgreSQL, InfluxDB or
//! SQLite at their own pace.
//!
//! ## URL
//! `nats://HOST:PORT[,HOST:PORT…]/STREAM?subject=chest.records` (`tls://…` or `tls=true` for TLS,
//! always verified; `ca=PATH` for a private CA). Parameters:
//!
//! | parameter | meaning | default |
//! |---|---|---|
//! | `subject` | the subject published to (one of the stream's subjects) | `chest.records` |
//! | `create` | create the stream when missing (file storage) | `false` |
//! | `replicas`, `retention`, `max_age`, `duplicate_window` | with `create=true`: replicas (1–5), `limits`/`interest`/`workqueue`, how long messages stay, how long `Nats-Msg-Id`s are remembered | 1, `limits`, forever, 2m |
//! | `token_env`, `password_env` (with `USER@`), `creds_env` | the name of the environment variable holding the token, the password, or the path of a `.creds` file | none |
//! | `timeout` | connect, request and publish-ack timeout | `5s` |
//! | `consumer`, `ack_wait` | [`NatsSource`] only: the durable consumer, and how long before an unacked batch is delivered again | required, `30s` |
//!
//! ## Delivery
//! A write counts only once JetStream's PublishAck arrived (the message is stored, on a
//! majority of the replicas). [`write_batch`](crate::Chest::write_batch) sends the batch id as
//! `Nats-Msg-Id`: JetStream stores a retried batch once within the duplicate window and the chest
//! answers [`Written::AlreadyStored`](crate::Written::AlreadyStored). Under
//! [`Batched`](crate::batch::Batched), an outage is ridden out by the queue and spool, and every
//! retry reuses the id.
//!
//! The body is the versioned JSON of [`message`]: one batch, each record's request id, name,
//! typed value, method, route and time.
//!
//! ## Errors
//! - Publish-ack timeout, connection lost, no responders while the stream exists: retryable.
//! - The stream missing: when opening, an [`Error::Backend`] that says how to
//!   create it (or to add `create=true`); when it disappears later, a permanent write error saying
//!   the same.
//! - A message over the server's `max_payload`: permanent (make batches smaller).
//! - Refused credentials, unreachable servers, a subject the stream does not take: errors from
//!   `open` naming the chest and the cause, never a secret.
//!
//! ```no_run
//! # async fn demo() -> Result<(), chest::Error> {
//! let chest = chest::open("nats://127.0.0.1:4222/CHEST?create=true&replicas=1").await?;
//! chest.write(&[chest::Record::new("req-1", "latency_ms", 12, "GET", Some("/items/{id}"))])
//!     .await
//!     .expect("published");
//! # Ok(()) }
//! ```

mod chest;
pub mod message;
mod source;
mod url;

pub use chest::NatsChest;
pub use source::{Delivery, NatsSource};

use std::sync::Arc;

use crate::chests::scheme::{Opening, Scheme};
use crate::url::ChestUrl;
use crate::{Chest, Error};

/// The scheme table's row (see [`chest::open`](crate::open()) for the URLs' parameters).
pub(crate) const SCHEME: Scheme = Scheme {
    names: &["nats", "tls"],
    open: open_url,
    read: None,
};

fn open_url(url: &ChestUrl<'_>) -> Result<Opening<Arc<dyn Chest>>, Error> {
    let settings = url::NatsSettings::parse(url, url::Side::Chest)?;
    Ok(Box::pin(async move {
        let chest: Arc<dyn Chest> = Arc::new(NatsChest::connect(settings).await?);
        Ok(chest)
    }))
}
