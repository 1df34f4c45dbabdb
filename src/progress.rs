//! Progress bars for long commands (hidden when stderr is not a terminal).

use std::path::Path;
use std::sync::Mutex;

use fathom_ingest::{FileReport, ImportProgress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws one bar per file being imported: bytes read and rows seen.
pub struct ImportBars {
    current: Mutex<Option<ProgressBar>>,
}

impl ImportBars {
    pub fn new() -> Self {
        Self {
            current: Mutex::new(None),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(guard) = self.current.lock()
            && let Some(bar) = guard.as_ref()
        {
            f(bar);
        }
    }
}

impl ImportProgress for ImportBars {
    fn file_started(&self, path: &Path, total_bytes: u64) {
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {prefix} rows ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(path.display().to_string());
        if let Ok(mut guard) = self.current.lock() {
            *guard = Some(bar);
        }
    }

    fn advanced(&self, bytes_read: u64, rows_read: u64) {
        self.with_bar(|bar| {
            if bytes_read > 0 {
                bar.set_position(bytes_read);
            }
            bar.set_prefix(rows_read.to_string());
        });
    }

    fn file_finished(&self, _report: &FileReport) {
        if let Ok(mut guard) = self.current.lock()
            && let Some(bar) = guard.take()
        {
            bar.finish_and_clear();
        }
    }

    fn writing(&self, table: &str, rows: usize) {
        eprintln!("writing {rows} rows to {table}…");
    }
}
