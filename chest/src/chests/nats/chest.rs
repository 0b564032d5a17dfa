//! [`NatsChest`]: connecting, making sure of the stream, publishing a batch and judging the answer.

use std::time::Duration;

use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream, ErrorCode};
use async_nats::{ConnectErrorKind, ConnectOptions};

use super::message;
use super::url::{Auth, NatsSettings};
use crate::{BatchId, BoxError, BoxFuture, Chest, ChestError, Error, Record, Written};

/// A chest that publishes each batch of records as one message to a JetStream stream. See the
/// [module docs](super) for the URL, the message format and the errors.
pub struct NatsChest {
    name: String,
    js: jetstream::Context,
    stream: String,
    subject: String,
}

impl std::fmt::Debug for NatsChest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsChest")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Connects a client as the settings say; the error names the chest and never a secret.
pub(crate) async fn connect(settings: &NatsSettings) -> Result<jetstream::Context, Error> {
    let backend = |e: BoxError| Error::backend(settings.name.clone(), e);
    let mut options = ConnectOptions::new()
        .name("chest")
        .connection_timeout(settings.timeout)
        .request_timeout(Some(settings.timeout))
        .require_tls(settings.tls);
    if let Some(ca) = &settings.ca {
        options = options.add_root_certificates(ca.clone());
    }
    options = match &settings.auth {
        Auth::None => options,
        Auth::Token(token) => options.token(token.clone()),
        Auth::UserPassword(user, password) => {
            options.user_and_password(user.clone(), password.clone())
        }
        Auth::Creds(path) => options.credentials_file(path).await.map_err(|e| {
            backend(format!("cannot read the credentials file named by creds_env: {e}").into())
        })?,
    };
    let client = options
        .connect(settings.servers.as_slice())
        .await
        .map_err(|e| {
            let hint = match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    "the server refused the credentials (check token_env, the user and password_env, or creds_env)"
                }
                ConnectErrorKind::TimedOut | ConnectErrorKind::Io | ConnectErrorKind::Dns => {
                    "cannot reach the server (is nats-server running with JetStream, `-js`?)"
                }
                ConnectErrorKind::Tls => "TLS failed (a `ca=PATH` for a private CA?)",
                _ => "cannot connect",
            };
            backend(format!("{hint}: {e}").into())
        })?;
    let mut js = jetstream::new(client);
    js.set_timeout(settings.timeout);
    Ok(js)
}

/// The message for a stream that does not exist, saying how to make it.
pub(crate) fn missing_stream(settings: &NatsSettings) -> String {
    format!(
        "stream `{}` does not exist: add `create=true` (with `replicas=N`) to the URL, or create it: \
         nats stream add {} --subjects {} --storage file --replicas 1 --dupe-window 2m",
        settings.stream, settings.stream, settings.subject
    )
}

