//! The embedded backend against the storage contract, plus its durability and growth promises.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use apiserver_storage::embedded::EmbeddedStorage;
use apiserver_storage::{Compactor, ListRequest, Storage};
use bytes::Bytes;

async fn fresh() -> (EmbeddedStorage, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStorage::open(dir.path()).unwrap();
    (store, dir)
}

apiserver_storage::storage_conformance_tests!(fresh());

#[tokio::test]
async fn data_and_revisions_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (rev, compacted) = {
        let s = EmbeddedStorage::open(dir.path()).unwrap();
        let a = s.create("/k/a", Bytes::from_static(b"1")).await.unwrap();
        s.update("/k/a", a.mod_revision, Bytes::from_static(b"2"))
            .await
            .unwrap();
        s.create("/k/b", Bytes::from_static(b"3")).await.unwrap();
        s.compact(a.mod_revision).await.unwrap();
        (s.current_revision(), s.compacted_revision())
    };
    let s = EmbeddedStorage::open(dir.path()).unwrap();
    assert_eq!(s.current_revision(), rev);
    assert_eq!(s.compacted_revision(), compacted);
    assert_eq!(s.get("/k/a").await.unwrap().unwrap().value.as_ref(), b"2");
    let next = s.create("/k/c", Bytes::from_static(b"4")).await.unwrap();
    assert_eq!(
        next.mod_revision,
        rev + 1,
        "revisions continue after a restart"
    );
}

/// The child half of the crash test: writes until killed, printing each acknowledged key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run only as the child process of acknowledged_writes_survive_kill_9"]
async fn crash_test_writer_child() {
    let Ok(dir) = std::env::var("STORAGE_CRASH_DIR") else {
        return;
    };
    let store = Arc::new(EmbeddedStorage::open(Path::new(&dir)).unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for writer in 0..8 {
        let store = store.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{writer}/{i:08}");
                store
                    .create(&key, Bytes::from(key.clone().into_bytes()))
                    .await
                    .unwrap();
                if tx.send(key).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    while let Some(key) = rx.recv().await {
        writeln!(out, "ACK {key}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_test_writer_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("STORAGE_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_owned());
            if acked.len() >= 2000 {
                break;
            }
        }
    }
    // SIGKILL mid-stream: writers are still running.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        acked.len() >= 2000,
        "child acknowledged only {} writes",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStorage::open(dir.path()).unwrap();
        for key in &acked {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged write {key} lost after kill -9"));
            assert_eq!(kv.value.as_ref(), key.as_bytes());
        }
        let all = store
            .list(ListRequest {
                prefix: "/crash/".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(all.items.len() >= acked.len());
        // The store is writable after recovery, with a fresh revision.
        let next = store
            .create("/crash/after", Bytes::from_static(b"ok"))
            .await
            .unwrap();
        assert!(next.mod_revision > all.revision);
    });
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Incompressible filler so the engine's compression cannot hide growth.
fn noise(seed: u64, len: usize) -> Bytes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Updates every key `rounds` times, compacting to the newest revision every 100 rounds.
async fn churn(store: &Arc<EmbeddedStorage>, keys: u64, rounds: u64, value: usize, seed: u64) {
    let mut tasks = Vec::new();
    for k in 0..keys {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/churn/{k}");
            let mut rev = match store.get(&key).await.unwrap() {
                Some(kv) => kv.mod_revision,
                None => {
                    store
                        .create(&key, noise(k, value))
                        .await
                        .unwrap()
                        .mod_revision
                }
            };
            for round in 1..rounds {
                rev = store
                    .update(&key, rev, noise(seed + k * rounds + round, value))
                    .await
                    .unwrap()
                    .mod_revision;
                if k == 0 && round % 100 == 0 {
                    store.compact(store.current_revision()).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    store.compact(store.current_revision()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_with_compaction_keeps_the_data_dir_bounded() {
    const KEYS: u64 = 32;
    const ROUNDS: u64 = 1500;
    const VALUE: usize = 4096;
    // The engine keeps up to 64 MiB of journal plus tables awaiting deletion; the point is that
    // the total stops growing, whatever volume churns through.
    const BOUND: u64 = 128 << 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStorage::open(dir.path()).unwrap());
    let per_phase = KEYS * ROUNDS * VALUE as u64;

    churn(&store, KEYS, ROUNDS, VALUE, 0).await;
    let first = dir_size(dir.path());
    eprintln!(
        "after {per_phase} bytes: {first} on disk ({})",
        store.disk_report()
    );
    churn(&store, KEYS, ROUNDS, VALUE, 1 << 40).await;
    let second = dir_size(dir.path());
    eprintln!(
        "after {} bytes: {second} on disk ({})",
        2 * per_phase,
        store.disk_report()
    );

    assert!(
        second < BOUND,
        "data dir holds {second} bytes after churning {} bytes through {} live bytes",
        2 * per_phase,
        KEYS * VALUE as u64
    );
    assert!(
        second <= first + (16 << 20),
        "data dir grew from {first} to {second} bytes under steady churn"
    );
    let all = store
        .list(ListRequest {
            prefix: "/churn/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.items.len() as u64, KEYS);
}

#[tokio::test]
async fn periodic_compaction_keeps_one_interval_of_history() {
    let (store, _dir) = fresh().await;
    let mut compactor = Compactor::default();
    let a = store
        .create("/p/a", Bytes::from_static(b"1"))
        .await
        .unwrap();
    // The first tick only records the revision.
    assert_eq!(compactor.tick(&store).await.unwrap(), None);
    assert_eq!(store.compacted_revision(), 0);
    let b = store
        .update("/p/a", a.mod_revision, Bytes::from_static(b"2"))
        .await
        .unwrap();
    // The next tick compacts to what was current at the first tick, not further.
    assert_eq!(compactor.tick(&store).await.unwrap(), Some(a.mod_revision));
    assert_eq!(store.compacted_revision(), a.mod_revision);
    assert!(store.compacted_revision() < b.mod_revision);
    assert_eq!(compactor.tick(&store).await.unwrap(), Some(b.mod_revision));
}
