//! Request ids: Flask-Chest's `request_id_generator`.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest request id, in bytes; longer ids are cut at a UTF-8 character boundary.
pub const MAX_REQUEST_ID_LEN: usize = 255;

/// Makes the id of a new request. Closures `Fn() -> String` implement it.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use chest::MakeRequestId;
///
/// let counter = AtomicU64::new(0);
/// let make = move || format!("req-{}", counter.fetch_add(1, Ordering::Relaxed));
/// assert_eq!(make.make_request_id(), "req-0");
/// assert_eq!(make.make_request_id(), "req-1");
/// ```
pub trait MakeRequestId: Send + Sync + 'static {
    /// A new id. It may be any string; ids longer than 255 bytes are cut.
    fn make_request_id(&self) -> String;

    /// A new id as the shared string every record of the request points to, already cut to 255
    /// bytes. The default calls [`make_request_id`](Self::make_request_id) and cuts it; a
    /// generator that can build its id without a `String` may implement this to save a copy.
    fn make_shared_request_id(&self) -> Arc<str> {
        Arc::from(truncate(self.make_request_id()))
    }
}

impl<F> MakeRequestId for F
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn make_request_id(&self) -> String {
        self()
    }
}

/// The default generator: a time-ordered (version 7, RFC 9562) UUID, in the same 36-character
/// hyphenated form as Flask-Chest's `str(uuid.uuid4())`.
///
/// Ids sort by the millisecond they were made in, and the ids one thread makes sort in the order
/// it made them, so the index on `request_id` that the SQL chests keep grows at its end. With
/// random ids ([`Uuid4`]) each insert lands on a random index page: on a SQLite table of a few
/// hundred thousand rows that wrote 34k rows/s here against 240k rows/s with these ids (see
/// BENCHMARKS.md).
///
/// The layout is RFC 9562's: 48 bits of Unix milliseconds, the version, a 12-bit counter of the
/// ids the thread made in that millisecond (method 1 of the RFC), the variant and 62 random bits.
/// Threads keep their own counter, so making an id writes no memory another core reads.
///
/// ```
/// use chest::{MakeRequestId, Uuid7};
///
/// let (first, second) = (Uuid7.make_request_id(), Uuid7.make_request_id());
/// assert_eq!(first.len(), 36);
/// assert!(first < second);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Uuid7;

/// A random (version 4) UUID, exactly Flask-Chest's `str(uuid.uuid4())`. Prefer the default
/// [`Uuid7`] with SQL chests: see there why.
///
/// ```
/// use chest::{MakeRequestId, Recorder, Uuid4};
///
/// assert_eq!(Uuid4.make_request_id().len(), 36);
/// let recorder = Recorder::new().request_id_generator(Uuid4);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Uuid4;

/// A UUID generator: the text of `$new()`. The shared id is formatted on the stack and copied
/// once.
macro_rules! uuid_generator {
    ($($generator:ty => $new:path),*) => {$(
        impl MakeRequestId for $generator {
            fn make_request_id(&self) -> String {
                $new().to_string()
            }

            fn make_shared_request_id(&self) -> Arc<str> {
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                Arc::from(&*$new().hyphenated().encode_lower(&mut text))
            }
        }
    )*};
}
uuid_generator!(Uuid7 => uuid_v7, Uuid4 => uuid::Uuid::new_v4);

thread_local! {
    /// The last (milliseconds << 12 | counter) this thread put in a [`Uuid7`].
    static LAST_V7_STAMP: Cell<u64> = const { Cell::new(0) };
}

/// A version 7 UUID (see [`Uuid7`]). `uuid::Uuid::now_v7` keeps ids in order across threads with
/// one process-wide lock; a per-thread counter keeps the index locality without the shared lock.
fn uuid_v7() -> uuid::Uuid {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    // A new millisecond restarts the counter; past 4,096 ids in one millisecond the counter
    // carries into the millisecond field, which keeps the ids in order.
    let stamp = LAST_V7_STAMP.with(|last| {
        let stamp = (millis << 12).max(last.get() + 1);
        last.set(stamp);
        stamp
    });
    let high = (stamp >> 12) << 16 | 0x7000 | (stamp & 0xfff);
    let low = rand::random::<u64>() >> 2 | 0x8000_0000_0000_0000;
    uuid::Uuid::from_u64_pair(high, low)
}

/// Cuts `id` to at most 255 bytes without splitting a character.
///
/// ```
/// let id = "é".repeat(200); // 400 bytes
/// let cut = chest::request_id::truncate(id);
/// assert_eq!(cut.len(), 254);
/// assert!(cut.chars().all(|c| c == 'é'));
/// ```
pub fn truncate(mut id: String) -> String {
    if id.len() > MAX_REQUEST_ID_LEN {
        let mut end = MAX_REQUEST_ID_LEN;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid4_ids_are_unique_uuids() {
        let a = Uuid4.make_request_id();
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
        assert_ne!(a, Uuid4.make_request_id());
        let shared = Uuid4.make_shared_request_id();
        assert_eq!(uuid::Uuid::parse_str(&shared).unwrap().get_version_num(), 4);
        assert_eq!(shared.len(), 36);
    }

    #[test]
    fn uuid7_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<Arc<str>> = (0..10_000)
            .map(|i| {
                if i % 2 == 0 {
                    Uuid7.make_shared_request_id()
                } else {
                    Arc::from(Uuid7.make_request_id())
                }
            })
            .collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
        let parsed = uuid::Uuid::parse_str(&ids[0]).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(&*ids[0], parsed.hyphenated().to_string());
        let (secs, _) = parsed.get_timestamp().unwrap().to_unix();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now - secs < 5, "timestamp {secs}, now {now}");
    }

    #[test]
    fn uuid7_ids_of_threads_are_unique_and_each_thread_s_in_order() {
        let per_thread: Vec<Vec<uuid::Uuid>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..5_000).map(|_| uuid_v7()).collect::<Vec<_>>()))
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for ids in &per_thread {
            assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
        }
        let unique: std::collections::HashSet<_> = per_thread.iter().flatten().collect();
        assert_eq!(unique.len(), 20_000);
    }

    #[test]
    fn custom_generators_are_cut_by_the_default_shared_id() {
        let long = || "x".repeat(300);
        assert_eq!(long.make_shared_request_id().len(), MAX_REQUEST_ID_LEN);
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("a".repeat(300)).len(), 255);
        assert_eq!(truncate("short".into()), "short");
        // 254 ASCII bytes then a 4-byte char: the char cannot fit.
        let id = format!("{}🦀", "a".repeat(254));
        assert_eq!(truncate(id), "a".repeat(254));
    }
}
