//! The `files` source: a directory of YAML manifests, watched for changes.
//!
//! Every `*.yaml`/`*.yml` directly in the directory is read (not recursive,
//! as `kubectl apply -f DIR`). A file that fails to parse is reported with
//! its line and reason and contributes what it contributed before (nothing,
//! on the first read): a file caught half-written by an editor never takes
//! routes down. When two files define the same object, the file that sorts
//! last wins and a warning names both.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// How many times each object (by a hash of its kind, namespace and
    /// name) is defined across the files: a patch needs to know, without
    /// reading them all, whether another file defines an object too. Two
    /// objects with one hash only make a patch give way to a rebuild.
    defined: HashMap<Id, u32>,
}

type Id = u64;

fn id(object: &Object) -> Id {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0).hash_one(object.id())
}

impl ManifestDir {
    /// Reads every manifest file of `dir`; unusable files are returned as
    /// errors beside the directory, which holds the rest.
    pub fn load(dir: &Path) -> Result<(Self, Vec<FileError>), SourceError> {
        let mut manifests = ManifestDir {
            dir: dir.to_owned(),
            ..ManifestDir::default()
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
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !present.contains(path))
            .cloned()
            .collect();
        for path in gone {
            self.set_file(path, None);
        }
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
                    Ok(objects) => self.set_file(path, Some(objects)),
                    Err(error) => errors.push(FileError { file: path, error }),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.set_file(path, None),
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

    /// Replaces (or, with `None`, forgets) what a file holds, keeping the
    /// definition counts.
    fn set_file(&mut self, path: PathBuf, objects: Option<Vec<Object>>) {
        for object in objects.iter().flatten() {
            *self.defined.entry(id(object)).or_default() += 1;
        }
        let old = match objects {
            Some(objects) => self.files.insert(path, objects),
            None => self.files.remove(&path),
        };
        for object in old.iter().flatten() {
            let id = id(object);
            if let Some(count) = self.defined.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    self.defined.remove(&id);
                }
            }
        }
    }

    /// What `paths` hold now, to `patch` a state with after reloading them.
    pub fn before(&self, paths: &[PathBuf]) -> Before {
        Before(
            paths
                .iter()
                .map(|path| {
                    (
                        path.clone(),
                        self.files.get(path).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
        )
    }

    /// Brings `state`, built from the directory as it was at `before`, up to
    /// date with the files reloaded since: their old objects out, their new
    /// ones in, in time proportional to the change. Returns false, leaving
    /// `state` untouched, when an object involved is defined more than once
    /// (another file, or twice in one); `state()` then settles who wins.
    pub fn patch(&self, state: &mut ClusterState, before: &Before) -> bool {
        let patchable = self.can_patch(before);
        if patchable {
            self.apply(state, before);
        }
        patchable
    }

    /// `patch` once `can_patch` said yes.
    ///
    /// An object read again with the same content is left as it is, so
    /// that the state's journal names only what really changed.
    fn apply(&self, state: &mut ClusterState, before: &Before) {
        for (path, old) in &before.0 {
            let now = self.files.get(path).map(Vec::as_slice).unwrap_or_default();
            let now_ids: HashMap<Id, &Object> = now.iter().map(|o| (id(o), o)).collect();
            for object in old {
                let kept = now_ids
                    .get(&id(object))
                    .is_some_and(|o| o.id() == object.id());
                if !kept {
                    state.remove(object);
                }
            }
            let old_ids: HashMap<Id, &Object> = old.iter().map(|o| (id(o), o)).collect();
            for object in now {
                let same = old_ids
                    .get(&id(object))
                    .is_some_and(|o| o.same_content(object));
                if !same {
                    state.insert(object.clone());
                }
            }
        }
    }

    fn can_patch(&self, before: &Before) -> bool {
        // Definitions of each involved object in the changed files now.
        let mut here: HashMap<Id, u32> = HashMap::new();
        for (path, old) in &before.0 {
            let now = self.files.get(path).into_iter().flatten();
            let mut ids = HashSet::new();
            if !now.clone().all(|o| ids.insert(id(o))) {
                return false; // defined twice in one file
            }
            let mut old_ids = HashSet::new();
            if !old.iter().all(|o| old_ids.insert(id(o))) {
                return false;
            }
            for id in ids {
                *here.entry(id).or_default() += 1;
            }
            for id in old_ids {
                here.entry(id).or_default();
            }
        }
        // No other file defines any of them.
        here.iter()
            .all(|(id, count)| self.defined.get(id).copied().unwrap_or(0) == *count)
    }

    /// The state the directory describes now, with a note for every object
    /// defined in more than one file. The files Gatehouse writes itself
    /// come last, so what it wrote (a renewed certificate) wins over the
    /// same object in an operator's file.
    pub fn state(&self) -> (ClusterState, Vec<String>) {
        let mut state = ClusterState::default();
        let mut duplicates = Vec::new();
        let (written, others): (Vec<_>, Vec<_>) =
            self.files.iter().partition(|(path, _)| is_written(path));
        for (path, objects) in others.into_iter().chain(written) {
            for object in objects {
                if state.insert(object.clone()) {
                    duplicates.push(self.duplicate(object, path));
                }
            }
        }
        (state, duplicates)
    }

    /// The note for `object`, defined again in `latter`.
    fn duplicate(&self, object: &Object, latter: &Path) -> String {
        let id = object.id();
        let same = |o: &Object| o.id() == id;
        let first = self
            .files
            .iter()
            .find(|(path, objects)| path.as_path() != latter && objects.iter().any(same))
            .map_or(latter, |(path, _)| path.as_path());
        format!(
            "{} {} is defined in {} and {}; using the latter",
            object.kind(),
            object.key(),
            first.display(),
            latter.display()
        )
    }
}

/// The objects some files held before they were reloaded.
#[derive(Debug, Default)]
pub struct Before(Vec<(PathBuf, Vec<Object>)>);

/// The prefix of the files Gatehouse writes into the directory itself:
/// the certificates it obtains over ACME, their challenge answers and
/// order records, and the admission webhook's own certificate
/// (`acme.NAMESPACE.NAME.yaml`).
pub const WRITTEN_PREFIX: &str = "acme.";

fn is_written(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(WRITTEN_PREFIX))
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
            let (errors, before) = apply_batch(&mut manifests, batch);
            for error in &errors {
                tracing::error!(target: "gatehouse::source", "manifest skipped: {error}");
            }
            if tx.is_closed() {
                return; // nobody listens any more
            }
            // Usually a patch of the published state: nobody else holds it
            // once the controller has translated it, so it changes in place.
            if let Some(before) = before.filter(|b| manifests.can_patch(b)) {
                tx.send_modify(|state| manifests.apply(Arc::make_mut(state), &before));
                continue;
            }
            let (state, duplicates) = manifests.state();
            for duplicate in &duplicates {
                tracing::warn!(target: "gatehouse::source", "{duplicate}");
            }
            tx.send_replace(Arc::new(state));
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

/// Folds events into the manifests, and returns the files that failed, and
/// what the reloaded files held before (`None` after a full rescan). The
/// whole batch is queued before anything is read, so the returned state is
/// never built from a half-applied burst.
fn apply_batch(
    manifests: &mut ManifestDir,
    batch: Vec<notify::Result<notify::Event>>,
) -> (Vec<FileError>, Option<Before>) {
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
        let errors = manifests.rescan().unwrap_or_else(|e| {
            tracing::error!(target: "gatehouse::source", "{e}");
            Vec::new()
        });
        return (errors, None);
    }
    paths.sort();
    paths.dedup();
    let before = manifests.before(&paths);
    (manifests.reload(paths), Some(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, port: u16) -> String {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: ns}}\nspec: {{ports: [{{port: {port}}}]}}\n")
    }

    /// The same objects (by identity) under the same keys.
    fn same(a: &ClusterState, b: &ClusterState) -> bool {
        a.services.len() == b.services.len()
            && a.services
                .iter()
                .all(|(key, va)| b.services.get(key).is_some_and(|vb| Arc::ptr_eq(va, vb)))
    }

    #[test]
    fn a_patched_state_equals_a_rebuilt_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, service("one", 80) + &service("two", 80)).expect("write");
        std::fs::write(&b, service("three", 80)).expect("write");
        let (mut manifests, errors) = ManifestDir::load(dir.path()).expect("load");
        assert!(errors.is_empty());
        let mut state = manifests.state().0;

        // Changed, added and removed objects in one file.
        std::fs::write(&a, service("one", 81) + &service("four", 80)).expect("write");
        let before = manifests.before(std::slice::from_ref(&a));
        assert!(manifests.reload([a.clone()]).is_empty());
        assert!(manifests.patch(&mut state, &before));
        assert!(same(&state, &manifests.state().0));
        let mut names: Vec<&str> = state.services.keys().map(|k| k.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["four", "one", "three"]);

        // A deleted file.
        std::fs::remove_file(&b).expect("remove");
        let before = manifests.before(std::slice::from_ref(&b));
        manifests.reload([b.clone()]);
        assert!(manifests.patch(&mut state, &before));
        assert!(same(&state, &manifests.state().0));
    }

    #[test]
    fn an_object_defined_in_two_files_is_left_to_a_rebuild() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, service("one", 80)).expect("write");
        std::fs::write(&b, service("two", 80)).expect("write");
        let (mut manifests, _) = ManifestDir::load(dir.path()).expect("load");
        let mut state = manifests.state().0;
        std::fs::write(&a, service("two", 81)).expect("write");
        let before = manifests.before(std::slice::from_ref(&a));
        manifests.reload([a.clone()]);
        assert!(!manifests.patch(&mut state, &before));
        // Untouched: still the old objects.
        assert!(state.services.keys().any(|k| k.name == "one"));
        let (rebuilt, duplicates) = manifests.state();
        assert_eq!(duplicates.len(), 1);
        assert_eq!(rebuilt.services.len(), 1);
    }
}
