//! Store backends: implementations of the application's [`Store`] port.
//!
//! [`SledStore`] keeps one sled database in the data directory (one process per directory);
//! [`MemoryStore`] keeps everything in memory (simulations, and a second backend the contract
//! suite holds to the same rules). Every record a backend writes is a versioned JSON value (see
//! [`records`]).

mod memory;
pub mod records;
mod sled;

use std::path::Path;
use std::sync::Arc;

pub use self::memory::MemoryStore;
pub use self::sled::SledStore;
use crate::app::store::{Store, StoreError};

/// Opens the embedded store in `dir` (the default deployment).
pub fn open_embedded(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SledStore::open(dir)?))
}
