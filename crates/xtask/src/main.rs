//! `cargo xtask <command>`: the project's own scripts, in Rust so they run wherever cargo does.
//!
//! - `serve [--listen ADDR]`: install what is missing, build the wasm bundle and the bridge, and
//!   start a bridge serving the page (default http://127.0.0.1:8080) with its BitTorrent
//!   facilitator and web exit on.
//! - `test`: install what is missing, then run every check: rustfmt, clippy (native and wasm),
//!   the native unit and simulation tests, the wasm tests in headless Chromium, and the
//!   end-to-end tests (real Chromium pages against a real bridge).
//! - `bench`: print the benchmark figures (relay crypto, raw WebRTC throughput baseline, circuit
//!   and content throughput, a torrent through a facilitator against the baseline and librqbit's
//!   own rate, Kademlia lookups, relay cells/s with 1 and 1,001 circuits, bundle size).
//! - `build-web`: build only the wasm bundle into web/pkg.
//! - `fuzz [<target> [SECONDS]]`: list the fuzz targets, or fuzz one for a long run (see
//!   `fuzz.rs`; `test` runs every target for a few seconds).
//!
//! Each command installs what it needs on a fresh machine: the wasm32 target (rustup), the
//! `wasm-bindgen` CLI matching the `wasm-bindgen` crate in Cargo.lock (cargo install), Chromium and
//! chromedriver (apt-get) and the test harness's npm packages (npm ci).

// The scripts time whole runs; only the protocol core must not read the clock.
#![allow(clippy::disallowed_methods)]

mod fuzz;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    if let Err(e) = std::env::set_current_dir(&root) {
        eprintln!("xtask: cannot enter {}: {e}", root.display());
        return ExitCode::FAILURE;
    }
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("bench") => bench(),
        Some("build-web") => ensure_wasm_tools().and_then(|_| build_web()),
        Some("fuzz") => fuzz::long_run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <serve [--listen ADDR] | test [--skip-e2e] | bench | build-web | fuzz [TARGET [SECONDS]]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process too. Prefer it to the compile-time
    // value: a binary built from another checkout that shares the target directory would
    // otherwise work on that checkout.
    let here = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or(here)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Run a command, echoing it, and fail with a sentence if it fails.
fn run(cmd: &mut Command) -> Result {
    let shown = format!("{cmd:?}").replace('"', "");
    println!("\n==> {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed ({status})"))
    }
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

// ----- installing what is missing ------------------------------------------------------------

fn ensure_wasm_tools() -> Result {
    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    let want = locked_version("wasm-bindgen")?;
    let have = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) != Some(want.as_str()) {
        // Not --locked: the CLI's own lock file names a yanked webpki-roots.
        run(cargo().args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            &format!("={want}"),
        ]))?;
    }
    Ok(())
}

fn ensure_browser() -> Result {
    ensure_debian_packages(&[
        ("chromium", CHROMIUM),
        ("chromium-driver", CHROMEDRIVER),
        // Test videos (WebM VP9/Opus) are made on the spot by Debian's ffmpeg.
        ("ffmpeg", "/usr/bin/ffmpeg"),
        // Real BitTorrent software for the facilitator's tests (bridge/tests/facilitator.rs,
        // the e2e torrent tests and the torrent benchmark): a tracker, a torrent maker and a
        // seeder, all on loopback.
        ("opentracker", "/usr/bin/opentracker"),
        ("mktorrent", "/usr/bin/mktorrent"),
        ("aria2", "/usr/bin/aria2c"),
    ])
}

/// Install the Debian packages whose marker file is missing, with one `apt-get update`.
fn ensure_debian_packages(packages: &[(&str, &str)]) -> Result {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, marker)| !Path::new(marker).exists())
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q"])
        .args(&missing))
}

fn ensure_npm() -> Result {
    if Path::new("tests/node_modules/playwright-core").exists() {
        return Ok(());
    }
    run(Command::new("npm").args(["ci", "--prefix", "tests", "--no-audit", "--no-fund"]))
}

/// The version of `name` that Cargo.lock pins.
fn locked_version(name: &str) -> Result<String> {
    let lock = std::fs::read_to_string("Cargo.lock")
        .map_err(|e| format!("cannot read Cargo.lock: {e}"))?;
    let needle = format!("name = \"{name}\"\nversion = \"");
    let start = lock
        .find(&needle)
        .ok_or_else(|| format!("Cargo.lock does not pin {name}"))?
        + needle.len();
    let end = lock[start..]
        .find('"')
        .ok_or_else(|| "Cargo.lock is malformed".to_string())?;
    Ok(lock[start..start + end].to_string())
}

// ----- building ------------------------------------------------------------------------------

