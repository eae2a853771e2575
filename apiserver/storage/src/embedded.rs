//! The embedded backend: a fjall LSM database on local disk.
//!
//! Layout (three keyspaces of one database, written together in atomic batches):
//! - `kv`: `<key> 0x00 <revision:be64>` → `<flag:u8><create_revision:be64><value>`; one row per
//!   version, flag 1 marks a deletion (tombstone). Reads at revision R pick, per key, the newest
//!   row at or below R.
//! - `log`: `<revision:be64>` → `<kind:u8><prev_revision:be64><key>`; the event log watchers
//!   replay, and the list of rows compaction may drop.
//! - `meta`: the current and compacted revisions.
//!
//! All writes go through one writer thread that takes every queued request, applies them in order
//! to one batch, commits it and fsyncs the journal once (group commit), and only then answers the
//! callers and publishes the events. An acknowledged write has therefore reached the disk.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use futures::StreamExt;
use tokio::sync::{broadcast, oneshot};
use tracing::{info, warn};

use crate::{
    Event, EventKind, KeyValue, ListRequest, ListResponse, Revision, Storage, StorageError,
    StorageResult, WatchStream,
};

/// Most requests one group commit takes.
const MAX_BATCH: usize = 512;
/// Batches of events a watcher may fall behind before it is closed.
const WATCH_BACKLOG: usize = 4096;
/// Log rows removed per compaction batch.
const COMPACTION_CHUNK: usize = 10_000;

/// Journal bytes kept before memtables are flushed to tables (fjall's minimum).
const MAX_JOURNAL_BYTES: u64 = 64 << 20;
/// Memtable size of one keyspace.
const MAX_MEMTABLE_BYTES: u64 = 8 << 20;

const FLAG_PUT: u8 = 0;
const FLAG_TOMBSTONE: u8 = 1;
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// The fjall-backed store; cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStorage {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    kv: Keyspace,
    log: Keyspace,
    current: Arc<AtomicU64>,
    compacted: Arc<AtomicU64>,
    commands: Option<mpsc::Sender<Command>>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop; wait so the database lock is released.
        self.commands.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        expected: Revision,
        value: Bytes,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

struct Command {
    op: Op,
    reply: oneshot::Sender<StorageResult<Option<KeyValue>>>,
}

/// One stored version as the writer sees it.
#[derive(Clone)]
struct Version {
    revision: Revision,
    create_revision: Revision,
    tombstone: bool,
    value: Bytes,
}

impl Version {
    fn to_kv(&self, key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.revision,
        }
    }
}

impl EmbeddedStorage {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> StorageResult<Self> {
        std::fs::create_dir_all(dir).map_err(StorageError::backend)?;
        // Small journals and memtables: history is dropped by compaction soon after it is
        // written, and the engine can only reclaim it once it has left the journal.
        let db = Database::builder(dir)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(StorageError::backend)?;
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MAX_MEMTABLE_BYTES);
        let kv = db.keyspace("kv", options).map_err(StorageError::backend)?;
        let log = db.keyspace("log", options).map_err(StorageError::backend)?;
        let meta = db
            .keyspace("meta", options)
            .map_err(StorageError::backend)?;
        let current = Arc::new(AtomicU64::new(read_meta(&meta, META_REVISION)?));
        let compacted = Arc::new(AtomicU64::new(read_meta(&meta, META_COMPACTED)?));
        let (events, _) = broadcast::channel(WATCH_BACKLOG);
        let (commands, receiver) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            kv: kv.clone(),
            log: log.clone(),
            meta,
            current: current.clone(),
            compacted: compacted.clone(),
            events: events.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(StorageError::backend)?;
        info!(
            dir = %dir.display(),
            revision = current.load(Ordering::SeqCst),
            compacted = compacted.load(Ordering::SeqCst),
            "opened embedded storage"
        );
        Ok(EmbeddedStorage {
            inner: Arc::new(Inner {
                db,
                kv,
                log,
                current,
                compacted,
                commands: Some(commands),
                events,
                writer: Some(writer),
            }),
        })
    }

    /// Bytes the database occupies on disk.
    pub fn disk_space(&self) -> u64 {
        self.inner.db.disk_space().unwrap_or(0)
    }

    /// A one-line account of where the bytes on disk are, for logs and tests.
    pub fn disk_report(&self) -> String {
        format!(
            "journal={} kv={} (tables {}) log={}",
            self.inner.db.journal_disk_space().unwrap_or(0),
            self.inner.kv.disk_space(),
            self.inner.kv.table_count(),
            self.inner.log.disk_space()
        )
    }

    async fn submit(&self, op: Op) -> StorageResult<Option<KeyValue>> {
        let (reply, answer) = oneshot::channel();
        let commands = self.inner.commands.as_ref().ok_or(StorageError::Closed)?;
        commands
            .send(Command { op, reply })
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    fn check_readable(&self, revision: Revision) -> StorageResult<()> {
        let compacted = self.inner.compacted.load(Ordering::SeqCst);
        if revision < compacted {
            return Err(StorageError::Compacted {
                requested: revision,
                compacted,
            });
        }
        Ok(())
    }
}

