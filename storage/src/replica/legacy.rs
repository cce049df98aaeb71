//! Litestream 0.3.x's `generations/` tree on any backend (docs/replica-layout.md#legacy-generations-layout):
//! `<base>generations/<gen>/snapshots/<index>.snapshot.lz4` and
//! `<base>generations/<gen>/wal/<index>_<offset>.wal.lz4`, where `<base>` is the replica's own
//! directory. Flat object stores list the whole tree with one prefix; backends with real
//! directories are walked: the generations first, then each one's two directories.

use crate::backend::{Backend, Listed, ObjectInfo};
use crate::metrics::Operation;
use crate::{Result, StorageError};

use super::Replica;

const TOP: &str = "generations/";

impl<B: Backend> Replica<B> {
    /// The backend key of a legacy object name, which must lie in the `generations/` tree:
    /// a name read from a listing of someone else's replica cannot point elsewhere.
    pub(super) fn legacy_key(&self, name: &str) -> Result<String> {
        let inside = name.strip_prefix(TOP).is_some_and(|rest| {
            rest.split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'))
        });
        if !inside {
            return Err(StorageError::fatal(format!(
                "{name:?} is not an object of a Litestream 0.3.x generations/ tree"
            )));
        }
        Ok(format!("{}{name}", self.backend.layout().base()))
    }

    pub(super) async fn list_legacy(&self) -> Result<Vec<ObjectInfo>> {
        let base = self.backend.layout().base().to_owned();
        let top = format!("{base}{TOP}");
        let dirs = self.backend.list_dirs(&top);
        let listed: Vec<Listed> = match self.measured(Operation::List, dirs, |_| (1, 0)).await? {
            None => self.list_all(&top).await?,
            Some(generations) => {
                let mut all = Vec::new();
                for g in generations {
                    for sub in ["snapshots", "wal"] {
                        all.extend(self.list_all(&format!("{top}{g}/{sub}/")).await?);
                    }
                }
                all
            }
        };
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    name: o.key.strip_prefix(&base)?.to_owned(),
                    size: o.size,
                    created_at: o.created_at,
                })
            })
            .collect())
    }
}
