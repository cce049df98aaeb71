//! What the extension sets up once per process, when it is loaded: its settings, the replica
//! client, the page cache and the runtime that does the replica's I/O.

use std::future::Future;
use std::sync::Mutex;

use storage::SharedReplica;

use crate::cache::PageCache;
use crate::config::Settings;

pub struct Global {
    pub settings: Settings,
    pub client: SharedReplica,
    pub cache: PageCache,
    pub runtime: tokio::runtime::Runtime,
}

static GLOBAL: Mutex<Option<&'static Global>> = Mutex::new(None);

impl Global {
    /// The process's state, set up from `settings` on the first successful call (a later load
    /// of the extension keeps the first one's).
    pub fn get_or_init(
        settings: impl FnOnce() -> Result<Settings, String>,
    ) -> Result<&'static Global, String> {
        let mut g = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = *g {
            return Ok(g);
        }
        let settings = settings()?;
        // Two workers: page reads block the SQLite caller on this runtime, and followers run
        // on it, so it needs no more than a couple of threads however many databases are open.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ls-vfs")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the VFS's I/O threads: {e}"))?;
        let client = {
            let _in = runtime.enter();
            storage::open_replica(&settings.replica_url)
                .map_err(|e| format!("failed to create replica client: {e}"))?
        };
        // An encrypted replica is read through the age layer (docs/encryption.md).
        let client = match &settings.age_identity {
            None => client,
            Some(id) => {
                let mut keys = storage::age::AgeKeys::default();
                keys.add_identity_file(id).map_err(|e| e.to_string())?;
                storage::age::AgeReplica::wrap(client, keys)
            }
        };
        let global: &'static Global = Box::leak(Box::new(Global {
            cache: PageCache::new(settings.cache_bytes),
            settings,
            client,
            runtime,
        }));
        *g = Some(global);
        Ok(global)
    }

    /// The global state, if the extension was loaded.
    pub fn get() -> Option<&'static Global> {
        *GLOBAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` to completion on the runtime, from SQLite's (non-runtime) thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}
