//! The type of a row of the scheme table: what a backend gives [`chests`](super) so that URLs of
//! its schemes open it. A leaf, so that backends need not know the table itself.

use std::sync::Arc;

use crate::stored::ReadBack;
use crate::url::ChestUrl;
use crate::{BoxFuture, Chest, Error};

/// What an opener returns once the URL is understood: the connection (or preparation) still to
/// await. The URL is parsed before any I/O, so a bad URL fails at once.
pub(crate) type Opening<T> = BoxFuture<'static, Result<T, Error>>;

/// Opens what a URL describes, or says at once why the URL cannot be used.
pub(crate) type Opener<T> = fn(&ChestUrl<'_>) -> Result<Opening<T>, Error>;

/// One backend's row in the scheme table.
pub(crate) struct Scheme {
    /// The URL schemes it answers to (`postgres` and `postgresql`, say).
    pub names: &'static [&'static str],
    /// Opens a chest from a URL of one of those schemes.
    pub open: Opener<Arc<dyn Chest>>,
    /// Opens a reader of what the chest stored, for backends that can read back.
    pub read: Option<Opener<Box<dyn ReadBack>>>,
}
