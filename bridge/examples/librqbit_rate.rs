//! librqbit's own download rate of one torrent: the baseline the torrent benchmark
//! (`tests/bench/run.mjs`, `cargo xtask bench`) compares a page's magnet-link download with.
//!
//! Downloads a magnet link with librqbit configured as the bridge's facilitator configures it
//! (same crate features: rustls, upload disabled; no DHT, no local service discovery, no
//! persistence, a current-thread tokio runtime) into a fresh directory, and prints one JSON
//! line on stdout:
//!
//! ```text
//! {"bytes":N,"seconds":S,"metadata_seconds":M,"data_seconds":D}
//! ```
//!
//! - `bytes`: the torrent's total length (every file is fetched);
//! - `seconds`: from calling `add_torrent` to librqbit reporting the torrent finished, the
//!   metadata exchange included (as a page's time from `download(magnet)` includes it);
//! - `metadata_seconds`: from `add_torrent` to its return (the magnet link's metadata resolved
//!   from a peer);
//! - `data_seconds`: `seconds - metadata_seconds`, the pieces alone.
//!
//! The session's own start (before `add_torrent`) is not timed: the bridge's session exists
//! before any request. Errors (no metadata within `--metadata-timeout-ms`, not finished within
//! `--timeout-s`) are a sentence on stderr and exit status 1.
//!
//! ```text
//! cargo run -p onionmesh-bridge --example librqbit_rate -- \
//!     --out /tmp/dl --tracker http://127.0.0.1:6969/announce 'magnet:?xt=urn:btih:...'
//! ```

// A benchmark times a whole run; only the protocol core must not read the clock.
#![allow(clippy::disallowed_methods)]

use clap::Parser;
use librqbit::{AddTorrent, AddTorrentOptions, AddTorrentResponse, Session, SessionOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Download one magnet link with librqbit and print how long it took.
#[derive(Debug, Parser)]
struct Args {
    /// The magnet link (its `tr=` trackers are used, besides `--tracker`).
    magnet: String,
    /// An empty directory to download into (created if missing; the caller removes it).
    #[arg(long)]
    out: PathBuf,
    /// Extra tracker announce URL, tried for the torrent (repeatable).
    #[arg(long)]
    tracker: Vec<reqwest::Url>,
    /// Give up if no peer sent the metadata within this many milliseconds.
    #[arg(long, default_value_t = 30_000)]
    metadata_timeout_ms: u64,
    /// Give up if the whole download has not finished within this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// librqbit's log on stderr, as a tracing filter (e.g. `librqbit=debug`).
    #[arg(long, default_value = "warn")]
    log_level: String,
}

/// Seconds and bytes of one download.
struct Rate {
    bytes: u64,
    seconds: f64,
    metadata_seconds: f64,
}

async fn download(args: &Args) -> Result<Rate, String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let opts = SessionOptions {
        dht: None,
        persistence: None,
        fastresume: false,
        listen: None,
        trackers: args.tracker.iter().cloned().collect(),
        disable_upload: true,
        disable_local_service_discovery: true,
        ..Default::default()
    };
    let session = Session::new_with_opts(args.out.clone(), opts)
        .await
        .map_err(|e| format!("the librqbit session could not start: {e:#}"))?;
    let add_opts = AddTorrentOptions {
        overwrite: true,
        ..Default::default()
    };
    let started = Instant::now();
    let added = timeout(
        Duration::from_millis(args.metadata_timeout_ms),
        session.add_torrent(AddTorrent::from_url(args.magnet.as_str()), Some(add_opts)),
    )
    .await
    .map_err(|_| {
        format!(
            "no peer sent the torrent's metadata within {} ms",
            args.metadata_timeout_ms
        )
    })?
    .map_err(|e| format!("librqbit could not add the torrent: {e:#}"))?;
    let metadata_seconds = started.elapsed().as_secs_f64();
    let handle = match added {
        AddTorrentResponse::Added(_, h) | AddTorrentResponse::AlreadyManaged(_, h) => h,
        AddTorrentResponse::ListOnly(_) => {
            return Err("librqbit listed the torrent instead of adding it".into())
        }
    };
    timeout(
        Duration::from_secs(args.timeout_s),
        handle.wait_until_completed(),
    )
    .await
    .map_err(|_| {
        let s = handle.stats();
        format!(
            "the download did not finish within {} s ({} of {} bytes)",
            args.timeout_s, s.progress_bytes, s.total_bytes
        )
    })?
    .map_err(|e| format!("the download failed: {e:#}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = handle.stats().total_bytes;
    session.stop().await;
    Ok(Rate {
        bytes,
        seconds,
        metadata_seconds,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Err(e) => {
            eprintln!("librqbit_rate: --log-level {}: {e}.", args.log_level);
            return ExitCode::from(2);
        }
    }
    // Current-thread, as the bridge runs its facilitator.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("librqbit_rate: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(download(&args)) {
        Ok(r) => {
            let line = serde_json::json!({
                "bytes": r.bytes,
                "seconds": r.seconds,
                "metadata_seconds": r.metadata_seconds,
                "data_seconds": r.seconds - r.metadata_seconds,
            });
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("librqbit_rate: {e}.");
            ExitCode::FAILURE
        }
    }
}
