//! Request ids: Flask-Chest's `request_id_generator`.

use std::sync::Arc;

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
}

impl<F> MakeRequestId for F
where
    F: Fn() -> String + Send + Sync + 'static,
{
    fn make_request_id(&self) -> String {
        self()
    }
}

/// The default generator: a random (version 4) UUID, like Flask-Chest's `str(uuid.uuid4())`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uuid4;

impl MakeRequestId for Uuid4 {
    fn make_request_id(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }
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

/// Makes a new, truncated id as a shared string.
pub(crate) fn make(generator: &dyn MakeRequestId) -> Arc<str> {
    Arc::from(truncate(generator.make_request_id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid4_ids_are_unique_uuids() {
        let a = Uuid4.make_request_id();
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
        assert_ne!(a, Uuid4.make_request_id());
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
