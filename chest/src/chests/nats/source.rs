//! [`NatsSource`]: the read side of a stream, a durable pull consumer, for `chest export`.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::AckKind;
use futures_util::StreamExt;

use super::chest::{connect, ensure_stream};
use super::message;
use super::url::{NatsSettings, Side};
use crate::url::ChestUrl;
use crate::{BatchId, ChestError, Error, Record};

/// A durable pull consumer of a stream that [`NatsChest`](super::NatsChest)s publish to: it hands
/// out batches, and a batch counts as read only once [`ack`](Self::ack)ed. A batch not acked
/// within `ack_wait` (the reader crashed, say) is delivered again, to this reader or another:
/// several readers of one consumer share the work.
///
/// ```no_run
/// use std::time::Duration;
/// use chest::chests::nats::NatsSource;
///
/// # async fn demo(target: &dyn chest::Chest) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let source = NatsSource::open("nats://127.0.0.1:4222/CHEST?consumer=export-pg").await?;
/// for delivery in source.next_batches(16, Duration::from_secs(1)).await? {
///     target.write_batch(delivery.id, &delivery.records).await?;
///     source.ack(&delivery).await?;
/// }
/// # Ok(()) }
/// ```
pub struct NatsSource {
    name: String,
    consumer: Consumer<pull::Config>,
}

/// One message of the stream: a batch, as published.
#[non_exhaustive]
pub struct Delivery {
    /// The batch's id (the message's `Nats-Msg-Id`).
    pub id: BatchId,
    /// Its records.
    pub records: Vec<Record>,
    /// Its sequence number in the stream.
    pub sequence: u64,
    /// How many times the server delivered it (more than 1 after a reader stopped before acking).
    pub delivered: i64,
    message: async_nats::jetstream::Message,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("records", &self.records.len())
            .field("sequence", &self.sequence)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl NatsSource {
    /// Connects and finds (or creates) the durable consumer named by `consumer=NAME` on the stream
    /// of a `nats://HOST:PORT/STREAM?consumer=NAME[&ack_wait=30s]` URL (with the chest's
    /// `subject`, credential and TLS parameters).
    pub async fn open(url: &str) -> Result<Self, Error> {
        let settings = {
            let parsed = ChestUrl::parse(url)?;
            NatsSettings::parse(&parsed, Side::Source)?
        };
        let js = connect(&settings).await?;
        let stream = ensure_stream(&js, &settings).await?;
        let durable = settings.consumer.clone().unwrap_or_default();
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            deliver_policy: DeliverPolicy::All,
            filter_subject: settings.subject.clone(),
            max_ack_pending: 1_000,
            ..Default::default()
        };
        let name = format!("{}?consumer={durable}", settings.name);
        let consumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|e| Error::backend(name.clone(), format!("cannot open the consumer: {e}")))?;
        Ok(NatsSource { name, consumer })
    }

    /// The source's name for logs and errors: URL without secrets, and the consumer.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Up to `max` batches, waiting up to `wait` for the first; none when the stream has nothing
    /// new. A message that is not a chest batch is logged and terminated (never delivered again).
    pub async fn next_batches(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ChestError> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| ChestError::retryable(&self.name, e))?;
        let mut out = Vec::new();
        while let Some(next) = batch.next().await {
            let message = match next {
                Ok(message) => message,
                Err(e) if out.is_empty() => return Err(ChestError::retryable(&self.name, e)),
                Err(_) => break, // What came so far is good; the next call asks again.
            };
            let (sequence, delivered) = match message.info() {
                Ok(info) => (info.stream_sequence, info.delivered),
                Err(e) => return Err(ChestError::retryable(&self.name, e)),
            };
            match message::decode(&message.payload) {
                Ok((id, records)) => out.push(Delivery {
                    id,
                    records,
                    sequence,
                    delivered,
                    message,
                }),
                Err(e) => {
                    tracing::error!(target: "chest::chests::nats", source = %self.name, sequence, error = %e, "not a chest batch: terminated, not exported");
                    message
                        .ack_with(AckKind::Term)
                        .await
                        .map_err(|e| ChestError::retryable(&self.name, e))?;
                }
            }
        }
        Ok(out)
    }

    /// Marks a batch read, once the server confirmed it: it will not be delivered again.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), ChestError> {
        delivery
            .message
            .double_ack()
            .await
            .map_err(|e| ChestError::retryable(&self.name, e))
    }

    /// How many messages the consumer has not had acked yet (new and in flight).
    pub async fn pending(&self) -> Result<u64, ChestError> {
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|e| ChestError::retryable(&self.name, e))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}
