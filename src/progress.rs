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

/// One spinner per source stream: payloads received so far.
pub struct IngestBars {
    multi: indicatif::MultiProgress,
    bars: Mutex<std::collections::HashMap<(String, String), (ProgressBar, u64)>>,
}

impl IngestBars {
    pub fn new() -> Self {
        Self {
            multi: indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl fathom_ingest::runner::IngestProgress for IngestBars {
    fn stream_started(&self, source: &str, stream: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:24} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{source}.{stream}"));
        bar.set_message("0 payloads");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert((source.to_owned(), stream.to_owned()), (bar, 0));
        }
    }

    fn payload(&self, source: &str, stream: &str) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some((bar, n)) = bars.get_mut(&(source.to_owned(), stream.to_owned()))
        {
            *n += 1;
            bar.set_message(format!("{n} payloads"));
        }
    }

    fn stream_finished(&self, report: &fathom_ingest::runner::StreamReport) {
        if let Ok(mut bars) = self.bars.lock()
            && let Some((bar, _)) = bars.remove(&(report.source.clone(), report.stream.clone()))
        {
            bar.finish_and_clear();
        }
    }
}
