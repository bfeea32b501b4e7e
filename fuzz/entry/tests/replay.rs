//! Replays every committed fuzz input on stable: `fuzz/corpus/<target>/*` (the seeds and
//! what libFuzzer kept) and `fuzz/regressions/<target>/*` (inputs that once failed; each
//! was fixed), through the same functions the fuzz targets call. Also runs the seeds the
//! entry crate builds from the repository's files, so a missing corpus still tests.

use spark_fuzz_entry::{seeds, TARGETS};
use std::path::Path;

fn replay_dir(target: &str, f: fn(&[u8]), sub: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(sub).join(target);
    let Ok(rd) = std::fs::read_dir(&dir) else { return 0 };
    let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    for p in &files {
        // (a running fuzzer may remove a file it reduced meanwhile)
        let Ok(data) = std::fs::read(p) else { continue };
        eprintln!("{}", p.display());
        f(&data);
    }
    files.len()
}

fn replay(target: &str) {
    let f = TARGETS.iter().find(|(n, _)| *n == target).expect("target").1;
    for (_, s) in seeds(target) {
        f(&s);
    }
    let c = replay_dir(target, f, "corpus");
    let r = replay_dir(target, f, "regressions");
    eprintln!("{target}: {c} corpus files, {r} regressions");
}

#[test]
fn loader() {
    replay("loader");
    spark_fuzz_entry::loader(spark_fuzz_entry::demo_blob());
}

#[test]
fn loader_structured() {
    replay("loader_structured");
}

#[test]
fn tokenizer() {
    replay("tokenizer");
}

#[test]
fn convert() {
    replay("convert");
}

#[test]
fn ffi() {
    replay("ffi");
}

/// `cargo test -p spark-fuzz-entry --test replay -- --ignored write_seeds` writes the seeds
/// into `fuzz/corpus/<target>/seed_*` (the starting corpus of `cargo fuzz run`).
#[test]
#[ignore]
fn write_seeds() {
    for (t, _) in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(t);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds(t) {
            std::fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
        }
    }
}
