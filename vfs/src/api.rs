//! The host's SQLite, reached through the routine table it hands a loadable extension.
//!
//! An extension must not call SQLite's functions by symbol: the host may have SQLite linked in
//! statically, or a different copy than ours. SQLite passes `sqlite3_api_routines`, a struct of
//! function pointers whose order is fixed forever (new routines are only ever appended), so a
//! routine is found by its position. The positions below are those of `sqlite3ext.h`; every
//! routine used here exists since SQLite 3.8.7, and [`check_version`] refuses anything older
//! than 3.31.0, as litestream-vfs does.

use std::ffi::{c_char, c_int, c_uchar, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi::{sqlite3, sqlite3_context, sqlite3_file, sqlite3_value, sqlite3_vfs};

/// The oldest SQLite this extension loads into (3.31.0), as litestream-vfs requires.
pub const MIN_VERSION: c_int = 3_031_000;

// Positions in `sqlite3_api_routines`.
const LIBVERSION_NUMBER: usize = 67;
const MALLOC: usize = 68;
const RESULT_ERROR: usize = 80;
const RESULT_INT64: usize = 83;
const RESULT_NULL: usize = 84;
const RESULT_TEXT: usize = 85;
const VALUE_TEXT: usize = 109;
const FILE_CONTROL: usize = 127;
const VFS_FIND: usize = 141;
const VFS_REGISTER: usize = 142;
const CONTEXT_DB_HANDLE: usize = 149;
const CREATE_FUNCTION_V2: usize = 162;
const AUTO_EXTENSION: usize = 192;

static TABLE: AtomicPtr<*const c_void> = AtomicPtr::new(std::ptr::null_mut());

/// Keeps the host's routine table. Called first by every entry point.
///
/// # Safety
/// `api` must be the `pApi` SQLite passed to the extension's entry point.
pub unsafe fn init(api: *const c_void) {
    TABLE.store(api as *mut *const c_void, Ordering::Release);
}

/// The routine at `index`, as the function type `F`.
///
/// # Safety
/// [`init`] was called, and `F` is the routine's C signature.
unsafe fn routine<F: Copy>(index: usize) -> F {
    let table = TABLE.load(Ordering::Acquire);
    assert!(
        !table.is_null(),
        "ls-vfs: SQLite's routines are not known yet"
    );
    // SAFETY: the table holds at least AUTO_EXTENSION + 1 pointers in every SQLite that passes
    // check_version, and a fn pointer has the size of a data pointer on the platforms we build.
    unsafe {
        let p = *table.add(index);
        std::mem::transmute_copy::<*const c_void, F>(&p)
    }
}

pub fn libversion_number() -> c_int {
    // SAFETY: routine 67 is `int sqlite3_libversion_number(void)`.
    unsafe { routine::<unsafe extern "C" fn() -> c_int>(LIBVERSION_NUMBER)() }
}

/// An error message if the host's SQLite is too old for this extension.
pub fn check_version() -> Result<(), String> {
    let v = libversion_number();
    if v < MIN_VERSION {
        return Err(format!(
            "the litestream VFS requires SQLite 3.31.0 or later (found {}.{}.{})",
            v / 1_000_000,
            v / 1000 % 1000,
            v % 1000
        ));
    }
    Ok(())
}

/// A copy of `s` in memory from `sqlite3_malloc`, which SQLite frees itself (PRAGMA answers
/// and error messages handed back through file controls and entry points). Null if out of
/// memory.
pub fn malloc_str(s: &str) -> *mut c_char {
    let bytes = s.as_bytes();
    let Ok(n) = c_int::try_from(bytes.len() + 1) else {
        return std::ptr::null_mut();
    };
    // SAFETY: routine 68 is `void *sqlite3_malloc(int)`; the copy stays within its n bytes.
    unsafe {
        let p = routine::<unsafe extern "C" fn(c_int) -> *mut c_void>(MALLOC)(n) as *mut c_char;
        if !p.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
        p
    }
}

/// # Safety
/// `name` is null or a NUL-terminated string.
pub unsafe fn vfs_find(name: *const c_char) -> *mut sqlite3_vfs {
    // SAFETY: routine 141 is `sqlite3_vfs *sqlite3_vfs_find(const char *)`.
    unsafe { routine::<unsafe extern "C" fn(*const c_char) -> *mut sqlite3_vfs>(VFS_FIND)(name) }
}

/// # Safety
/// `vfs` lives for the rest of the process.
pub unsafe fn vfs_register(vfs: *mut sqlite3_vfs, make_default: bool) -> c_int {
    // SAFETY: routine 142 is `int sqlite3_vfs_register(sqlite3_vfs *, int)`.
    unsafe {
        routine::<unsafe extern "C" fn(*mut sqlite3_vfs, c_int) -> c_int>(VFS_REGISTER)(
            vfs,
            c_int::from(make_default),
        )
    }
}

/// The main database file of connection `db`, or null.
///
/// # Safety
/// `db` is an open connection.
pub unsafe fn main_file(db: *mut sqlite3) -> *mut sqlite3_file {
    /// SQLITE_FCNTL_FILE_POINTER
    const FILE_POINTER: c_int = 7;
    let mut file: *mut sqlite3_file = std::ptr::null_mut();
    // SAFETY: routine 127 is `int sqlite3_file_control(sqlite3*, const char*, int, void*)`,
    // and FILE_POINTER writes one pointer.
    let rc = unsafe {
        routine::<unsafe extern "C" fn(*mut sqlite3, *const c_char, c_int, *mut c_void) -> c_int>(
            FILE_CONTROL,
        )(
            db,
            c"main".as_ptr(),
            FILE_POINTER,
            &mut file as *mut _ as *mut c_void,
        )
    };
    if rc == 0 {
        file
    } else {
        std::ptr::null_mut()
    }
}

/// A scalar SQL function's implementation.
pub type ScalarFn = unsafe extern "C" fn(*mut sqlite3_context, c_int, *mut *mut sqlite3_value);

/// Registers a scalar function on `db` (UTF-8, `flags` added).
///
/// # Safety
/// `db` is an open connection; `name` is NUL-terminated.
pub unsafe fn create_function(
    db: *mut sqlite3,
    name: &CStr,
    n_arg: c_int,
    flags: c_int,
    f: ScalarFn,
) -> c_int {
    const UTF8: c_int = 1;
    type Create = unsafe extern "C" fn(
        *mut sqlite3,
        *const c_char,
        c_int,
        c_int,
        *mut c_void,
        Option<ScalarFn>,
        *const c_void,
        *const c_void,
        *const c_void,
    ) -> c_int;
    // SAFETY: routine 162 is `sqlite3_create_function_v2`; step, final and destroy are null.
    unsafe {
        routine::<Create>(CREATE_FUNCTION_V2)(
            db,
            name.as_ptr(),
            n_arg,
            UTF8 | flags,
            std::ptr::null_mut(),
            Some(f),
            std::ptr::null(),
            std::ptr::null(),
            std::ptr::null(),
        )
    }
}

/// Has `entry` called for every connection opened from now on.
///
/// # Safety
/// `entry` has the signature of an extension entry point.
pub unsafe fn auto_extension(entry: unsafe extern "C" fn()) -> c_int {
    // SAFETY: routine 192 is `int sqlite3_auto_extension(void(*)(void))`.
    unsafe {
        routine::<unsafe extern "C" fn(unsafe extern "C" fn()) -> c_int>(AUTO_EXTENSION)(entry)
    }
}

/// # Safety
/// `ctx` is the context of a running function.
pub unsafe fn context_db(ctx: *mut sqlite3_context) -> *mut sqlite3 {
    // SAFETY: routine 149 is `sqlite3 *sqlite3_context_db_handle(sqlite3_context*)`.
    unsafe {
        routine::<unsafe extern "C" fn(*mut sqlite3_context) -> *mut sqlite3>(CONTEXT_DB_HANDLE)(
            ctx,
        )
    }
}

/// The text of a function argument, if it is not NULL and is UTF-8.
///
/// # Safety
/// `v` is an argument of a running function.
pub unsafe fn value_text<'a>(v: *mut sqlite3_value) -> Option<&'a str> {
    // SAFETY: routine 109 is `const unsigned char *sqlite3_value_text(sqlite3_value*)`, valid
    // until the function returns.
    let p = unsafe {
        routine::<unsafe extern "C" fn(*mut sqlite3_value) -> *const c_uchar>(VALUE_TEXT)(v)
    };
    if p.is_null() {
        return None;
    }
    // SAFETY: SQLite's text is NUL-terminated.
    unsafe { CStr::from_ptr(p as *const c_char) }.to_str().ok()
}

/// SQLITE_TRANSIENT: SQLite copies the text before the call returns.
fn transient() -> *const c_void {
    -1isize as *const c_void
}

/// # Safety
/// `ctx` is the context of a running function.
pub unsafe fn result_text(ctx: *mut sqlite3_context, s: &str) {
    let Ok(n) = c_int::try_from(s.len()) else {
        // SAFETY: as below.
        return unsafe { result_error(ctx, "answer too long") };
    };
    type Text = unsafe extern "C" fn(*mut sqlite3_context, *const c_char, c_int, *const c_void);
    // SAFETY: routine 85 is `sqlite3_result_text`; SQLITE_TRANSIENT makes it copy.
    unsafe { routine::<Text>(RESULT_TEXT)(ctx, s.as_ptr() as *const c_char, n, transient()) }
}

/// # Safety
/// `ctx` is the context of a running function.
pub unsafe fn result_int64(ctx: *mut sqlite3_context, v: i64) {
    // SAFETY: routine 83 is `void sqlite3_result_int64(sqlite3_context*, sqlite3_int64)`.
    unsafe { routine::<unsafe extern "C" fn(*mut sqlite3_context, i64)>(RESULT_INT64)(ctx, v) }
}

/// # Safety
/// `ctx` is the context of a running function.
pub unsafe fn result_null(ctx: *mut sqlite3_context) {
    // SAFETY: routine 84 is `void sqlite3_result_null(sqlite3_context*)`.
    unsafe { routine::<unsafe extern "C" fn(*mut sqlite3_context)>(RESULT_NULL)(ctx) }
}

/// # Safety
/// `ctx` is the context of a running function.
pub unsafe fn result_error(ctx: *mut sqlite3_context, msg: &str) {
    let n = c_int::try_from(msg.len()).unwrap_or(0);
    type Error = unsafe extern "C" fn(*mut sqlite3_context, *const c_char, c_int);
    // SAFETY: routine 80 is `sqlite3_result_error`, which copies the message.
    unsafe { routine::<Error>(RESULT_ERROR)(ctx, msg.as_ptr() as *const c_char, n) }
}
