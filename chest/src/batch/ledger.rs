//! The books of a batched chest: where every record is, changed only by named transitions.
//!
//! Each transition either brings records in (`enqueued`, `refused_on_arrival`, and `restored` at
//! the start) on both sides of the balance documented on [`Stats`], or moves them from one place
//! to another (queue, in flight, spool, written, dead-lettered, dropped by reason). So
//!
//! ```text
//! enqueued + restored = written + dead_lettered + dropped.total()
//!                       + spool_records + queue_depth + in_flight
//! ```
//!
//! holds after every transition. A move of more records (or bytes) than a place holds would be a
//! bug in the worker: it is refused as a whole (the books stay as they were, and balanced) and
//! logged as an error, never applied in part and never a panic.

use super::spool::Totals;
use super::stats::{LastError, Stats};

/// Why records that arrived were not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Written after shutdown began.
    Shutdown,
    /// The queue was full (`DropNewest`, or `DropOldest` with nothing to evict).
    Newest,
    /// The queue was full under `Reject`.
    Rejected,
    /// The queue stayed full for the whole `Block` timeout.
    BlockTimeout,
}

/// What a delivery settled: records the chest accepted, and records it refused for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub written: u64,
    pub refused: u64,
    /// Whether the refused records are in the dead-letter file (else they are dropped).
    pub dead_lettered: bool,
}

impl Outcome {
    fn records(&self) -> u64 {
        self.written + self.refused
    }
}

/// A place records can be in, with the bytes kept beside it (the spool's bytes are its own
/// gauge, set from the file).
#[derive(Debug, Clone, Copy)]
enum Place {
    Queue,
    Flight,
    Spool,
}

/// Where every record of one batched chest is, and the counters that go with it.
#[derive(Debug)]
pub(crate) struct Ledger {
    stats: Stats,
    /// Bytes of the records counted in `stats.in_flight`.
    in_flight_bytes: u64,
}

impl Ledger {
    /// The books at the start: `spool` is what the spool held when it was opened (`restored`).
    pub fn new(chest: String, spool: Totals) -> Self {
        Ledger {
            stats: Stats {
                chest,
                restored: spool.records,
                spool_records: spool.records,
                spool_batches: spool.batches,
                spool_bytes: spool.bytes,
                ..Stats::default()
            },
            in_flight_bytes: 0,
        }
    }