fn validate_key(key: &str) -> StorageResult<()> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey {
            key: key.into(),
            reason: "empty",
        });
    }
    if key.as_bytes().contains(&0) {
        return Err(StorageError::InvalidKey {
            key: key.into(),
            reason: "contains a NUL byte",
        });
    }
    Ok(())
}

fn read_meta(meta: &Keyspace, name: &str) -> StorageResult<Revision> {
    Ok(meta
        .get(name)
        .map_err(StorageError::backend)?
        .map(|v| decode_u64(&v))
        .unwrap_or(0))
}

fn decode_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

fn version_key(key: &str, revision: Revision) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
    out.extend_from_slice(&revision.to_be_bytes());
    out
}

/// Splits a `kv` row key into the user key and the revision.
fn split_version_key(raw: &[u8]) -> Option<(&str, Revision)> {
    if raw.len() < 9 || raw[raw.len() - 9] != 0 {
        return None;
    }
    let key = std::str::from_utf8(&raw[..raw.len() - 9]).ok()?;
    Some((key, decode_u64(&raw[raw.len() - 8..])))
}

fn encode_version(tombstone: bool, create_revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 9);
    out.push(if tombstone { FLAG_TOMBSTONE } else { FLAG_PUT });
    out.extend_from_slice(&create_revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode_version(revision: Revision, raw: &[u8]) -> Option<Version> {
    if raw.len() < 9 {
        return None;
    }
    Some(Version {
        revision,
        create_revision: decode_u64(&raw[1..9]),
        tombstone: raw[0] == FLAG_TOMBSTONE,
        value: Bytes::copy_from_slice(&raw[9..]),
    })
}

fn encode_log(kind: EventKind, prev: Revision, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 9);
    out.push(match kind {
        EventKind::Put => 0,
        EventKind::Delete => 1,
    });
    out.extend_from_slice(&prev.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

fn decode_log(raw: &[u8]) -> Option<(EventKind, Revision, String)> {
    if raw.len() < 9 {
        return None;
    }
    let kind = if raw[0] == 1 {
        EventKind::Delete
    } else {
        EventKind::Put
    };
    let key = String::from_utf8(raw[9..].to_vec()).ok()?;
    Some((kind, decode_u64(&raw[1..9]), key))
}

/// The newest version of `key` at or below `at`.
fn read_version(kv: &Keyspace, key: &str, at: Revision) -> StorageResult<Option<Version>> {
    let start = version_key(key, 0);
    let end = version_key(key, at);
    match kv.range(start..=end).next_back() {
        None => Ok(None),
        Some(guard) => {
            let (raw_key, raw_value) = guard.into_inner().map_err(StorageError::backend)?;
            let (_, revision) = split_version_key(&raw_key)
                .ok_or_else(|| StorageError::Backend("corrupt version key".into()))?;
            decode_version(revision, &raw_value)
                .map(Some)
                .ok_or_else(|| StorageError::Backend("corrupt version value".into()))
        }
    }
}

/// Rebuilds the event recorded in the log at `revision`.
fn read_event(kv: &Keyspace, revision: Revision, raw_log: &[u8]) -> StorageResult<Event> {
    let (kind, prev_revision, key) =
        decode_log(raw_log).ok_or_else(|| StorageError::Backend("corrupt log row".into()))?;
    let prev = if prev_revision > 0 {
        read_version(kv, &key, prev_revision)?.map(|v| v.to_kv(&key))
    } else {
        None
    };
    let kv = match kind {
        EventKind::Put => read_version(kv, &key, revision)?
            .ok_or_else(|| {
                StorageError::Backend(format!("log names missing row {key}@{revision}"))
            })?
            .to_kv(&key),
        EventKind::Delete => {
            let mut last = prev.clone().ok_or_else(|| {
                StorageError::Backend(format!("deletion of {key}@{revision} without a value"))
            })?;
            last.mod_revision = revision;
            last
        }
    };
    Ok(Event { kind, kv, prev })
}

struct Writer {
    db: Database,
    kv: Keyspace,
    log: Keyspace,
    meta: Keyspace,
    current: Arc<AtomicU64>,
    compacted: Arc<AtomicU64>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

type Reply = oneshot::Sender<StorageResult<Option<KeyValue>>>;

impl Writer {
    fn run(self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let mut writes = Vec::with_capacity(batch.len());
            let mut compactions = Vec::new();
            for command in batch {
                match command.op {
                    Op::Compact { revision } => compactions.push((revision, command.reply)),
                    op => writes.push((op, command.reply)),
                }
            }
            if !writes.is_empty() {
                self.commit_writes(writes);
            }
            for (revision, reply) in compactions {
                let _ = reply.send(self.compact(revision).map(|_| None));
            }
        }
    }

    fn latest(
        &self,
        pending: &HashMap<String, Version>,
        key: &str,
    ) -> StorageResult<Option<Version>> {
        if let Some(v) = pending.get(key) {
            return Ok(Some(v.clone()));
        }
        read_version(&self.kv, key, Revision::MAX)
    }

    fn commit_writes(&self, writes: Vec<(Op, Reply)>) {
        let base = self.current.load(Ordering::SeqCst);
        let mut revision = base;
        let mut batch = self.db.batch();
        let mut pending: HashMap<String, Version> = HashMap::new();
        let mut events = Vec::new();
        let mut outcomes: Vec<(Reply, StorageResult<Option<KeyValue>>)> = Vec::new();

        for (op, reply) in writes {
            let outcome = self.apply(op, &mut revision, &mut batch, &mut pending, &mut events);
            outcomes.push((reply, outcome));
        }

        if revision != base {
            batch.insert(&self.meta, META_REVISION, revision.to_be_bytes().to_vec());
            let durable = batch
                .commit()
                .and_then(|_| self.db.persist(PersistMode::SyncData));
            if let Err(err) = durable {
                warn!(error = %err, "storage commit failed");
                for (reply, _) in outcomes {
                    let _ = reply.send(Err(StorageError::backend(&err)));
                }
                return;
            }
            self.current.store(revision, Ordering::SeqCst);
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(Arc::new(events));
        }
        for (reply, outcome) in outcomes {
            let _ = reply.send(outcome);
        }
    }

    fn apply(
        &self,
        op: Op,
        revision: &mut Revision,
        batch: &mut fjall::OwnedWriteBatch,
        pending: &mut HashMap<String, Version>,
        events: &mut Vec<Event>,
    ) -> StorageResult<Option<KeyValue>> {
        match op {
            Op::Create { key, value } => {
                validate_key(&key)?;
                let prev = self.latest(pending, &key)?;
                if prev.as_ref().is_some_and(|v| !v.tombstone) {
                    return Err(StorageError::AlreadyExists { key });
                }
                *revision += 1;
                let version = Version {
                    revision: *revision,
                    create_revision: *revision,
                    tombstone: false,
                    value,
                };
                batch.insert(
                    &self.kv,
                    version_key(&key, *revision),
                    encode_version(false, *revision, &version.value),
                );
                batch.insert(
                    &self.log,
                    revision.to_be_bytes().to_vec(),
                    encode_log(EventKind::Put, 0, &key),
                );
                let kv = version.to_kv(&key);
                events.push(Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: None,
                });
                pending.insert(key, version);
                Ok(Some(kv))
            }
            Op::Update {
                key,
                expected,
                value,
            } => {
                let prev = match self.latest(pending, &key)? {
                    Some(v) if !v.tombstone => v,
                    _ => return Err(StorageError::NotFound { key }),
                };
                if prev.revision != expected {
                    let current = Some(Box::new(prev.to_kv(&key)));
                    return Err(StorageError::Conflict { key, current });
                }
                *revision += 1;
                let version = Version {
                    revision: *revision,
                    create_revision: prev.create_revision,
                    tombstone: false,
                    value,
                };
                batch.insert(
                    &self.kv,
                    version_key(&key, *revision),
                    encode_version(false, prev.create_revision, &version.value),
                );
                batch.insert(
                    &self.log,
                    revision.to_be_bytes().to_vec(),
                    encode_log(EventKind::Put, prev.revision, &key),
                );
                let kv = version.to_kv(&key);
                events.push(Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: Some(prev.to_kv(&key)),
                });
                pending.insert(key, version);
                Ok(Some(kv))
            }
            Op::Delete { key, expected } => {
                let prev = match self.latest(pending, &key)? {
                    Some(v) if !v.tombstone => v,
                    _ => return Err(StorageError::NotFound { key }),
                };
                if expected.is_some_and(|e| e != prev.revision) {
                    let current = Some(Box::new(prev.to_kv(&key)));
                    return Err(StorageError::Conflict { key, current });
                }
                *revision += 1;
                batch.insert(
                    &self.kv,
                    version_key(&key, *revision),
                    encode_version(true, prev.create_revision, &[]),
                );
                batch.insert(
                    &self.log,
                    revision.to_be_bytes().to_vec(),
                    encode_log(EventKind::Delete, prev.revision, &key),
                );
                let mut last = prev.to_kv(&key);
                last.mod_revision = *revision;
                events.push(Event {
                    kind: EventKind::Delete,
                    kv: last.clone(),
                    prev: Some(prev.to_kv(&key)),
                });
                pending.insert(
                    key,
                    Version {
                        revision: *revision,
                        create_revision: prev.create_revision,
                        tombstone: true,
                        value: Bytes::new(),
                    },
                );
                Ok(Some(last))
            }
            Op::Compact { .. } => unreachable!("compactions are split out before applying writes"),
        }
    }

    /// Drops every row that no read at or above `target` can see, and the log up to `target`.
    fn compact(&self, target: Revision) -> StorageResult<()> {
        let done = self.compacted.load(Ordering::SeqCst);
        let current = self.current.load(Ordering::SeqCst);
        if target > current {
            return Err(StorageError::FutureRevision {
                requested: target,
                current,
            });
        }
        if target <= done {
            return Ok(());
        }
        let mut removed = 0usize;
        let mut from = done + 1;
        loop {
            let mut batch = self.db.batch();
            let mut last = None;
            let mut rows = 0;
            for guard in self
                .log
                .range(from.to_be_bytes()..=target.to_be_bytes())
                .take(COMPACTION_CHUNK)
            {
                let (raw_key, raw_value) = guard.into_inner().map_err(StorageError::backend)?;
                let revision = decode_u64(&raw_key);
                let (kind, prev, key) = decode_log(&raw_value)
                    .ok_or_else(|| StorageError::Backend("corrupt log row".into()))?;
                if prev > 0 {
                    batch.remove_weak(&self.kv, version_key(&key, prev));
                }
                if kind == EventKind::Delete {
                    batch.remove_weak(&self.kv, version_key(&key, revision));
                }
                batch.remove_weak(&self.log, raw_key.to_vec());
                last = Some(revision);
                rows += 1;
            }
            let finished = rows < COMPACTION_CHUNK;
            let reached = if finished {
                target
            } else {
                last.unwrap_or(target)
            };
            batch.insert(&self.meta, META_COMPACTED, reached.to_be_bytes().to_vec());
            batch.commit().map_err(StorageError::backend)?;
            self.db
                .persist(PersistMode::SyncData)
                .map_err(StorageError::backend)?;
            self.compacted.store(reached, Ordering::SeqCst);
            removed += rows;
            if finished {
                break;
            }
            from = reached + 1;
        }
        info!(revision = target, rows = removed, "compacted storage");
        Ok(())
    }
}

