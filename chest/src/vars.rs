//! The per-request variable store: Flask's `g.variables`, typed.
//!
//! A handler gets its request's [`Vars`] with the extractor (axum, actix-web) or, from any code
//! running inside the request's task, through the free functions [`set`], [`get`] and
//! [`request_id`] of this module.
//!
//! ```
//! # async fn demo() {
//! use chest::{vars, Vars};
//!
//! fn charge(amount_cents: i64) {
//!     // Deep in the call stack, no handle passed around.
//!     vars::set("amount_cents", amount_cents).expect("inside a request");
//! }
//!
//! let store = Vars::new("req-7");
//! store.scope(async { charge(1999) }).await;
//! assert_eq!(store.get("amount_cents"), Some(chest::Value::Int(1999)));
//! # }
//! ```
//!
//! The task-local store follows the request's task, not tasks it spawns: pass a clone of the
//! [`Vars`] handle into a `tokio::spawn`ed task (or wrap it with [`Vars::scope`]).

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::shared_strings::{self, NAMES};
use crate::Value;

/// A variable as the store keeps it: its name and value.
pub type Entry = (Arc<str>, Value);

/// The longest variable name, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The prefix reserved for the facts chest records itself ([`crate::facts`]): names that start
/// with it are refused at [`Vars::set`], so a user variable never clashes with a fact.
pub const RESERVED_PREFIX: &str = "chest.";

/// Why a variable could not be set or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VarError {
    /// The name is empty, longer than 255 bytes, holds a control character, or starts with the
    /// [`RESERVED_PREFIX`] `chest.`.
    #[error("invalid variable name {name:?}: {reason}")]
    InvalidName {
        /// The name (its first 64 characters).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A free function of [`crate::vars`] was called outside a request handled by chest's layer.
    #[error(
        "no chest request scope: chest::vars functions work only inside a request served through \
         chest's layer (axum `ChestLayer` or actix `ChestMiddleware`), or inside `Vars::scope`"
    )]
    OutsideRequest,
}

/// Checks a variable name: 1–255 bytes of UTF-8 without control characters, not starting with
/// the [`RESERVED_PREFIX`] `chest.` (chest's own [facts](crate::facts)).
///
/// ```
/// assert!(chest::vars::validate_name("response_time").is_ok());
/// assert!(chest::vars::validate_name("chestnut.count").is_ok());
/// assert!(chest::vars::validate_name("").is_err());
/// assert!(chest::vars::validate_name("a\nb").is_err());
/// assert!(chest::vars::validate_name("chest.status").is_err());
/// ```
#[inline]
pub fn validate_name(name: &str) -> Result<(), VarError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 255 bytes"
    } else if has_control_character(name) {
        "it contains a control character"
    } else if name.starts_with(RESERVED_PREFIX) {
        "the `chest.` prefix is reserved for chest's own facts"
    } else {
        return Ok(());
    };
    Err(VarError::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// Whether `name` holds a control character. Printable ASCII, most names, passes a byte scan
/// without decoding characters.
fn has_control_character(name: &str) -> bool {
    name.bytes().any(|b| !(0x20..0x7f).contains(&b)) && name.chars().any(char::is_control)
}

/// The handle on one request's variables. Cloning it is cheap and every clone sees the same store.
///
/// Setting a name again replaces its value and keeps its first position.
///
/// ```
/// use chest::{Value, Vars};
///
/// let vars = Vars::new("req-1");
/// vars.set("transaction", 42).unwrap();
/// vars.set("transaction", 43).unwrap();
/// assert_eq!(vars.get("transaction"), Some(Value::Int(43)));
/// assert_eq!(vars.request_id(), "req-1");
/// assert!(vars.set("", 1).is_err());
/// ```
#[derive(Clone)]
pub struct Vars {
    shared: Arc<Shared>,
}

struct Shared {
    request_id: Arc<str>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    route: Option<Arc<str>>,
    /// The names whose value came from the tracing bridge (and so may be replaced by it); empty
    /// unless the bridge recorded something. Not there without the feature: the request path
    /// does not drop even an empty vector for it.
    #[cfg(feature = "tracing")]
    bridged: Vec<Arc<str>>,
}

#[cfg(feature = "tracing")]
impl State {
    /// A name set through [`Vars::set`] or removed is no longer the bridge's to replace.
    fn forget_bridged(&mut self, name: &str) {
        if !self.bridged.is_empty() {
            self.bridged.retain(|n| &**n != name);
        }
    }
}

impl Vars {
    /// An empty store for the request `request_id`. The layers make one per request; tests and
    /// background jobs can make their own and run code in it with [`Vars::scope`].
    pub fn new(request_id: impl Into<Arc<str>>) -> Self {
        Vars {
            shared: Arc::new(Shared {
                request_id: request_id.into(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave the Vec half-written, so poison is ignored.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `value` under `name`. A bad name is refused and nothing is recorded.
    pub fn set(&self, name: &str, value: impl Into<Value>) -> Result<(), VarError> {
        let name = shared_strings::shared(&NAMES, name, validate_name)?;
        let value = value.into();
        let mut state = self.state();
        match state.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => {
                *slot = value;
                #[cfg(feature = "tracing")]
                state.forget_bridged(&name);
            }
            None => state.entries.push((name, value)),
        }
        Ok(())
    }

    /// Records a field from the tracing bridge under a name already validated: it never replaces
    /// a value set through [`Vars::set`] (the explicit call wins), only an earlier field's.
    #[cfg(feature = "tracing")]
    pub(crate) fn set_bridged(&self, name: &str, value: Value) {
        let mut state = self.state();
        let State {
            entries, bridged, ..
        } = &mut *state;
        match entries.iter_mut().find(|(n, _)| &**n == name) {
            Some((n, slot)) => {
                if bridged.iter().any(|b| Arc::ptr_eq(b, n)) {
                    *slot = value;
                }
            }
            None => {
                let name: Arc<str> = Arc::from(name);
                bridged.push(name.clone());
                entries.push((name, value));
            }
        }
    }

    /// Records chest's own facts, under one lock. Their names are constants outside the user
    /// namespace, and each is recorded once per store: no name is looked for.
    #[cfg(any(feature = "axum", feature = "actix"))]
    pub(crate) fn push_facts(&self, facts: impl IntoIterator<Item = Entry>) {
        self.state().entries.extend(facts);
    }

    /// The value recorded under `name`, if any.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.state()
            .entries
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.clone())
    }

    /// Removes a variable; returns its value if it was set.
    pub fn remove(&self, name: &str) -> Option<Value> {
        let mut state = self.state();
        let at = state.entries.iter().position(|(n, _)| &**n == name)?;
        #[cfg(feature = "tracing")]
        state.forget_bridged(name);
        Some(state.entries.remove(at).1)
    }

    /// The names set so far, in the order they were first set.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.state()
            .entries
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether no variable is set: then there is nothing to record, and an adapter can skip
    /// looking up the route.
    #[cfg(feature = "actix")]
    pub(crate) fn is_empty(&self) -> bool {
        self.state().entries.is_empty()
    }

    /// This request's id.
    pub fn request_id(&self) -> &str {
        &self.shared.request_id
    }

    pub(crate) fn shared_request_id(&self) -> Arc<str> {
        self.shared.request_id.clone()
    }

    /// A new, empty store for the same request, with the route known so far: for what is
    /// recorded after the request's own store was written (the body facts).
    #[cfg(any(feature = "axum", feature = "actix"))]
    pub(crate) fn sibling(&self) -> Vars {
        let sibling = Vars::new(self.shared_request_id());
        sibling.state().route = self.state().route.clone();
        sibling
    }

    /// Runs `fut` with this store as the current task's store, so [`set`], [`get`] and
    /// [`request_id`] reach it.
    /// The returned future owns a clone of the handle.
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self.clone(), fut)
    }

    /// Takes the variables out (the store is left empty) with the route the request matched.
    pub(crate) fn take(&self) -> (Vec<Entry>, Option<Arc<str>>) {
        let mut state = self.state();
        #[cfg(feature = "tracing")]
        state.bridged.clear();
        (std::mem::take(&mut state.entries), state.route.take())
    }

    /// Records the route template, unless one is known already. Only the framework adapters know
    /// routes.
    #[cfg(any(feature = "axum", feature = "actix"))]
    pub(crate) fn set_route_if_unknown(&self, route: &str) {
        let mut state = self.state();
        if state.route.is_none() {
            state.route = Some(shared_strings::route(route));
        }
    }
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("Vars")
            .field("request_id", &self.shared.request_id)
            .field("entries", &state.entries)
            .field("route", &state.route)
            .finish()
    }
}

