//! Fuzzing on stable Rust, without cargo-fuzz: the fuzz crates (`crates/*/fuzz`, cargo-fuzz
//! layout, `libfuzzer-sys` targets) are built with the coverage instrumentation cargo-fuzz asks
//! rustc for, and the libFuzzer binaries are run directly.
//!
//! - `smoke()`: part of `cargo xtask test`. Builds every target and runs each for
//!   [`SMOKE_SECONDS`]; a crash fails the suite and leaves the input under
//!   `crates/<crate>/fuzz/artifacts/<target>/`.
//! - `cargo xtask fuzz`: lists the targets. `cargo xtask fuzz <target> [SECONDS]`: a long run
//!   (until Ctrl-C without SECONDS), growing `crates/<crate>/fuzz/corpus/<target>/`, the same
//!   corpus `cargo +nightly fuzz run <target>` would use. `cargo xtask fuzz --smoke`: only the
//!   smoke.
//!
//! No AddressSanitizer (that needs nightly): every fuzzed crate is `#![forbid(unsafe_code)]`, so
//! the bugs to find are panics, overflows (debug assertions are on), hangs and runaway memory.

use crate::{run, target_dir, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

/// Seconds each target runs in the test suite's smoke.
const SMOKE_SECONDS: u32 = 5;

/// What cargo-fuzz passes to rustc (its `--sanitizer none` build), plus debug assertions.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Cdebug-assertions";

/// One fuzz target: the fuzz crate's folder and the `[[bin]]` name.
struct Target {
    dir: PathBuf,
    name: String,
}

impl Target {
    fn binary(&self, triple: &str) -> PathBuf {
        fuzz_target_dir()
            .join(triple)
            .join("release")
            .join(&self.name)
    }
    fn corpus(&self) -> PathBuf {
        self.dir.join("corpus").join(&self.name)
    }
    fn artifacts(&self) -> PathBuf {
        self.dir.join("artifacts").join(&self.name)
    }
}

fn fuzz_target_dir() -> PathBuf {
    target_dir().join("fuzz")
}

/// Every `crates/*/fuzz` crate (and `bridge/fuzz`, if there is one), with its `[[bin]]` targets.
fn fuzz_crates() -> Result<Vec<(PathBuf, Vec<Target>)>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("crates")
        .map_err(|e| format!("cannot list crates/: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("fuzz")))
        .chain([PathBuf::from("bridge/fuzz")])
        .filter(|d| d.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    let mut crates = Vec::new();
    for dir in dirs {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .map_err(|e| format!("cannot read {}/Cargo.toml: {e}", dir.display()))?;
        let mut targets = Vec::new();
        let mut in_bin = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin {
                if let Some(name) = line
                    .strip_prefix("name = \"")
                    .and_then(|r| r.strip_suffix('"'))
                {
                    targets.push(Target {
                        dir: dir.clone(),
                        name: name.to_string(),
                    });
                    in_bin = false;
                }
            }
        }
        crates.push((dir, targets));
    }
    Ok(crates)
}

fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run rustc -vV: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .ok_or_else(|| "rustc -vV printed no host triple".to_string())
}

/// libFuzzer (in libfuzzer-sys) is C++: install a compiler only if there is none.
fn ensure_cxx() -> Result {
    let have = |c: &str| Command::new(c).arg("--version").output().is_ok();
    if have("c++") || have("g++") || have("clang++") {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "g++"]))
}

/// Build every target of one fuzz crate. `--target` keeps the instrumentation flags off build
/// scripts and proc macros, as cargo-fuzz does.
fn build(dir: &Path, triple: &str) -> Result {
    run(crate::cargo()
        .args(["build", "--release", "--bins", "--target", triple])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(fuzz_target_dir())
        .env("RUSTFLAGS", RUSTFLAGS)
        // The workspace's wasm rustflags and any user RUSTFLAGS must not leak in.
        .env_remove("CARGO_ENCODED_RUSTFLAGS"))
}

