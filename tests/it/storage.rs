//! Per-actor storage (`wasmshard:actor/storage`), driven through the Rust test
//! guest's `keeper` role (`tests/guests/roles`): it outlives a supervised
//! restart and an upgrade, is bounded by the quota, and is dropped when the
//! actor ends for good.

use std::time::Duration;

use wasmshard::{Address, Component, Restart, Runtime, SpawnOptions};

use crate::support::*;

/// Codes the keeper answers `s` with.
const OK: u8 = 0;
const TOO_LARGE: u8 = 1;
const QUOTA_EXCEEDED: u8 = 2;

fn ask(rt: &Runtime, keeper: Address, command: &[u8]) -> Vec<u8> {
    let reply = rt
        .request(keeper, command, Duration::from_secs(600))
        .unwrap();
    rt.run_until_stalled();
    reply.try_get().expect("answered").expect("a reply")
}

fn set(rt: &Runtime, keeper: Address, key: &[u8], value: &[u8]) -> u8 {
    let mut c = vec![b's'];
    c.extend_from_slice(&(key.len() as u32).to_le_bytes());
    c.extend_from_slice(key);
    c.extend_from_slice(value);
    ask(rt, keeper, &c)[0]
}

fn get(rt: &Runtime, keeper: Address, key: &[u8]) -> Option<Vec<u8>> {
    let mut c = vec![b'g'];
    c.extend_from_slice(key);
    let r = ask(rt, keeper, &c);
    (r[0] == 1).then(|| r[1..].to_vec())
}

fn inits(rt: &Runtime, keeper: Address) -> u32 {
    u32::from_le_bytes(get(rt, keeper, b"inits").unwrap().try_into().unwrap())
}

fn spawn_keeper(rt: &Runtime, g: &Component) -> Address {
    rt.spawn(
        g,
        SpawnOptions::new("keeper")
            .config("keeper")
            .restart(Restart::on_failure()),
    )
    .unwrap()
}

