//! The readers' handle.

use std::fmt;

use super::raw::{Shared, Snapshot, View};
use super::ArenaParams;
use crate::sync::Arc;

/// A reader of an arena: `Clone` (one `Arc`), `Send + Sync`, lock-free. Each [`view`] or
/// [`snapshot`] sees the records published when it was taken, never a partly written one.
///
/// [`view`]: ArenaReader::view
/// [`snapshot`]: ArenaReader::snapshot
#[derive(Clone)]
pub struct ArenaReader {
    shared: Arc<Shared>,
}

impl ArenaReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ArenaReader { shared }
    }

    /// A view borrowing this reader: one Acquire load, no reference count traffic.
    #[inline]
    pub fn view(&self) -> View<'_> {
        self.shared.view()
    }

    /// An owned view (clones the `Arc`), for keeping beyond this reader's borrow.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(&self.shared)
    }

    /// Records published now.
    pub fn len(&self) -> u64 {
        self.view().len()
    }

    /// True when nothing is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The arena's parameters (an existing file's own chunk size).
    pub fn params(&self) -> &ArenaParams {
        self.shared.params()
    }
}

impl fmt::Debug for ArenaReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArenaReader").field("params", self.params()).field("len", &self.len()).finish()
    }
}
