//! Board set-up of the kernel test, from the shared board table (`firmware/boards`, as
//! `firmware/app` does it): the one board feature that is on (`mps2-an386` by default)
//! selects `firmware/boards/<board>/memory.x` (copied where cortex-m-rt's `link.x` finds
//! it) and the board's nominal instructions per SysTick tick; the target must be the
//! board's.
use std::{env, fs, path::PathBuf, process};

use spark_boards::Runs;

const BOARDS: [&str; 4] = ["mps2-an386", "mps2-an500", "mps2-an505", "mps3-an547"];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    println!("cargo::rerun-if-changed=build.rs");
    let target = env::var("TARGET").unwrap_or_default();
    let board = spark_boards::select_board(&BOARDS, spark_boards::cargo_feature_on, &target)?;
    let name = board.name;
    let Runs::Qemu { instructions_per_tick_milli, .. } = board.runs else {
        return Err(format!("{name} is not a QEMU board"));
    };
    let src = manifest.join("../boards").join(board.memory_x());
    println!("cargo::rerun-if-changed={}", src.display());
    fs::copy(&src, out.join("memory.x")).map_err(|e| format!("{}: {e}", src.display()))?;
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rustc-link-arg=-Tlink.x");
    let gen = format!(
        "/// The board (firmware/boards).\npub const BOARD: &str = {name:?};\n/// Its core.\npub const CORE: &str = {:?};\n\
         /// Nominal executed instructions per SysTick tick under QEMU, thousandths.\npub const IPT_MILLI: u64 = {instructions_per_tick_milli};\n",
        board.core
    );
    fs::write(out.join("generated.rs"), gen).map_err(|e| e.to_string())?;
    Ok(())
}