#[async_trait]
impl Storage for EmbeddedStorage {
    async fn create(&self, key: &str, value: Bytes) -> StorageResult<KeyValue> {
        let op = Op::Create {
            key: key.to_owned(),
            value,
        };
        self.submit(op)
            .await
            .map(|kv| kv.expect("create returns its value"))
    }

    async fn get(&self, key: &str) -> StorageResult<Option<KeyValue>> {
        validate_key(key)?;
        let at = self.inner.current.load(Ordering::SeqCst);
        Ok(read_version(&self.inner.kv, key, at)?
            .filter(|v| !v.tombstone)
            .map(|v| v.to_kv(key)))
    }

    async fn list(&self, request: ListRequest) -> StorageResult<ListResponse> {
        let current = self.inner.current.load(Ordering::SeqCst);
        let at = match request.revision {
            Some(r) if r > current => {
                return Err(StorageError::FutureRevision {
                    requested: r,
                    current,
                });
            }
            Some(r) => r,
            None => current,
        };
        self.check_readable(at)?;
        let kv = self.inner.kv.clone();
        let response = tokio::task::spawn_blocking(move || list_at(&kv, &request, at))
            .await
            .map_err(StorageError::backend)??;
        // Compaction may have raced the read: the answer is only valid if `at` is still readable.
        self.check_readable(at)?;
        Ok(response)
    }

