//! Gives freed heap memory back to the kernel after bursts of work. glibc's malloc keeps what is
//! freed in the middle of its heap (the engine limits it to two arenas: `main.rs`), so the
//! allocations of a burst (a thousand databases taking their first snapshot at start, or
//! compacting at the same level boundary) stay resident long after they are freed: measured with
//! 1,000 databases on S3, 125 MiB resident, 109 MiB after `malloc_trim`
//! (docs/many-databases.md#memory). Work notes itself here; once it has been quiet for
//! [`QUIET`], the heap is trimmed. An idle engine is never woken by this.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;

/// How long after the last noted work the heap is trimmed; under constant work, at most once
/// per this long.
const QUIET: Duration = Duration::from_secs(10);

fn activity() -> &'static Notify {
    static N: OnceLock<Notify> = OnceLock::new();
    N.get_or_init(Notify::new)
}

/// Notes work that allocated (a pass that wrote an LTX file, a compaction or snapshot).
pub fn note_activity() {
    activity().notify_one();
}

/// Runs for the life of the process: after each burst of noted work, one trim.
pub async fn trim_after_bursts() {
    loop {
        activity().notified().await;
        tokio::time::sleep(QUIET).await;
        trim();
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}