fn is_stream_not_found(kind: &GetStreamErrorKind) -> bool {
    matches!(kind, GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Finds the stream, or creates it when the settings ask to.
pub(crate) async fn ensure_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<stream::Stream, Error> {
    let backend = |e: BoxError| Error::backend(settings.name.clone(), e);
    let found = match &settings.create {
        Some(create) => {
            let config = stream::Config {
                name: settings.stream.clone(),
                subjects: vec![settings.subject.clone()],
                num_replicas: create.replicas,
                retention: create.retention,
                max_age: create.max_age.unwrap_or_default(),
                duplicate_window: create.duplicate_window.unwrap_or(Duration::from_secs(120)),
                storage: stream::StorageType::File,
                ..Default::default()
            };
            js.get_or_create_stream(config)
                .await
                .map_err(|e| backend(format!("cannot create the stream: {e}").into()))?
        }
        None => js.get_stream(&settings.stream).await.map_err(|e| {
            if is_stream_not_found(&e.kind()) {
                backend(missing_stream(settings).into())
            } else {
                backend(format!("cannot look up the stream (is JetStream enabled?): {e}").into())
            }
        })?,
    };
    let subjects = &found.cached_info().config.subjects;
    if !subjects
        .iter()
        .any(|s| subject_matches(s, &settings.subject))
    {
        return Err(backend(
            format!(
                "stream `{}` does not take subject `{}` (its subjects: {subjects:?}): give `subject=` one of them",
                settings.stream, settings.subject
            )
            .into(),
        ));
    }
    Ok(found)
}

/// Whether NATS subject `pattern` (with `*` and `>` wildcards) matches `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for p in pattern.split('.') {
        match (p, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (p, Some(t)) if p == t => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

impl NatsChest {
    /// Connects to the servers of a `nats://` URL and finds (or, with `create=true`, creates) its
    /// stream; see the [module docs](super) for the URL.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), chest::Error> {
    /// let chest = chest::chests::nats::NatsChest::open(
    ///     "nats://127.0.0.1:4222/CHEST?subject=chest.records&create=true",
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Self, Error> {
        let settings = {
            let parsed = crate::url::ChestUrl::parse(url)?;
            NatsSettings::parse(&parsed, super::url::Side::Chest)?
        };
        Self::connect(settings).await
    }

    pub(crate) async fn connect(settings: NatsSettings) -> Result<Self, Error> {
        let js = connect(&settings).await?;
        ensure_stream(&js, &settings).await?;
        tracing::debug!(target: "chest::chests::nats", chest = %settings.name, "connected");
        Ok(NatsChest {
            name: settings.name,
            js,
            stream: settings.stream,
            subject: settings.subject,
        })
    }

    async fn publish(&self, id: BatchId, records: &[Record]) -> Result<Written, ChestError> {
        let body = message::encode(id, records);
        let publish = PublishMessage::build()
            .payload(body.into())
            .message_id(id.to_string())
            .expected_stream(&self.stream)
            .header("Chest-Format", message::FORMAT.to_string().as_str());
        let ack = match self.js.send_publish(self.subject.clone(), publish).await {
            Ok(future) => future.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) if ack.duplicate => {
                tracing::debug!(target: "chest::chests::nats", chest = %self.name, batch = %id, "already stored");
                Ok(Written::AlreadyStored)
            }
            Ok(ack) => {
                tracing::trace!(target: "chest::chests::nats", chest = %self.name, batch = %id, seq = ack.sequence, records = records.len(), "published");
                Ok(Written::Stored)
            }
            Err(e) => Err(self.classify(e).await),
        }
    }

    /// Timeouts, a lost connection and no responders are retryable, unless the stream is gone;
    /// a message too large or refused by the stream is permanent.
    async fn classify(&self, e: async_nats::jetstream::context::PublishError) -> ChestError {
        match e.kind() {
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe | PublishErrorKind::MaxAckPending => {
                ChestError::retryable(&self.name, e)
            }
            PublishErrorKind::StreamNotFound => match self.js.get_stream(&self.stream).await {
                Err(lookup) if is_stream_not_found(&lookup.kind()) => ChestError::permanent(
                    &self.name,
                    format!(
                        "stream `{}` does not exist (any more): create it (nats stream add {} --subjects {}) or open the chest with `create=true`",
                        self.stream, self.stream, self.subject
                    ),
                ),
                _ => ChestError::retryable(&self.name, e),
            },
            PublishErrorKind::MaxPayloadExceeded => ChestError::permanent(
                &self.name,
                format!("{e}: make batches smaller (max_records / max_bytes of Batched)"),
            ),
            _ => ChestError::permanent(&self.name, e),
        }
    }
}

impl Chest for NatsChest {
    fn name(&self) -> &str {
        &self.name
    }

    /// Publishes the records as one message under a new batch id.
    fn write<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), ChestError>> {
        Box::pin(async move { self.publish(BatchId::new(), records).await.map(|_| ()) })
    }

    /// Publishes the records as one message with `Nats-Msg-Id` = `id`: JetStream stores a retried
    /// batch once within the stream's duplicate window and answers [`Written::AlreadyStored`].
    fn write_batch<'a>(
        &'a self,
        id: BatchId,
        records: &'a [Record],
    ) -> BoxFuture<'a, Result<Written, ChestError>> {
        Box::pin(self.publish(id, records))
    }
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn subjects_and_wildcards() {
        assert!(subject_matches("chest.records", "chest.records"));
        assert!(subject_matches("chest.*", "chest.records"));
        assert!(subject_matches("chest.>", "chest.a.b"));
        assert!(!subject_matches("chest.*", "chest.a.b"));
        assert!(!subject_matches("chest.records", "chest"));
        assert!(!subject_matches("chest", "chest.records"));
    }
}