    async fn update(&self, key: &str, expected: Revision, value: Bytes) -> StorageResult<KeyValue> {
        let op = Op::Update {
            key: key.to_owned(),
            expected,
            value,
        };
        self.submit(op)
            .await
            .map(|kv| kv.expect("update returns its value"))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> StorageResult<KeyValue> {
        let op = Op::Delete {
            key: key.to_owned(),
            expected,
        };
        self.submit(op)
            .await
            .map(|kv| kv.expect("delete returns the value"))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> StorageResult<WatchStream> {
        self.check_readable(after)?;
        // Subscribe before reading history so nothing falls between the two.
        let live = self.inner.events.subscribe();
        let upto = self.inner.current.load(Ordering::SeqCst);
        let history = if after < upto {
            let kv = self.inner.kv.clone();
            let log = self.inner.log.clone();
            let prefix = prefix.to_owned();
            tokio::task::spawn_blocking(move || replay(&kv, &log, &prefix, after, upto))
                .await
                .map_err(StorageError::backend)??
        } else {
            Vec::new()
        };
        self.check_readable(after)?;
        let prefix = prefix.to_owned();
        let floor = after.max(upto);
        // Pulled by the consumer: a batch's matching events are handed out one by one, and a
        // lagging or closed channel ends the stream with its error.
        let pending: VecDeque<Event> = VecDeque::new();
        let live = futures::stream::unfold(
            (live, pending, false),
            move |(mut rx, mut pending, done)| {
                let prefix = prefix.clone();
                async move {
                    loop {
                        if let Some(event) = pending.pop_front() {
                            return Some((Ok(event), (rx, pending, done)));
                        }
                        if done {
                            return None;
                        }
                        match rx.recv().await {
                            Ok(batch) => pending.extend(
                                batch
                                    .iter()
                                    .filter(|e| {
                                        e.revision() > floor && e.kv.key.starts_with(&prefix)
                                    })
                                    .cloned(),
                            ),
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                return Some((
                                    Err(StorageError::WatcherLagged),
                                    (rx, pending, true),
                                ));
                            }
                            Err(broadcast::error::RecvError::Closed) => {
                                return Some((Err(StorageError::Closed), (rx, pending, true)));
                            }
                        }
                    }
                }
            },
        );
        Ok(Box::pin(
            futures::stream::iter(history.into_iter().map(Ok)).chain(live),
        ))
    }

    fn current_revision(&self) -> Revision {
        self.inner.current.load(Ordering::SeqCst)
    }

    fn compacted_revision(&self) -> Revision {
        self.inner.compacted.load(Ordering::SeqCst)
    }

    async fn compact(&self, revision: Revision) -> StorageResult<()> {
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }
}

fn replay(
    kv: &Keyspace,
    log: &Keyspace,
    prefix: &str,
    after: Revision,
    upto: Revision,
) -> StorageResult<Vec<Event>> {
    let mut out = Vec::new();
    for guard in log.range((after + 1).to_be_bytes()..=upto.to_be_bytes()) {
        let (raw_key, raw_value) = guard.into_inner().map_err(StorageError::backend)?;
        if raw_value.len() < 9 || !raw_value[9..].starts_with(prefix.as_bytes()) {
            continue;
        }
        out.push(read_event(kv, decode_u64(&raw_key), &raw_value)?);
    }
    Ok(out)
}

fn list_at(kv: &Keyspace, request: &ListRequest, at: Revision) -> StorageResult<ListResponse> {
    let limit = request.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let start: Vec<u8> = match &request.start_after {
        // Every version row of `start_after` sorts below `start_after` + 0x01.
        Some(after) if after.as_str() >= request.prefix.as_str() => {
            let mut s = after.as_bytes().to_vec();
            s.push(1);
            s
        }
        _ => request.prefix.as_bytes().to_vec(),
    };
    // Collect one visible key past the page to learn whether more follow.
    let mut items: Vec<KeyValue> = Vec::new();
    let mut scanning: Option<(String, Option<Version>)> = None;
    let take = |entry: Option<(String, Option<Version>)>, items: &mut Vec<KeyValue>| {
        if let Some((key, Some(v))) = entry
            && !v.tombstone
        {
            items.push(v.to_kv(&key));
        }
    };
    for guard in kv.range(start..) {
        let (raw_key, raw_value) = guard.into_inner().map_err(StorageError::backend)?;
        if !raw_key.starts_with(request.prefix.as_bytes()) {
            break;
        }
        let Some((key, revision)) = split_version_key(&raw_key) else {
            continue;
        };
        if scanning.as_ref().is_none_or(|(k, _)| k != key) {
            take(scanning.take(), &mut items);
            if items.len() > limit {
                break;
            }
            scanning = Some((key.to_owned(), None));
        }
        if revision <= at
            && let Some(v) = decode_version(revision, &raw_value)
            && let Some((_, newest)) = scanning.as_mut()
        {
            *newest = Some(v);
        }
    }
    take(scanning.take(), &mut items);
    let more = items.len() > limit;
    items.truncate(limit);
    Ok(ListResponse {
        items,
        revision: at,
        more,
    })
}
