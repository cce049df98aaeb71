//! The `litestream` VFS as SQLite calls it: the C callbacks, each a thin shell over
//! [`Database`] that turns its results into SQLite codes and never lets a panic cross into C.
//!
//! Only the main database file comes from the replica. Every other file SQLite opens (temporary
//! files for sorting, temp tables) is opened by the default VFS, in the same slot: our `szOsFile`
//! is at least the default VFS's.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi::{self, sqlite3_file, sqlite3_int64, sqlite3_io_methods, sqlite3_vfs};

use crate::db::{Database, Pragma};
use crate::global::Global;
use crate::{api, log};

/// The name `file:x.db?vfs=litestream` asks for.
pub const NAME: &CStr = c"litestream";

/// SQLITE_FCNTL_PRAGMA
const FCNTL_PRAGMA: c_int = 14;

/// Our part of an open main database file, laid out as SQLite's `sqlite3_file` requires.
#[repr(C)]
struct File {
    base: sqlite3_file,
    db: *mut Database,
}

/// The default VFS, which does everything that is not reading the main database.
static DEFAULT: AtomicPtr<sqlite3_vfs> = AtomicPtr::new(std::ptr::null_mut());

static IO_METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Registers the VFS (not as the default one). Called once per process.
///
/// # Safety
/// [`api::init`] was called.
pub unsafe fn register() -> Result<(), String> {
    // SAFETY: a null name asks for the default VFS.
    let default = unsafe { api::vfs_find(std::ptr::null()) };
    if default.is_null() {
        return Err("SQLite has no default VFS to build on".into());
    }
    DEFAULT.store(default, Ordering::Release);
    // SAFETY: the default VFS lives as long as the process.
    let d = unsafe { &*default };
    let mut ours: sqlite3_vfs = *d;
    ours.pNext = std::ptr::null_mut();
    ours.zName = NAME.as_ptr();
    ours.szOsFile = d.szOsFile.max(std::mem::size_of::<File>() as c_int);
    ours.xOpen = Some(x_open);
    ours.xAccess = Some(x_access);
    let ours = Box::leak(Box::new(ours));
    // SAFETY: `ours` is leaked, so it lives for the rest of the process.
    match unsafe { api::vfs_register(ours, false) } {
        0 => Ok(()),
        rc => Err(format!("failed to register VFS: SQLite error {rc}")),
    }
}

fn default_vfs() -> *mut sqlite3_vfs {
    DEFAULT.load(Ordering::Acquire)
}

/// Runs `f`, turning a panic into `on_panic`.
fn guard(on_panic: c_int, f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error("internal error (panic) in the litestream VFS");
        on_panic
    })
}

/// The database behind an open file of ours, or `None` for a file the default VFS opened.
///
/// # Safety
/// `f` is a file SQLite opened through this VFS.
pub unsafe fn database<'a>(f: *mut sqlite3_file) -> Option<&'a mut Database> {
    if f.is_null() {
        return None;
    }
    // SAFETY: every file of ours starts with `sqlite3_file`; only ours have IO_METHODS, and
    // their `db` is the Box made in x_open, freed only in x_close.
    unsafe {
        if !std::ptr::eq((*f).pMethods, &IO_METHODS) {
            return None;
        }
        (*(f as *mut File)).db.as_mut()
    }
}

unsafe extern "C" fn x_open(
    vfs: *mut sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let _ = vfs;
    guard(ffi::SQLITE_CANTOPEN, || {
        if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
            let d = default_vfs();
            // SAFETY: the default VFS's xOpen, with a slot at least its szOsFile long.
            return unsafe {
                match (*d).xOpen {
                    Some(open) => open(d, name, file, flags, out_flags),
                    None => ffi::SQLITE_CANTOPEN,
                }
            };
        }
        // SAFETY: SQLite hands a slot of szOsFile bytes; pMethods stays null on failure, so
        // SQLite does not call xClose on a file that did not open.
        unsafe { (*file).pMethods = std::ptr::null() };
        let Some(g) = Global::get() else {
            return ffi::SQLITE_CANTOPEN;
        };
        let db = match Database::open(g) {
            Ok(db) => db,
            Err(e) => {
                log::error(&format!("cannot open database from replica: {e}"));
                return ffi::SQLITE_CANTOPEN;
            }
        };
        // SAFETY: as above; the Box is freed in x_close.
        unsafe {
            let f = file as *mut File;
            (*f).db = Box::into_raw(Box::new(db));
            (*f).base.pMethods = &IO_METHODS;
            if !out_flags.is_null() {
                *out_flags = (flags & !(ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE))
                    | ffi::SQLITE_OPEN_READONLY;
            }
        }
        ffi::SQLITE_OK
    })
}