    /// The counters, to read.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Stats {
        self.stats.clone()
    }

    /// Records and bytes in memory: queued and in flight.
    pub fn memory(&self) -> (u64, u64) {
        (
            self.stats.queue_depth + self.stats.in_flight,
            self.stats.queue_bytes + self.in_flight_bytes,
        )
    }

    /// Records handed to `write` went into the queue.
    pub fn enqueued(&mut self, records: u64, bytes: u64) {
        self.stats.enqueued += records;
        self.stats.queue_depth += records;
        self.stats.queue_bytes += bytes;
    }

    /// Records handed to `write` were not queued.
    pub fn refused_on_arrival(&mut self, records: u64, why: Refusal) {
        self.stats.enqueued += records;
        let dropped = &mut self.stats.dropped;
        *match why {
            Refusal::Shutdown => &mut dropped.shutdown,
            Refusal::Newest => &mut dropped.newest,
            Refusal::Rejected => &mut dropped.rejected,
            Refusal::BlockTimeout => &mut dropped.block_timeout,
        } += records;
    }

    /// Queued records were evicted to make room (`DropOldest`).
    pub fn evicted_from_queue(&mut self, records: u64, bytes: u64) {
        if self.take("evicted_from_queue", Place::Queue, records, bytes) {
            self.stats.dropped.oldest += records;
        }
    }

    /// Queued records were taken out as a batch.
    pub fn taken_into_flight(&mut self, records: u64, bytes: u64) {
        if self.take("taken_into_flight", Place::Queue, records, bytes) {
            self.put(Place::Flight, records, bytes);
        }
    }

    /// Records in flight were appended to the spool.
    pub fn spooled(&mut self, records: u64, bytes: u64) {
        if self.take("spooled", Place::Flight, records, bytes) {
            self.stats.spooled += records;
            self.put(Place::Spool, records, 0);
        }
    }

    /// Spooled records were evicted to make room for newer ones (`DropOldest`).
    pub fn evicted_from_spool(&mut self, records: u64) {
        if self.take("evicted_from_spool", Place::Spool, records, 0) {
            self.stats.dropped.oldest += records;
        }
    }

    /// Spooled records could not be decoded (their rows were deleted).
    pub fn undecodable_in_spool(&mut self, records: u64) {
        if self.take("undecodable_in_spool", Place::Spool, records, 0) {
            self.stats.dropped.spool_corrupt += records;
        }
    }

    /// A delivery of records in flight settled (`bytes`: those of the settled records).
    pub fn delivered(&mut self, outcome: Outcome, bytes: u64) {
        if self.take("delivered", Place::Flight, outcome.records(), bytes) {
            self.settle(outcome);
        }
    }

    /// A replay of spooled records settled, and their rows were updated.
    pub fn replayed(&mut self, outcome: Outcome) {
        if self.take("replayed", Place::Spool, outcome.records(), 0) {
            self.stats.replayed += outcome.records();
            self.settle(outcome);
        }
    }

    /// The spool file turned out corrupt while running and was set aside: its records are
    /// dropped, except those of the batch being replayed (`replaying`, `bytes`), which are now
    /// only in memory, in flight.
    pub fn spool_set_aside(&mut self, replaying: u64, bytes: u64) {
        let lost = self.stats.spool_records.saturating_sub(replaying);
        if self.take("spool_set_aside", Place::Spool, lost + replaying, 0) {
            self.stats.dropped.spool_corrupt += lost;
            self.put(Place::Flight, replaying, bytes);
            self.stats.spool_set_aside += 1;
            self.stats.spool_batches = 0;
            self.stats.spool_bytes = 0;
        }
    }

    /// A spool file that could not be opened was set aside (its records were never counted).
    pub fn spool_set_aside_at_open(&mut self) {
        self.stats.spool_set_aside += 1;
    }

    /// Records in flight were neither written nor spooled at shutdown.
    pub fn abandoned(&mut self, records: u64, bytes: u64) {
        if self.take("abandoned", Place::Flight, records, bytes) {
            self.stats.dropped.shutdown += records;
        }
    }

    /// Records that `Disk` or `Process` should have put in the spool before their writers went
    /// on, kept in memory only (the spool is full, failing or gone).
    pub fn unprotected(&mut self, records: u64) {
        self.stats.unprotected += records;
    }

    /// Journal frames recovery found torn or corrupt and cut.
    pub fn journal_torn(&mut self, frames: u64) {
        self.stats.journal_torn += frames;
    }

    /// Write attempts were retried.
    pub fn retried(&mut self, attempts: u64) {
        self.stats.retried += attempts;
    }

    /// Writes the chest answered with "stored already".
    pub fn already_stored(&mut self, batches: u64) {
        self.stats.already_stored += batches;
    }

    /// Something failed (the chest, the spool, the dead-letter file).
    pub fn failed(&mut self, error: LastError) {
        self.stats.last_error = Some(error);
    }

    /// The spool's own counts after an operation: its batches and bytes are taken as they are.
    /// Its records should be what the transitions left; if the file says otherwise (records
    /// vanished outside the worker's moves, e.g. rows deleted before a failed append), the
    /// difference is booked (dropped as `spool_corrupt`, or found as `restored`) so that the
    /// books follow the file and stay balanced.
    pub fn spool_totals(&mut self, totals: Totals) {
        self.stats.spool_batches = totals.batches;
        self.stats.spool_bytes = totals.bytes;
        let booked = self.stats.spool_records;
        if totals.records == booked {
            return;
        }
        tracing::warn!(target: "chest", chest = %self.stats.chest, booked, in_file = totals.records,
            "spool record count differs from the books; counting the difference");
        if totals.records < booked {
            self.stats.dropped.spool_corrupt += booked - totals.records;
        } else {
            self.stats.restored += totals.records - booked;
        }
        self.stats.spool_records = totals.records;
    }

    /// Books settled records as written, dead-lettered or dropped.
    fn settle(&mut self, outcome: Outcome) {
        self.stats.written += outcome.written;
        if outcome.dead_lettered {
            self.stats.dead_lettered += outcome.refused;
        } else {
            self.stats.dropped.permanent_error += outcome.refused;
        }
    }

    /// Takes records (and bytes) out of a place; `false`, changing nothing, if it holds fewer.
    fn take(&mut self, transition: &'static str, place: Place, records: u64, bytes: u64) -> bool {
        let (held, held_bytes) = match place {
            Place::Queue => (&mut self.stats.queue_depth, &mut self.stats.queue_bytes),
            Place::Flight => (&mut self.stats.in_flight, &mut self.in_flight_bytes),
            Place::Spool => (&mut self.stats.spool_records, &mut self.stats.spool_bytes),
        };
        // The spool's bytes are the file's, set by `spool_totals`: not moved here.
        let bytes = if matches!(place, Place::Spool) {
            0
        } else {
            bytes
        };
        if *held < records || *held_bytes < bytes {
            tracing::error!(target: "chest", chest = %self.stats.chest, transition, ?place,
                records, bytes, held = *held, held_bytes = *held_bytes,
                "batched chest books: a move of more than a place holds was refused (a bug)");
            return false;
        }
        *held -= records;
        *held_bytes -= bytes;
        true
    }

    /// Puts records (and bytes) into a place.
    fn put(&mut self, place: Place, records: u64, bytes: u64) {
        match place {
            Place::Queue => {
                self.stats.queue_depth += records;
                self.stats.queue_bytes += bytes;
            }
            Place::Flight => {
                self.stats.in_flight += records;
                self.in_flight_bytes += bytes;
            }
            Place::Spool => self.stats.spool_records += records,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// One transition with its arguments (sizes small, so that overdrafts happen often).
    #[derive(Debug, Clone)]
    enum Event {
        Enqueued(u64, u64),
        Refused(u64, Refusal),
        EvictedFromQueue(u64, u64),
        Taken(u64, u64),
        Spooled(u64, u64),
        EvictedFromSpool(u64),
        Undecodable(u64),
        Delivered(Outcome, u64),
        Replayed(Outcome),
        SetAside(u64, u64),
        Abandoned(u64, u64),
        Retried(u64),
        Totals(Totals),
    }

    fn n() -> impl Strategy<Value = u64> {
        0u64..8
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        (n(), n(), any::<bool>()).prop_map(|(written, refused, dead_lettered)| Outcome {
            written,
            refused,
            dead_lettered,
        })
    }

    fn event() -> impl Strategy<Value = Event> {
        let refusal = prop_oneof![
            Just(Refusal::Shutdown),
            Just(Refusal::Newest),
            Just(Refusal::Rejected),
            Just(Refusal::BlockTimeout),
        ];
        prop_oneof![
            3 => (n(), n()).prop_map(|(r, b)| Event::Enqueued(r, b * 10)),
            1 => (n(), refusal).prop_map(|(r, why)| Event::Refused(r, why)),
            1 => (n(), n()).prop_map(|(r, b)| Event::EvictedFromQueue(r, b * 10)),
            3 => (n(), n()).prop_map(|(r, b)| Event::Taken(r, b * 10)),
            2 => (n(), n()).prop_map(|(r, b)| Event::Spooled(r, b * 10)),
            1 => n().prop_map(Event::EvictedFromSpool),
            1 => n().prop_map(Event::Undecodable),
            2 => (outcome(), n()).prop_map(|(o, b)| Event::Delivered(o, b * 10)),
            2 => outcome().prop_map(Event::Replayed),
            1 => (n(), n()).prop_map(|(r, b)| Event::SetAside(r, b * 10)),
            1 => (n(), n()).prop_map(|(r, b)| Event::Abandoned(r, b * 10)),
            1 => n().prop_map(Event::Retried),
            1 => (n(), n(), n()).prop_map(|(records, batches, bytes)| Event::Totals(Totals {
                batches,
                records,
                bytes,
            })),
        ]
    }

    /// The counters that only grow.
    fn counters(s: &Stats) -> [u64; 8] {
        [
            s.enqueued,
            s.restored,
            s.written,
            s.retried,
            s.spooled,
            s.replayed,
            s.dead_lettered,
            s.dropped.total(),
        ]
    }

    /// Whether `event` asks for no more than the places hold (before it is applied).
    fn legal(before: &Stats, in_flight_bytes: u64, event: &Event) -> bool {
        match *event {
            Event::EvictedFromQueue(r, b) | Event::Taken(r, b) => {
                r <= before.queue_depth && b <= before.queue_bytes
            }
            Event::Spooled(r, b) | Event::Abandoned(r, b) => {
                r <= before.in_flight && b <= in_flight_bytes
            }
            Event::Delivered(o, b) => o.records() <= before.in_flight && b <= in_flight_bytes,
            Event::EvictedFromSpool(r) | Event::Undecodable(r) => r <= before.spool_records,
            Event::Replayed(o) => o.records() <= before.spool_records,
            _ => true,
        }
    }

    fn apply(ledger: &mut Ledger, event: &Event) {
        match *event {
            Event::Enqueued(r, b) => ledger.enqueued(r, b),
            Event::Refused(r, why) => ledger.refused_on_arrival(r, why),
            Event::EvictedFromQueue(r, b) => ledger.evicted_from_queue(r, b),
            Event::Taken(r, b) => ledger.taken_into_flight(r, b),
            Event::Spooled(r, b) => ledger.spooled(r, b),
            Event::EvictedFromSpool(r) => ledger.evicted_from_spool(r),
            Event::Undecodable(r) => ledger.undecodable_in_spool(r),
            Event::Delivered(o, b) => ledger.delivered(o, b),
            Event::Replayed(o) => ledger.replayed(o),
            Event::SetAside(r, b) => {
                // The batch being replayed is at most what the spool holds.
                let r = r.min(ledger.stats().spool_records);
                ledger.spool_set_aside(r, b);
            }
            Event::Abandoned(r, b) => ledger.abandoned(r, b),
            Event::Retried(n) => ledger.retried(n),
            Event::Totals(t) => ledger.spool_totals(t),
        }
    }

    proptest! {
        #[test]
        fn every_record_stays_accounted_for(
            restored in n(),
            events in proptest::collection::vec(event(), 0..200),
        ) {
            let totals = Totals { batches: restored.min(1), records: restored, bytes: restored * 10 };
            let mut ledger = Ledger::new("test".into(), totals);
            prop_assert!(ledger.stats().is_balanced());
            for event in &events {
                let before = ledger.snapshot();
                let legal = legal(&before, ledger.in_flight_bytes, event);
                apply(&mut ledger, event);
                let after = ledger.stats();
                prop_assert!(after.is_balanced(), "unbalanced after {:?}: {:?}", event, after);
                for (b, a) in counters(&before).into_iter().zip(counters(after)) {
                    prop_assert!(a >= b, "a counter went down after {:?}", event);
                }
                if !legal {
                    prop_assert_eq!(&before, after, "an overdraft was applied: {:?}", event);
                }
            }
        }
    }

    #[test]
    fn an_overdraft_changes_nothing() {
        let mut ledger = Ledger::new("test".into(), Totals::default());
        ledger.enqueued(3, 30);
        ledger.taken_into_flight(2, 20);
        let before = ledger.snapshot();
        let written = Outcome {
            written: 3,
            refused: 0,
            dead_lettered: false,
        };
        ledger.delivered(written, 20);
        ledger.taken_into_flight(2, 0);
        ledger.replayed(written);
        assert_eq!(ledger.snapshot(), before);
        ledger.delivered(
            Outcome {
                written: 1,
                refused: 1,
                dead_lettered: true,
            },
            20,
        );
        let after = ledger.stats();
        assert_eq!(
            (after.written, after.dead_lettered, after.in_flight),
            (1, 1, 0)
        );
        assert!(after.is_balanced());
    }
}
