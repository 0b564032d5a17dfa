//! `chest export --from nats://HOST:4222/STREAM?consumer=NAME`: a JetStream stream's batches,
//! read through a durable pull consumer, written to the target one message at a time.
//!
//! A message is acked only after the target acknowledged its records, and each is written under
//! its own batch id (the one it was published with, its `Nats-Msg-Id`). So an exporter killed
//! between the target's acknowledgement and its ack gets the message again (after the consumer's
//! `ack_wait`), writes it again under the same id, and a target that keeps ids (the SQL chests)
//! stores it once. Exporters started on the same consumer share the messages. The stream counts
//! messages, not records, so progress shows the records exported and their rate, and the start
//! logs how many messages are waiting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chest::chests::nats::NatsSource;

use super::{write_with_retries, ExportArgs, Progress};
use crate::CliError;

/// Messages asked for at a time: few, so that what one exporter holds unacked stays well within
/// the consumer's `ack_wait`, and the other exporters get the rest.
const FETCH: usize = 8;

/// Whether `--from` names a NATS stream.
pub(super) fn is_nats(from: &str) -> bool {
    from.starts_with("nats://") || from.starts_with("tls://")
}

pub(super) async fn export(args: &ExportArgs, stop: &AtomicBool) -> Result<(), CliError> {
    let source = NatsSource::open(&args.from).await?;
    let target = chest::open(&args.to).await?;
    let waiting = source.pending().await?;
    let progress = Progress::new(0);
    tracing::info!(target: "chest::export", from = source.name(), to = target.name(), messages_waiting = waiting, "export started");
    // Without --follow, the export ends when the stream had nothing new for a second.
    let wait = if args.follow {
        args.interval
    } else {
        Duration::from_secs(1)
    };
    'fetching: while !stop.load(Ordering::Relaxed) {
        let deliveries = match source.next_batches(FETCH, wait).await {
            Ok(deliveries) => deliveries,
            Err(e) if e.is_retryable() => {
                tracing::warn!(target: "chest::export", error = %chest::error_chain(&e), "reading the stream failed; again in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if deliveries.is_empty() {
            if !args.follow {
                break;
            }
            continue;
        }
        for delivery in deliveries {
            if stop.load(Ordering::Relaxed) {
                // Not written, not acked: delivered again, to this consumer's next reader.
                break 'fetching;
            }
            if delivery.delivered > 1 {
                tracing::info!(target: "chest::export", batch = %delivery.id, sequence = delivery.sequence, delivered = delivery.delivered, "a batch delivered again: written under its id");
            }
            write_with_retries(&*target, delivery.id, &delivery.records, stop).await?;
            if let Err(e) = source.ack(&delivery).await {
                // The target has it; the message comes back after ack_wait and is stored once.
                tracing::warn!(target: "chest::export", batch = %delivery.id, error = %chest::error_chain(&e), "ack failed; the batch will be delivered again");
            }
            progress.advance(delivery.records.len() as u64);
        }
    }
    progress.finish();
    if stop.load(Ordering::Relaxed) {
        tracing::info!(target: "chest::export", "interrupted; run the same command to resume");
    }
    Ok(())
}
