//! Reload on save: watch the folders of the script and of the modules it imports.
//!
//! Folders, not files: editors save by writing a new file and renaming it over the old one,
//! and a watch on the old file's inode goes deaf after the first such save. Events come in
//! bursts (truncate, write, rename, attributes), so a reload waits until the folder has been
//! quiet for the debounce time; a half-written file would only fail validation, and the
//! write that completes it triggers the next reload.

use super::ScriptHost;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;

/// The longest quiet period honoured.
const MAX_DEBOUNCE: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum WatchError {
    #[error("cannot watch {path}: {source}")]
    Notify { path: String, source: notify::Error },
    #[error("the built-in script has no file to watch")]
    NoFile,
}

/// A running watch; dropping it stops watching.
pub struct Watcher {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The (folder, file name) pairs a change to which means "reload".
#[derive(Default)]
struct Watched {
    dirs: HashSet<PathBuf>,
    files: HashSet<(PathBuf, OsString)>,
}

/// (canonical folder, file name) of a source file; done when the watch is set up.
fn split(p: &Path) -> Option<(PathBuf, OsString)> {
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = dir.canonicalize().ok()?;
    Some((dir, p.file_name()?.to_os_string()))
}

impl Watched {
    fn of(host: &ScriptHost) -> Watched {
        let mut w = Watched::default();
        let script = host.path().map(Path::to_path_buf);
        for p in script.iter().chain(host.bundle().sources.iter()) {
            if let Some((dir, name)) = split(p) {
                w.dirs.insert(dir.clone());
                w.files.insert((dir, name));
            }
        }
        w
    }

    /// Whether an event's path is one of the sources. Events name paths under the folders
    /// as they were given to the watch (canonical), so no file system call is needed here:
    /// this runs for every change in those folders (a database file beside the script…).
    fn concerns(&self, p: &Path) -> bool {
        match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => self.files.contains(&(dir.to_path_buf(), name.to_os_string())),
            _ => false,
        }
    }
}

/// Starts watching `host`'s script; a change reloads it `debounce` after the last event.
/// Must run inside a tokio runtime.
///
/// # Errors
/// The host runs the built-in script, or a folder cannot be watched.
pub fn watch(host: Arc<ScriptHost>, debounce: Duration) -> Result<Watcher, WatchError> {
    if host.path().is_none() {
        return Err(WatchError::NoFile);
    }
    // A quiet period longer than this would only look like a dead watch.
    let debounce = debounce.min(MAX_DEBOUNCE);
    let (tx, rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let notifier = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if !matches!(ev.kind, EventKind::Access(_)) => {
            let _ = tx.send(ev.paths);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "script watch error"),
    })
    .map_err(|source| WatchError::Notify { path: String::new(), source })?;
    let mut state = WatchState { notifier, watched: Watched::default() };
    state.sync(&host)?;
    let task = tokio::spawn(state.run(host, rx, debounce));
    Ok(Watcher { task })
}

struct WatchState {
    notifier: notify::RecommendedWatcher,
    watched: Watched,
}

impl WatchState {
    /// Watches the folders of the bundle in force (an import may have added one).
    fn sync(&mut self, host: &ScriptHost) -> Result<(), WatchError> {
        let next = Watched::of(host);
        for dir in next.dirs.difference(&self.watched.dirs) {
            self.notifier
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::Notify { path: dir.display().to_string(), source })?;
            tracing::debug!(dir = %dir.display(), "watching for script changes");
        }
        for dir in self.watched.dirs.difference(&next.dirs) {
            let _ = self.notifier.unwatch(dir);
        }
        self.watched = next;
        Ok(())
    }

    async fn run(mut self, host: Arc<ScriptHost>, mut rx: mpsc::UnboundedReceiver<Vec<PathBuf>>, debounce: Duration) {
        while let Some(paths) = rx.recv().await {
            if !paths.iter().any(|p| self.watched.concerns(p)) {
                continue;
            }
            // Quiet period: a further change to the script restarts it (other files in the
            // folder, a log being written say, do not), up to a bound so that a file
            // rewritten without pause still reloads.
            let give_up = tokio::time::Instant::now() + debounce * 10;
            let mut quiet_until = tokio::time::Instant::now() + debounce;
            loop {
                match tokio::time::timeout_at(quiet_until.min(give_up), rx.recv()).await {
                    Ok(Some(paths)) => {
                        if paths.iter().any(|p| self.watched.concerns(p)) {
                            quiet_until = tokio::time::Instant::now() + debounce;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let h = host.clone();
            // Reading and compiling block: off the async workers. The result is logged,
            // counted and kept by the host itself.
            let _ = tokio::task::spawn_blocking(move || h.reload("file change")).await;
            if let Err(e) = self.sync(&host) {
                tracing::warn!(error = %e, "script watch not updated");
            }
        }
    }
}