#[test]
fn storage_outlives_a_restart_and_an_upgrade_and_ends_with_the_actor() {
    let rt = builder(1).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(inits(&rt, keeper), 1);
    assert_eq!(set(&rt, keeper, b"colour", b"blue"), OK);
    rt.send(keeper, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(rt.stats().actor("keeper").unwrap().restarts, 1);
    // The new instance's init read what the first one wrote.
    assert_eq!(inits(&rt, keeper), 2);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    rt.upgrade(keeper, &g).unwrap();
    assert_eq!(inits(&rt, keeper), 3);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    let stats = rt.stats();
    // Two entries, each with its overhead.
    let o = wasmshard::STORAGE_ENTRY_OVERHEAD as u64;
    assert_eq!(stats.actor("keeper").unwrap().stored, 2 * o + 5 + 4 + 6 + 4);
    // Ended for good: a new actor of the same name starts empty.
    rt.stop(keeper).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(inits(&rt, keeper), 1);
    assert_eq!(get(&rt, keeper, b"colour"), None);
}

#[test]
fn storage_is_bounded_by_its_quota() {
    // Each entry counts its key, its value and the overhead.
    let o = wasmshard::STORAGE_ENTRY_OVERHEAD;
    let rt = builder(1).storage_quota(2 * o + 64).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    // `inits` takes o + 9 bytes already.
    let long_key = vec![b'k'; wasmshard::MAX_STORAGE_KEY + 1];
    assert_eq!(set(&rt, keeper, &long_key, b"v"), TOO_LARGE);
    assert_eq!(set(&rt, keeper, b"big", &vec![0; 62 + o]), TOO_LARGE);
    assert_eq!(set(&rt, keeper, b"a", &[1; 50]), OK);
    assert_eq!(set(&rt, keeper, b"b", &[2; 10]), QUOTA_EXCEEDED);
    // Replacing counts the difference only; deleting gives room back.
    assert_eq!(set(&rt, keeper, b"a", &[3; 54]), OK);
    assert_eq!(set(&rt, keeper, b"a", &[3; 55]), QUOTA_EXCEEDED);
    assert_eq!(ask(&rt, keeper, b"da"), [1]);
    assert_eq!(ask(&rt, keeper, b"da"), [0]);
    assert_eq!(set(&rt, keeper, b"b", &[2; 10]), OK);
    assert_eq!(
        rt.stats().actor("keeper").unwrap().stored,
        (2 * o + 9 + 11) as u64
    );
    // A quota of zero refuses even `init`'s write: the spawn fails.
    let none = builder(1).storage_quota(0).build_manual().unwrap();
    let e = none
        .spawn(
            &guest(&none).unwrap(),
            SpawnOptions::new("k").config("keeper"),
        )
        .unwrap_err();
    assert!(e.to_string().contains("init"), "{e}");
}

/// The storage benchmark's fixture: the interface at the canonical ABI, from
/// hand-written WAT (a failed call traps).
#[test]
fn the_storage_fixture_sets_gets_and_deletes() {
    let rt = builder(1).build_manual().unwrap();
    let store = load(&rt, "store.wat");
    let a = rt.spawn(&store, SpawnOptions::new("store")).unwrap();
    let run = |mode: u8, n: u32| {
        let mut msg = vec![mode, 0, 0, 0];
        msg.extend_from_slice(&n.to_le_bytes());
        rt.send(a, &msg).unwrap();
        rt.run_until_stalled();
    };
    run(b's', 3);
    run(b'g', 3);
    let o = wasmshard::STORAGE_ENTRY_OVERHEAD as u64;
    assert_eq!(rt.stats().actor("store").unwrap().stored, o + 40);
    run(b'd', 2);
    let stats = rt.stats();
    let s = stats.actor("store").unwrap();
    assert_eq!((s.stored, s.handled, s.alive), (0, 3, true));
    // A get of what is gone traps (the fixture insists on finding it).
    run(b'g', 1);
    assert!(!rt.stats().actor("store").unwrap().alive);
}

/// A fresh directory for one test's durable storage.
fn storage_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wasmshard-it-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn durable_storage_outlives_the_runtime_and_ends_with_the_actor() {
    let dir = storage_dir("durable");
    let runtime = || builder(2).storage_dir(&dir).build_manual().unwrap();
    let rt = runtime();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(set(&rt, keeper, b"colour", b"blue"), OK);
    assert_eq!(set(&rt, keeper, b"size", b"9"), OK);
    assert_eq!(ask(&rt, keeper, b"dsize"), [1]);
    // An anonymous-free way to check a second actor keeps its own.
    let other = rt
        .spawn(&g, SpawnOptions::new("other").config("keeper"))
        .unwrap();
    assert_eq!(set(&rt, other, b"colour", b"red"), OK);
    rt.shutdown();

    // A later runtime on the same directory: each name finds its own.
    let rt = runtime();
    let g = guest(&rt).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(inits(&rt, keeper), 2);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    assert_eq!(get(&rt, keeper, b"size"), None);
    let other = rt
        .spawn(&g, SpawnOptions::new("other").config("keeper"))
        .unwrap();
    assert_eq!(get(&rt, other, b"colour").as_deref(), Some(&b"red"[..]));
    // An upgrade rewrites it; a restart keeps it.
    rt.upgrade(keeper, &g).unwrap();
    rt.send(keeper, b"panic").unwrap();
    rt.run_until_stalled();
    assert_eq!(inits(&rt, keeper), 4);
    // Stopped: ended for good, its storage goes, at once for a new actor of
    // the name and for later runtimes.
    rt.stop(keeper).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(inits(&rt, keeper), 1);
    assert_eq!(get(&rt, keeper, b"colour"), None);
    rt.stop(keeper).unwrap();
    rt.shutdown();

    let rt = runtime();
    let g = guest(&rt).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(inits(&rt, keeper), 1);
    let other = rt
        .spawn(&g, SpawnOptions::new("other").config("keeper"))
        .unwrap();
    assert_eq!(inits(&rt, other), 3);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An actor whose stored entries are over a quota lowered since may still
/// rewrite a key with a value no larger (its `init`'s counter, a smaller
/// value), so it can come back under the quota; a larger value or a new key
/// waits until it is under. Every rewrite used to be refused over the quota.
#[test]
fn a_quota_lowered_since_lets_an_actor_shrink_what_it_holds() {
    let dir = storage_dir("lowered");
    let rt = builder(1)
        .storage_dir(&dir)
        .storage_quota(8192)
        .build_manual()
        .unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(set(&rt, keeper, b"a", &[7; 600]), OK);
    assert_eq!(set(&rt, keeper, b"b", &[7; 600]), OK);
    rt.shutdown();

    let rt = builder(1)
        .storage_dir(&dir)
        .storage_quota(1024)
        .build_manual()
        .unwrap();
    let g = guest(&rt).unwrap();
    // Over the quota: its `init` rewrites its counter (four bytes for four).
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(inits(&rt, keeper), 2);
    assert_eq!(set(&rt, keeper, b"a", &[7; 601]), QUOTA_EXCEEDED);
    assert_eq!(set(&rt, keeper, b"new", b"x"), QUOTA_EXCEEDED);
    assert_eq!(set(&rt, keeper, b"a", &[8; 10]), OK);
    // Under it again.
    assert_eq!(set(&rt, keeper, b"new", b"x"), OK);
    assert_eq!(get(&rt, keeper, b"a").as_deref(), Some(&[8u8; 10][..]));
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spawn whose `init` fails takes back what it stored: the next actor of
/// the name finds what the last one that started kept (it found the failed
/// one's writes).
#[test]
fn a_spawn_whose_init_fails_takes_its_storage_back() {
    let dir = storage_dir("blot");
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(set(&rt, keeper, b"colour", b"blue"), OK);
    assert_eq!(set(&rt, keeper, b"size", b"9"), OK);
    rt.shutdown();

    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let g = guest(&rt).unwrap();
    let e = rt
        .spawn(&g, SpawnOptions::new("keeper").config("blot"))
        .unwrap_err();
    assert!(matches!(e, wasmshard::SpawnError::Init(_)), "{e:?}");
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    assert_eq!(get(&rt, keeper, b"size").as_deref(), Some(&b"9"[..]));
    assert_eq!(get(&rt, keeper, b"blot"), None);
    rt.shutdown();
    // And in the next process too.
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let g = guest(&rt).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    assert_eq!(get(&rt, keeper, b"blot"), None);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A runtime shut down while a `Handle` to it lives on lets go of its
/// storage directory: the next runtime on it opens it (it used to fail with
/// the database already open until the handle was dropped).
#[test]
fn a_handle_kept_after_shutdown_does_not_hold_the_storage() {
    let dir = storage_dir("handle");
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(set(&rt, keeper, b"colour", b"blue"), OK);
    let handle = rt.handle();
    rt.shutdown();
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let g = guest(&rt).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    drop(handle);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shard that crashes (a defect of the runtime, not of its actors) fails
/// its actors but leaves their durable storage as a crash of the process
/// would: it used to clear it, as for actors that had ended for good.
#[test]
fn a_crashed_shard_leaves_durable_storage_for_the_next_process() {
    let dir = storage_dir("crash");
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(set(&rt, keeper, b"colour", b"blue"), OK);
    rt.inject_shard_panic(0);
    rt.run_until_stalled();
    let stats = rt.stats();
    let k = stats.actors.iter().find(|a| a.name == "keeper").unwrap();
    assert!(!k.alive && k.failed, "{k:?}");
    rt.shutdown();
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let g = guest(&rt).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Once a commit has failed the store writes nothing more, but in this
/// process deletes and ends still count (a name reused finds what its last
/// actor deleted gone; it found the committed entries again), and an
/// upgrade's `init` hears `unavailable` as the actor would (it heard `ok`).
#[test]
fn after_a_failed_commit_deletes_and_ends_still_count_here() {
    const UNAVAILABLE: u8 = 3;
    let dir = storage_dir("failed");
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(set(&rt, keeper, b"colour", b"blue"), OK);
    rt.shutdown();

    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let g = guest(&rt).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(get(&rt, keeper, b"colour").as_deref(), Some(&b"blue"[..]));
    rt.inject_storage_failure();
    // The next commit fails; from then on sets are refused.
    let mut tries = 0u32;
    while set(&rt, keeper, &tries.to_le_bytes(), b"x") == OK {
        tries += 1;
        assert!(tries < 10_000, "the store never failed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(set(&rt, keeper, b"more", b"x"), UNAVAILABLE);
    rt.upgrade(keeper, &g).unwrap();
    assert_eq!(ask(&rt, keeper, b"i"), [UNAVAILABLE]);
    assert_eq!(ask(&rt, keeper, b"dcolour"), [1]);
    assert_eq!(get(&rt, keeper, b"colour"), None);
    rt.stop(keeper).unwrap();
    let keeper = spawn_keeper(&rt, &g);
    assert_eq!(ask(&rt, keeper, b"i"), [UNAVAILABLE]);
    assert_eq!(get(&rt, keeper, b"colour"), None);
    assert_eq!(get(&rt, keeper, b"inits"), None);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_storage_dir_that_cannot_be_opened_fails_the_build() {
    let file = storage_dir("not-a-dir");
    std::fs::write(&file, b"a file, not a directory").unwrap();
    let e = builder(1).storage_dir(&file).build().unwrap_err();
    assert!(matches!(e, wasmshard::BuildError::Storage { .. }), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    let _ = std::fs::remove_file(&file);
}

/// A storage file damaged outside the runtime fails the build, or is
/// repaired, or its damaged entries fail the spawns that load them: never a
/// panic.
#[test]
fn a_damaged_storage_file_never_panics() {
    let dir = storage_dir("damaged");
    let rt = builder(1).storage_dir(&dir).build_manual().unwrap();
    let Some(g) = guest(&rt) else { return };
    let keeper = spawn_keeper(&rt, &g);
    for i in 0..200u32 {
        assert_eq!(set(&rt, keeper, &i.to_le_bytes(), &[7u8; 300]), OK);
    }
    rt.shutdown();
    let file = dir.join("wasmshard-storage.redb");
    let clean = std::fs::read(&file).unwrap();
    for (at, len) in [
        (0, 64),
        (clean.len() / 3, 4096),
        (clean.len() / 2, 512),
        (clean.len() - 600, 600),
    ] {
        let mut bytes = clean.clone();
        for b in &mut bytes[at..(at + len).min(clean.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(&file, &bytes).unwrap();
        let built = std::panic::catch_unwind(|| builder(1).storage_dir(&dir).build_manual());
        let Ok(built) = built else {
            panic!("building on a file damaged at {at} panicked");
        };
        if let Ok(rt) = built {
            let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.spawn(&g, SpawnOptions::new("keeper").config("keeper"))
                    .map(|_| ())
            }));
            assert!(
                spawned.is_ok(),
                "a spawn on a file damaged at {at} panicked"
            );
            drop(rt);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A threaded build that failed part-way (a shard's thread could not start)
/// left the shards already started, the ticker and the store behind: the
/// database stayed open, so a build retried on the directory failed too.
#[test]
fn a_build_that_fails_part_way_lets_everything_go() {
    let dir = storage_dir("part-way");
    let Err(e) = builder(3)
        .storage_dir(&dir)
        .inject_thread_failure(2)
        .build()
    else {
        panic!("the build should fail");
    };
    assert!(matches!(e, wasmshard::BuildError::System { .. }), "{e:?}");
    // The retry finds the store free.
    let rt = builder(3).storage_dir(&dir).build().unwrap();
    rt.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}