/// No journal or WAL exists for a database read from a replica, whatever is on local disk
/// under those names (a hot journal would make SQLite try to roll it back).
unsafe extern "C" fn x_access(
    vfs: *mut sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let _ = vfs;
    guard(ffi::SQLITE_IOERR_ACCESS, || {
        // SAFETY: SQLite passes a NUL-terminated name and an out pointer.
        unsafe {
            let n = CStr::from_ptr(name).to_bytes();
            if n.ends_with(b"-journal") || n.ends_with(b"-wal") {
                *out = 0;
                return ffi::SQLITE_OK;
            }
            let d = default_vfs();
            match (*d).xAccess {
                Some(access) => access(d, name, flags, out),
                None => ffi::SQLITE_IOERR_ACCESS,
            }
        }
    })
}

unsafe extern "C" fn x_close(file: *mut sqlite3_file) -> c_int {
    guard(ffi::SQLITE_IOERR_CLOSE, || {
        // SAFETY: the Box made in x_open, freed once: pMethods is cleared with it.
        unsafe {
            let f = file as *mut File;
            if !(*f).db.is_null() {
                drop(Box::from_raw((*f).db));
                (*f).db = std::ptr::null_mut();
            }
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_read(
    file: *mut sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: sqlite3_int64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_READ, || {
        // SAFETY: our file; SQLite's buffer holds amt bytes.
        let (db, buf) = unsafe {
            let Some(db) = database(file) else {
                return ffi::SQLITE_IOERR_READ;
            };
            let len = usize::try_from(amt).unwrap_or(0);
            (db, std::slice::from_raw_parts_mut(buf as *mut u8, len))
        };
        let Ok(off) = u64::try_from(off) else {
            return ffi::SQLITE_IOERR_READ;
        };
        match db.read(buf, off) {
            Ok(false) => ffi::SQLITE_OK,
            Ok(true) => ffi::SQLITE_IOERR_SHORT_READ,
            Err(e) => {
                log::error(&format!("cannot read from replica: {e}"));
                ffi::SQLITE_IOERR_READ
            }
        }
    })
}

unsafe extern "C" fn x_write(
    _file: *mut sqlite3_file,
    _buf: *const c_void,
    _amt: c_int,
    _off: sqlite3_int64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_truncate(_file: *mut sqlite3_file, _size: sqlite3_int64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn x_sync(_file: *mut sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(file: *mut sqlite3_file, size: *mut sqlite3_int64) -> c_int {
    guard(ffi::SQLITE_IOERR_FSTAT, || {
        // SAFETY: our file and SQLite's out pointer.
        unsafe {
            let Some(db) = database(file) else {
                return ffi::SQLITE_IOERR_FSTAT;
            };
            *size = i64::try_from(db.view().size_bytes()).unwrap_or(i64::MAX);
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_lock(file: *mut sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_LOCK, || {
        // SAFETY: our file.
        let Some(db) = (unsafe { database(file) }) else {
            return ffi::SQLITE_IOERR_LOCK;
        };
        if level >= ffi::SQLITE_LOCK_RESERVED {
            return ffi::SQLITE_READONLY;
        }
        if level == ffi::SQLITE_LOCK_SHARED {
            db.begin_read();
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_unlock(file: *mut sqlite3_file, level: c_int) -> c_int {
    guard(ffi::SQLITE_IOERR_UNLOCK, || {
        // SAFETY: our file.
        let Some(db) = (unsafe { database(file) }) else {
            return ffi::SQLITE_IOERR_UNLOCK;
        };
        if level == ffi::SQLITE_LOCK_NONE {
            db.end_read();
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn x_check_reserved_lock(_file: *mut sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: SQLite's out pointer. Nobody writes through this VFS.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(file: *mut sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    if op != FCNTL_PRAGMA {
        return ffi::SQLITE_NOTFOUND;
    }
    guard(ffi::SQLITE_ERROR, || {
        // SAFETY: for FCNTL_PRAGMA, arg is char*[3]: the answer out, the name, the value.
        unsafe {
            let Some(db) = database(file) else {
                return ffi::SQLITE_NOTFOUND;
            };
            let args = arg as *mut *mut c_char;
            let text = |p: *mut c_char| (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy());
            let Some(name) = text(*args.add(1)) else {
                return ffi::SQLITE_NOTFOUND;
            };
            let value = text(*args.add(2));
            match db.pragma(&name, value.as_deref()) {
                Pragma::NotOurs => ffi::SQLITE_NOTFOUND,
                Pragma::Answer(a) => {
                    if let Some(a) = a {
                        *args = api::malloc_str(&a);
                    }
                    ffi::SQLITE_OK
                }
                Pragma::Error(e) => {
                    *args = api::malloc_str(&e);
                    ffi::SQLITE_ERROR
                }
            }
        }
    })
}

unsafe extern "C" fn x_sector_size(_file: *mut sqlite3_file) -> c_int {
    0
}

unsafe extern "C" fn x_device_characteristics(_file: *mut sqlite3_file) -> c_int {
    0
}
