//! The `files` source: a directory of YAML manifests, watched for changes.
//!
//! Every `*.yaml`/`*.yml` directly in the directory is read (not recursive,
//! as `kubectl apply -f DIR`). A file that fails to parse is reported with
//! its line and reason and contributes what it contributed before (nothing,
//! on the first read): a file caught half-written by an editor never takes
//! routes down. When two files define the same object, the file that sorts
//! last wins and a warning names both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::manifest::{self, ManifestError};
use crate::cluster::{ClusterState, Object};

/// A manifest file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}: {}", .file.display(), .error.line, .error.reason)]
pub struct FileError {
    pub file: PathBuf,
    pub error: ManifestError,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read manifest directory {}: {source}", .dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch manifest directory {}: {source}", .dir.display())]
    Watch { dir: PathBuf, source: notify::Error },
}

/// The parsed content of a manifest directory, file by file.
#[derive(Debug, Default)]
pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, Vec<Object>>,
}

impl ManifestDir {
    /// Reads every manifest file of `dir`; unusable files are returned as
    /// errors beside the directory, which holds the rest.
    pub fn load(dir: &Path) -> Result<(Self, Vec<FileError>), SourceError> {
        let mut manifests = ManifestDir {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
        };
        let errors = manifests.rescan()?;
        Ok((manifests, errors))
    }

    /// Re-reads every file, forgetting files that are gone.
    pub fn rescan(&mut self) -> Result<Vec<FileError>, SourceError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| SourceError::ReadDir {
            dir: self.dir.clone(),
            source,
        })?;
        let present: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| is_manifest(path))
            .collect();
        self.files.retain(|path, _| present.contains(path));
        Ok(self.reload(present))
    }

    /// Re-reads the given paths (created, changed or removed files).
    pub fn reload(&mut self, paths: impl IntoIterator<Item = PathBuf>) -> Vec<FileError> {
        let mut errors = Vec::new();
        for path in paths {
            if !is_manifest(&path) || path.parent() != Some(self.dir.as_path()) {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => match manifest::parse(&text) {
                    Ok(objects) => {
                        self.files.insert(path, objects);
                    }
                    Err(error) => errors.push(FileError { file: path, error }),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.files.remove(&path);
                }
                Err(e) => errors.push(FileError {
                    file: path,
                    error: ManifestError {
                        line: 0,
                        reason: format!("cannot read: {e}"),
                    },
                }),
            }
        }
        errors
    }

    /// The state the directory describes now, with a note for every object
    /// defined in more than one file.
    pub fn state(&self) -> (ClusterState, Vec<String>) {
        let mut state = ClusterState::default();
        let mut seen: BTreeMap<(&'static str, String), &Path> = BTreeMap::new();
        let mut duplicates = Vec::new();
        for (path, objects) in &self.files {
            for object in objects {
                let id = (object.kind(), object.key().to_string());
                if let Some(first) = seen.insert(id.clone(), path) {
                    duplicates.push(format!(
                        "{} {} is defined in {} and {}; using the latter",
                        id.0,
                        id.1,
                        first.display(),
                        path.display()
                    ));
                }
                state.insert(object.clone());
            }
        }
        (state, duplicates)
    }
}

fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    yaml && !hidden
}

/// How long to wait after a change for the rest of its burst (an editor's
/// write-then-rename, a `cp` of many files) before re-reading.
const SETTLE: Duration = Duration::from_millis(10);

/// Loads `dir` once, then keeps publishing its state until the receiver side
/// is gone. Returns the receiver and the initial errors (for the caller to
/// report); the watching runs on a task of its own.
pub fn watch_dir(dir: &Path) -> Result<(super::StateReceiver, Vec<FileError>), SourceError> {
    let dir = dir.canonicalize().map_err(|source| SourceError::ReadDir {
        dir: dir.to_owned(),
        source,
    })?;
    let (mut manifests, errors) = ManifestDir::load(&dir)?;
    let (state, duplicates) = manifests.state();
    for duplicate in &duplicates {
        tracing::warn!(target: "gatehouse::source", "{duplicate}");
    }
    let (tx, rx) = watch::channel(Arc::new(state));

    let (events_tx, mut events) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.as_ref().is_ok_and(|e| !changes_content(&e.kind)) {
            return;
        }
        // The receiver is gone only when we are shutting down.
        let _ = events_tx.send(event);
    })
    .map_err(|source| SourceError::Watch {
        dir: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| SourceError::Watch {
            dir: dir.clone(),
            source,
        })?;

    tokio::spawn(async move {
        let _watcher = watcher; // dropping it would stop the notifications
        while let Some(first) = events.recv().await {
            tokio::time::sleep(SETTLE).await;
            let mut batch = vec![first];
            while let Ok(more) = events.try_recv() {
                batch.push(more);
            }
            let errors = apply_batch(&mut manifests, batch);
            for error in &errors {
                tracing::error!(target: "gatehouse::source", "manifest skipped: {error}");
            }
            let (state, duplicates) = manifests.state();
            for duplicate in &duplicates {
                tracing::warn!(target: "gatehouse::source", "{duplicate}");
            }
            if tx.send(Arc::new(state)).is_err() {
                return; // nobody listens any more
            }
        }
    });
    Ok((rx, errors))
}

/// Whether an event can change what a file holds. Reads are events too (our
/// own reads among them): reacting to those would re-read forever.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Folds events into the manifests, and returns the files that failed. The
/// whole batch is queued before anything is read, so the returned state is
/// never built from a half-applied burst.
fn apply_batch(
    manifests: &mut ManifestDir,
    batch: Vec<notify::Result<notify::Event>>,
) -> Vec<FileError> {
    let mut paths = Vec::new();
    let mut rescan = false;
    for event in batch {
        match event {
            Ok(event) if !changes_content(&event.kind) => {}
            Ok(event) if !event.need_rescan() && !event.paths.is_empty() => {
                paths.extend(event.paths)
            }
            Ok(_) => rescan = true,
            Err(e) => {
                tracing::warn!(target: "gatehouse::source", "file watch error, re-reading everything: {e}");
                rescan = true;
            }
        }
    }
    if rescan {
        return manifests.rescan().unwrap_or_else(|e| {
            tracing::error!(target: "gatehouse::source", "{e}");
            Vec::new()
        });
    }
    paths.sort();
    paths.dedup();
    manifests.reload(paths)
}
