//! The SQL functions litestream-vfs 0.5.17 adds to every connection: `litestream_txid()`,
//! `litestream_lag()`, `litestream_time()` and `litestream_set_time(ts)`. They answer for the
//! connection's main database, as the PRAGMAs of the same names do.

use std::ffi::c_int;

use rusqlite::ffi::{sqlite3, sqlite3_context, sqlite3_value};

use crate::api;
use crate::db::Database;
use crate::vfs::database;

/// SQLITE_DIRECTONLY: not callable from triggers or views, as litestream-vfs registers
/// `litestream_set_time`.
const DIRECTONLY: c_int = 0x0008_0000;

/// Adds the functions to `db`. Also called by SQLite for every connection opened after the
/// extension was loaded.
///
/// # Safety
/// `db` is an open connection and [`api::init`] was called.
pub unsafe fn register(db: *mut sqlite3) -> c_int {
    let fns: [(&std::ffi::CStr, c_int, c_int, api::ScalarFn); 4] = [
        (c"litestream_set_time", 1, DIRECTONLY, set_time),
        (c"litestream_time", 0, 0, time),
        (c"litestream_txid", 0, 0, txid),
        (c"litestream_lag", 0, 0, lag),
    ];
    for (name, n, flags, f) in fns {
        // SAFETY: as the caller promises.
        let rc = unsafe { api::create_function(db, name, n, flags, f) };
        if rc != 0 {
            return rc;
        }
    }
    0
}

/// Runs `f` on the calling connection's database, or sets an error if it was not opened
/// through the litestream VFS.
unsafe fn with_db(ctx: *mut sqlite3_context, f: impl FnOnce(&mut Database)) {
    let run = || {
        // SAFETY: ctx is the running function's context.
        let file = unsafe { api::main_file(api::context_db(ctx)) };
        // SAFETY: a main file opened by SQLite, ours or not.
        match unsafe { database(file) } {
            Some(db) => f(db),
            // SAFETY: as above.
            None => unsafe {
                api::result_error(
                    ctx,
                    "not a litestream VFS connection: open the database with vfs=litestream",
                )
            },
        }
    };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
        // SAFETY: as above.
        unsafe { api::result_error(ctx, "internal error in the litestream VFS") };
    }
}

unsafe extern "C" fn txid(ctx: *mut sqlite3_context, _n: c_int, _args: *mut *mut sqlite3_value) {
    // SAFETY: ctx is live for the call.
    unsafe { with_db(ctx, |db| api::result_text(ctx, &db.view().txid.to_string())) }
}

unsafe extern "C" fn lag(ctx: *mut sqlite3_context, _n: c_int, _args: *mut *mut sqlite3_value) {
    // SAFETY: ctx is live for the call.
    unsafe { with_db(ctx, |db| api::result_int64(ctx, db.lag())) }
}

unsafe extern "C" fn time(ctx: *mut sqlite3_context, _n: c_int, _args: *mut *mut sqlite3_value) {
    // SAFETY: ctx is live for the call.
    unsafe { with_db(ctx, |db| api::result_text(ctx, &db.time())) }
}

unsafe extern "C" fn set_time(ctx: *mut sqlite3_context, n: c_int, args: *mut *mut sqlite3_value) {
    // SAFETY: SQLite passes n (here 1) arguments.
    let value = unsafe { (n == 1).then(|| api::value_text(*args)).flatten() };
    let Some(value) = value else {
        // SAFETY: ctx is live for the call.
        return unsafe { api::result_error(ctx, "timestamp required") };
    };
    // SAFETY: ctx is live for the call.
    unsafe {
        with_db(ctx, |db| match db.set_time(value) {
            Ok(()) => api::result_null(ctx),
            Err(e) => api::result_error(ctx, &e),
        })
    }
}
