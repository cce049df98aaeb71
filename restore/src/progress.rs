//! Progress for people (an indicatif bar on a terminal) and silence for everyone else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bytes fetched and pages written; drawn only when a bar was asked for.
pub struct Progress {
    bar: Option<ProgressBar>,
    pages: AtomicU64,
    total_pages: AtomicU64,
}

impl Progress {
    /// Counts pages but draws nothing.
    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            pages: AtomicU64::new(0),
            total_pages: AtomicU64::new(0),
        }
    }

    /// A bar on stderr, redrawn at most ten times a second.
    pub fn terminal() -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed} [{bar:20}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            pages: AtomicU64::new(0),
            total_pages: AtomicU64::new(0),
        }
    }

    /// Sets the totals: bytes to fetch and pages to write.
    pub fn start(&self, total_bytes: u64, total_pages: u64) {
        self.total_pages.store(total_pages, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(total_bytes);
            b.set_message(format!("0/{total_pages} pages"));
        }
    }

    /// Records `bytes` more fetched.
    pub fn fetched(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    /// Records `pages` more written.
    pub fn written(&self, pages: u64) {
        let done = self.pages.fetch_add(pages, Ordering::Relaxed) + pages;
        if let Some(b) = &self.bar {
            let total = self.total_pages.load(Ordering::Relaxed);
            b.set_message(format!("{done}/{total} pages"));
        }
    }

    /// Pages written so far.
    pub fn pages_written(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    /// Clears the bar, if any.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
