//! `ls-vfs`: a loadable SQLite extension that registers a VFS named `litestream`, reading a
//! database straight from a Litestream replica, as litestream-vfs 0.5.17 does, over every
//! backend this project has (docs/vfs.md).
//!
//! ```text
//! $ LITESTREAM_REPLICA_URL=s3://bucket/db sqlite3
//! sqlite> .load ./libls_vfs
//! sqlite> .open file:db?vfs=litestream
//! sqlite> select count(*) from t;
//! ```
//!
//! Reads only: pages come from the replica's LTX files with ranged reads, through a page cache
//! the whole process shares; every read transaction sees one TXID; new files are followed at
//! the poll interval and become visible to the next transaction.

#![deny(missing_docs)]

mod api;
mod cache;
pub mod config;
mod db;
mod functions;
mod global;
mod hydrate;
mod log;
mod vfs;
mod view;

use std::ffi::{c_char, c_int, c_void};

use rusqlite::ffi::sqlite3;

use crate::config::Settings;
use crate::global::Global;

/// SQLITE_OK_LOAD_PERMANENTLY: the VFS stays registered after the loading connection closes.
const OK_LOAD_PERMANENTLY: c_int = 256;

/// Defines extension entry points, all doing [`init`].
macro_rules! entry_points {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        ///
        /// # Safety
        /// Called by SQLite's extension loader only.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            db: *mut sqlite3,
            err: *mut *mut c_char,
            api: *const c_void,
        ) -> c_int {
            // SAFETY: forwarded from SQLite.
            unsafe { init(db, err, api) }
        }
    )*};
}

entry_points! {
    /// The entry point SQLite tries first, whatever the file is called.
    sqlite3_extension_init;
    /// The entry point SQLite derives from `libls_vfs.so`.
    sqlite3_lsvfs_init;
    /// litestream-vfs's entry point, so that this file can replace `litestream-vfs.so` as is.
    sqlite3_litestreamvfs_init;
}

unsafe fn init(db: *mut sqlite3, err: *mut *mut c_char, pi: *const c_void) -> c_int {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: `pi` is SQLite's routine table.
        unsafe { api::init(pi) };
        api::check_version()?;
        let first = Global::get().is_none();
        Global::get_or_init(|| {
            let s = Settings::from_env(|k| std::env::var(k).ok())?;
            log::init(s.debug, s.log_file.as_deref())?;
            Ok(s)
        })?;
        if first {
            // SAFETY: api::init was called.
            unsafe { vfs::register() }?;
            // SAFETY: an extension entry point has the signature auto_extension expects.
            let rc = unsafe { api::auto_extension(connection_entry_fn()) };
            if rc != 0 {
                return Err(format!(
                    "failed to register the SQL functions: SQLite error {rc}"
                ));
            }
            log::debug("litestream VFS registered");
        }
        // SAFETY: the loading connection is open.
        unsafe { functions::register(db) };
        Ok::<(), String>(())
    });
    let msg = match r {
        Ok(Ok(())) => return OK_LOAD_PERMANENTLY,
        Ok(Err(m)) => m,
        Err(_) => "internal error while loading the litestream VFS".to_string(),
    };
    if !err.is_null() {
        // SAFETY: SQLite frees *err with sqlite3_free.
        unsafe { *err = api::malloc_str(&msg) };
    }
    1
}

type EntryPoint = unsafe extern "C" fn(*mut sqlite3, *mut *mut c_char, *const c_void) -> c_int;

/// Called by SQLite for each new connection: adds the SQL functions. A failure is not
/// reported: it would fail the open of a database that does not use this VFS.
unsafe extern "C" fn connection_entry(
    db: *mut sqlite3,
    _err: *mut *mut c_char,
    _api: *const c_void,
) -> c_int {
    // SAFETY: SQLite calls auto extensions with an open connection.
    let _ = std::panic::catch_unwind(|| unsafe { functions::register(db) });
    0
}

/// [`connection_entry`] as `sqlite3_auto_extension` takes it: SQLite declares the argument
/// `void (*)(void)` and calls it with the entry point's real signature.
fn connection_entry_fn() -> unsafe extern "C" fn() {
    // SAFETY: only the declared type changes; SQLite casts it back before calling.
    unsafe { std::mem::transmute::<EntryPoint, unsafe extern "C" fn()>(connection_entry) }
}