fn libfuzzer(t: &Target, triple: &str, seconds: Option<u32>) -> Result<Command> {
    for d in [t.corpus(), t.artifacts()] {
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let mut cmd = Command::new(t.binary(triple));
    cmd.arg(format!(
        "-artifact_prefix={}/",
        t.artifacts().to_string_lossy()
    ))
    .arg("-rss_limit_mb=2048")
    .arg("-timeout=10")
    .arg("-print_final_stats=1");
    if let Some(s) = seconds {
        cmd.arg(format!("-max_total_time={s}"));
    }
    cmd.arg(t.corpus());
    Ok(cmd)
}

/// The test suite's smoke: build everything, run every target briefly, two at a time (the CI
/// machine has two cores). Any crash, leak of memory or timeout fails it.
pub fn smoke() -> Result {
    let started = Instant::now();
    ensure_cxx()?;
    let triple = host_triple()?;
    let crates = fuzz_crates()?;
    for (dir, _) in &crates {
        build(dir, &triple)?;
    }
    let built = started.elapsed().as_secs_f64();
    let targets: Vec<&Target> = crates.iter().flat_map(|(_, t)| t).collect();
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let mut failed = Vec::new();
    for batch in targets.chunks(parallel) {
        let mut running: Vec<(&Target, Child)> = Vec::new();
        for t in batch {
            let mut cmd = libfuzzer(t, &triple, Some(SMOKE_SECONDS))?;
            let log = fuzz_target_dir().join(format!("{}.log", t.name));
            let file = std::fs::File::create(&log)
                .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
            let err = file
                .try_clone()
                .map_err(|e| format!("cannot reopen {}: {e}", log.display()))?;
            println!("==> fuzz smoke: {} ({SMOKE_SECONDS} s)", t.name);
            let child = cmd
                .stdout(file)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start fuzz target {}: {e}", t.name))?;
            running.push((t, child));
        }
        for (t, mut child) in running {
            let status = child
                .wait()
                .map_err(|e| format!("fuzz target {}: {e}", t.name))?;
            let log = fuzz_target_dir().join(format!("{}.log", t.name));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let runs = text
                .lines()
                .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
                .map(str::trim)
                .unwrap_or("?");
            if status.success() {
                println!("    {}: ok, {runs} runs", t.name);
            } else {
                println!("{text}");
                failed.push(format!(
                    "{} ({status}; input saved in {}/, log in {})",
                    t.name,
                    t.artifacts().display(),
                    log.display()
                ));
            }
        }
    }
    println!(
        "fuzz smoke: {} targets, build {built:.0} s, total {:.0} s",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz targets failed: {}. Reproduce with `cargo xtask fuzz <target>` or run the \
             binary in {}/{triple}/release/ on the saved input.",
            failed.join("; "),
            fuzz_target_dir().display()
        ))
    }
}

/// `cargo xtask fuzz [<target> [SECONDS] | --smoke]`.
pub fn long_run(args: &[String]) -> Result {
    if args.first().map(String::as_str) == Some("--smoke") {
        return smoke();
    }
    let crates = fuzz_crates()?;
    let Some(name) = args.first() else {
        println!("fuzz targets (cargo xtask fuzz <target> [SECONDS]):");
        for (dir, targets) in &crates {
            for t in targets {
                println!("  {:<28} {}", t.name, dir.display());
            }
        }
        return Ok(());
    };
    let seconds = match args.get(1) {
        Some(s) => Some(
            s.parse::<u32>()
                .map_err(|_| format!("SECONDS must be a whole number, not {s:?}"))?,
        ),
        None => None,
    };
    let (dir, target) = crates
        .iter()
        .find_map(|(d, ts)| ts.iter().find(|t| &t.name == name).map(|t| (d, t)))
        .ok_or_else(|| format!("no fuzz target named {name:?}; `cargo xtask fuzz` lists them"))?;
    ensure_cxx()?;
    let triple = host_triple()?;
    build(dir, &triple)?;
    run(&mut libfuzzer(target, &triple, seconds)?)
}
