//! Per-thread tables of the shared strings requests use again and again: variable names and
//! routes. A request that sets `user_id` finds the `Arc<str>` the previous request on its thread
//! made, instead of allocating (and, for a name, checking) it again: a lookup and a comparison
//! instead of an allocation and a free.
//!
//! A table is small and direct-mapped: a string's slot comes from its address and length (names
//! are mostly literals, routes come from axum's `MatchedPath`, so both keep their address), and a
//! hit is confirmed by comparing the text, so a reused address never gives a wrong string. A miss
//! makes the string as before and keeps it in the slot.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

/// Slots per table: more than the names and routes a service uses on a hot path.
const SLOTS: usize = 64;

/// One thread's table.
pub(crate) struct Table([Option<Arc<str>>; SLOTS]);

impl Table {
    pub(crate) const fn new() -> Self {
        Table([const { None }; SLOTS])
    }
}

thread_local! {
    /// Variable names, checked before they were kept.
    pub(crate) static NAMES: RefCell<Table> = const { RefCell::new(Table::new()) };
    /// Routes (a table of their own, so names and routes do not evict each other).
    #[cfg(any(feature = "axum", feature = "actix", test))]
    pub(crate) static ROUTES: RefCell<Table> = const { RefCell::new(Table::new()) };
}

/// The shared copy of `text` from `table`, or a new one if `check` accepts `text` (a refused
/// string is not kept; a kept one is not checked again).
pub(crate) fn shared<E>(
    table: &'static LocalKey<RefCell<Table>>,
    text: &str,
    check: impl FnOnce(&str) -> Result<(), E>,
) -> Result<Arc<str>, E> {
    let slot = ((text.as_ptr() as usize >> 3) ^ text.len()) % SLOTS;
    let make = |text: &str| check(text).map(|()| Arc::<str>::from(text));
    // `try_with` fails only while the thread is being torn down: then no table, no sharing.
    let Ok(hit) = table.try_with(|t| {
        t.borrow().0[slot]
            .as_ref()
            .filter(|kept| ***kept == *text)
            .cloned()
    }) else {
        return make(text);
    };
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let made = make(text)?;
    let _ = table.try_with(|t| t.borrow_mut().0[slot] = Some(made.clone()));
    Ok(made)
}

/// The shared copy of a route (routes are not checked).
#[cfg(any(feature = "axum", feature = "actix"))]
pub(crate) fn route(route: &str) -> Arc<str> {
    let unchecked = shared(&ROUTES, route, |_| Ok::<(), std::convert::Infallible>(()));
    unchecked.unwrap_or_else(|never| match never {})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(_: &str) -> Result<(), ()> {
        Ok(())
    }

    #[test]
    fn the_same_text_gives_the_same_copy() {
        let first = shared(&NAMES, "user_id", plain).unwrap();
        let again = shared(&NAMES, "user_id", plain).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // The same text at another address: still the right text.
        let owned = String::from("user_id");
        assert_eq!(&*shared(&NAMES, &owned, plain).unwrap(), "user_id");
    }

    #[test]
    fn a_reused_address_never_gives_the_old_text() {
        let mut buffer = String::from("alpha");
        let first = shared(&ROUTES, &buffer, plain).unwrap();
        buffer.clear();
        buffer.push_str("omega");
        let second = shared(&ROUTES, &buffer, plain).unwrap();
        assert_eq!((&*first, &*second), ("alpha", "omega"));
    }

    #[test]
    fn a_refused_text_is_not_kept() {
        let refused = shared(&NAMES, "bad name", |_| Err("refused"));
        assert_eq!(refused, Err("refused"));
        let made = shared(&NAMES, "bad name", plain).unwrap();
        assert_eq!(&*made, "bad name");
    }
}