tokio::task_local! {
    static CURRENT: Vars;
}

/// The current request's store, when called inside a request served by chest's layer.
pub fn current() -> Option<Vars> {
    CURRENT.try_with(Vars::clone).ok()
}

/// Runs `f` on the current request's store without cloning the handle; `None` outside a request.
/// Outside one this is a thread-local read: the tracing bridge's cost there.
#[cfg(feature = "tracing")]
pub(crate) fn with_current<R>(f: impl FnOnce(&Vars) -> R) -> Option<R> {
    CURRENT.try_with(f).ok()
}

/// Sets a variable of the current request. See [`Vars::set`].
pub fn set(name: &str, value: impl Into<Value>) -> Result<(), VarError> {
    CURRENT
        .try_with(|vars| vars.set(name, value))
        .map_err(|_| VarError::OutsideRequest)?
}

/// Reads a variable of the current request. See [`Vars::get`].
pub fn get(name: &str) -> Result<Option<Value>, VarError> {
    CURRENT
        .try_with(|vars| vars.get(name))
        .map_err(|_| VarError::OutsideRequest)
}

/// The current request's id.
pub fn request_id() -> Result<Arc<str>, VarError> {
    CURRENT
        .try_with(Vars::shared_request_id)
        .map_err(|_| VarError::OutsideRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_names() {
        let vars = Vars::new("r");
        // NEL (U+0085) is a C1 control: a non-ASCII byte sends the check to the character test.
        for bad in [
            "",
            "a\u{0}b",
            "tab\there",
            "\u{7f}",
            "é\u{85}",
            "chest.status",
        ] {
            assert!(
                matches!(vars.set(bad, 1), Err(VarError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        let long = "é".repeat(128); // 256 bytes
        let err = vars.set(&long, 1).unwrap_err();
        assert!(err.to_string().contains("longer than 255 bytes"), "{err}");
        assert!(vars.set(&"x".repeat(255), 1).is_ok());
        assert!(vars.set("émoji 🦀", 1).is_ok());
        assert_eq!(vars.names().len(), 2);
    }

    #[test]
    fn free_functions_outside_a_request() {
        assert_eq!(set("a", 1), Err(VarError::OutsideRequest));
        assert_eq!(get("a"), Err(VarError::OutsideRequest));
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn free_functions_inside_scope() {
        let vars = Vars::new("rid");
        vars.scope(async {
            set("a", 1).unwrap();
            assert_eq!(get("a").unwrap(), Some(Value::Int(1)));
            assert_eq!(&*request_id().unwrap(), "rid");
        })
        .await;
        assert_eq!(vars.remove("a"), Some(Value::Int(1)));
        assert_eq!(vars.get("a"), None);
    }
}