fn build_web() -> Result {
    run(cargo().args([
        "build",
        "-p",
        "onionmesh-browser",
        "--target",
        WASM_TARGET,
        "--profile",
        "wasm",
    ]))?;
    let wasm = target_dir()
        .join(WASM_TARGET)
        .join("wasm")
        .join("onionmesh_browser.wasm");
    // No function names and no producers section in what a visitor downloads (they are a
    // quarter of the gzipped bundle). Not binaryen's wasm-opt: Debian's (version 108) breaks the
    // externref table wasm-bindgen emits ("WebAssembly.Table.set(): Argument 1 is invalid for
    // table" at load), and its -Oz/-Os output gzips larger than this anyway (measured
    // 2026-11-30: 461-467 KB against 428 KB). binaryen 132 (from npm), tried too: its -Oz
    // output is 11 % smaller raw but 9 % larger gzipped (624 169 against 572 675 bytes,
    // 2026-11-30); --duplicate-function-elimination alone saves only 4 KB gzipped.
    run(Command::new("wasm-bindgen")
        .args([
            "--target",
            "web",
            "--out-dir",
            "web/pkg",
            "--remove-name-section",
            "--remove-producers-section",
        ])
        .arg(&wasm))
}

fn bridge_binary(profile: &str) -> PathBuf {
    target_dir().join(profile).join("onionmesh-bridge")
}

// ----- commands ------------------------------------------------------------------------------

fn serve(args: &[String]) -> Result {
    let mut listen = "127.0.0.1:8080".to_string();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--listen" {
            listen = it.next().cloned().ok_or("--listen needs an address")?;
        } else {
            rest.push(a.clone());
        }
    }
    ensure_wasm_tools()?;
    build_web()?;
    run(cargo().args(["build", "--profile", "native", "-p", "onionmesh-bridge"]))?;
    println!(
        "\nOpen http://{listen}/ in a browser (several tabs make a mesh); paste a share link, a \
         magnet link or a web address in \"Open a link\". Ctrl-C stops."
    );
    // Facilitator (BitTorrent) and web exit on, so a newcomer can open a magnet link at once
    // (both are the bridge's defaults; said here so that a changed default does not silently
    // turn them off). The exit still refuses private and loopback addresses.
    run(Command::new(bridge_binary("native"))
        .args(["--listen", &listen, "--static-dir", "web"])
        .args(["--facilitator", "on", "--exit", "on"])
        .args(rest))
}

fn test(args: &[String]) -> Result {
    let skip_e2e = args.iter().any(|a| a == "--skip-e2e");
    let started = Instant::now();
    ensure_wasm_tools()?;
    ensure_browser()?;
    ensure_npm()?;

    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo().args([
        "clippy",
        "-p",
        "onionmesh-browser",
        "--target",
        WASM_TARGET,
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Native: wire, crypto, node core, simulator, bridge (real WebSockets on loopback).
    run(cargo().args(["test", "--workspace"]))?;
    // Every cargo-fuzz target (crates/*/fuzz) for a few seconds each, on stable.
    fuzz::smoke()?;
    // wasm: the browser crate's tests, in headless Chromium through chromedriver.
    run(cargo()
        .args(["test", "-p", "onionmesh-browser", "--target", WASM_TARGET])
        .env("CHROMEDRIVER", CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "180")
        .env(
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        ))?;
    if !skip_e2e {
        build_web()?;
        run(cargo().args(["build", "-p", "onionmesh-bridge"]))?;
        // End to end: real Chromium pages against a real bridge, on loopback.
        run(Command::new("npm")
            .args(["test", "--prefix", "tests"])
            .env("ONIONMESH_BRIDGE", bridge_binary("debug"))
            .env("CHROMIUM", CHROMIUM))?;
    }
    println!(
        "\nAll checks passed in {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The bridge crate's `librqbit_rate` example (librqbit's own download rate, the torrent
/// benchmark's baseline) as `cargo build -p onionmesh-bridge --example librqbit_rate` leaves it.
fn librqbit_rate_binary(profile: &str) -> PathBuf {
    target_dir()
        .join(profile)
        .join("examples")
        .join("librqbit_rate")
}

fn bench() -> Result {
    ensure_wasm_tools()?;
    // Chromium and ffmpeg, and for the torrent benchmark opentracker, mktorrent and aria2c.
    ensure_browser()?;
    ensure_npm()?;
    build_web()?;
    // The bridge and, in the same profile so librqbit runs the same code in both, the
    // torrent benchmark's librqbit-alone baseline.
    run(cargo().args([
        "build",
        "-p",
        "onionmesh-bridge",
        "--bins",
        "--example",
        "librqbit_rate",
    ]))?;
    // Browser: relay crypto in wasm, raw WebRTC data-channel throughput (the baseline), 3-hop
    // circuit throughput, content time-to-first-byte/frame and download throughput, a torrent
    // through a facilitator against the raw baseline and librqbit's own rate, the bundle's size
    // (tests/bench/run.mjs says what each figure is; BENCH_ONLY=torrent runs one section).
    run(Command::new("node")
        .arg("tests/bench/run.mjs")
        .env("ONIONMESH_BRIDGE", bridge_binary("debug"))
        .env("LIBRQBIT_RATE", librqbit_rate_binary("debug"))
        .env("CHROMIUM", CHROMIUM))?;
    // Kademlia: lookup rounds and messages for N = 100, 1,000 and 10,000 beside log2 N.
    run(cargo().args([
        "run",
        "--profile",
        "native",
        "-p",
        "onionmesh-kad",
        "--example",
        "lookup_bench",
    ]))?;
    // Onion relay crypto, cells per second on one core.
    run(cargo().args(["bench", "-p", "onionmesh-onion", "--bench", "relay"]))
}
