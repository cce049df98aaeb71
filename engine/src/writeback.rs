//! Starting the kernel's write-back of a file early, so dirty pages neither pile up into one
//! burst at the next fsync nor count against a memory limit they cannot be reclaimed from
//! (docs/checkpoints.md#writing-the-wal-back-early).

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// While it lives, a thread starts the write-back of the whole file every `every`: for a long
/// copy into the file done by code we cannot pace (SQLite's checkpoint), which otherwise
/// leaves every page it wrote dirty until its fsync at the end. Dropping it stops the thread.
pub struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    /// Starts the thread that begins the write-back of `file` every `every` (a hint: if the
    /// thread cannot be spawned, nothing is written back early).
    pub fn start(file: Arc<File>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ls-writeback".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(every);
                    storage::local::start_writeback(&file, 0, 0);
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The thread ends when the guard is dropped, even with a long period.
    #[test]
    fn dropping_the_guard_stops_the_thread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut f = File::create(dir.path().join("f")).expect("create");
        f.write_all(&[7u8; 1 << 16]).expect("write");
        let f = Arc::new(f);
        let t = Trickle::start(f.clone(), Duration::from_secs(3600));
        let began = std::time::Instant::now();
        drop(t);
        assert!(began.elapsed() < Duration::from_secs(60));
        assert_eq!(Arc::strong_count(&f), 1, "the thread let go of the file");
    }
}
