//! # onionmesh-bridge: the tokio driver around the rendezvous
//!
//! The bridge serves the onionmesh page (static files) and, on `GET /ws`, WebSocket connections
//! from browsers. All protocol decisions are made by the sans-IO
//! [`onionmesh_rendezvous::Rendezvous`]; this binary only moves bytes and time in and out of it:
//!
//! - [`serve`]: the accept loop, hyper's HTTP/1 server with a header-read timeout;
//! - [`limits`]: the admission gate: per-address caps, `--max-connections`, the open-file
//!   budget ([`files`]), and eviction of the oldest unfinished connections when room runs short;
//! - [`http`]: the axum router, static files;
//! - [`conn`]: one task per WebSocket, running the link's secure channel (a handshake bound to
//!   the bridge's and the node's identities, then ChaCha20-Poly1305 on every message) and
//!   enforcing the transport rules (binary frames only, at most `--max-frame` bytes);
//! - [`hub`]: the one task that owns the rendezvous, fed through a bounded channel, writing to
//!   each connection through a bounded queue and dropping peers that read too slowly.
//!
//! The bridge's identity is new at every start unless `--key-file` keeps it; its ID is logged at
//! start-up, and a page can pin it (`?bridge-id=<ID>` on the page URL).
//!
//! Start-up prints exactly one line to stdout, `onionmesh bridge listening on http://IP:PORT`;
//! everything else is logged to stderr.

mod cli;
mod conn;
mod error;
mod facilitator;
mod federation;
mod files;
mod http;
mod hub;
mod limits;
mod serve;

use clap::Parser;
use cli::Args;
use error::BridgeError;
use http::AppState;
use hub::{Clock, Hub, HUB_QUEUE};
use limits::{Gate, GateConfig};
use onionmesh_crypto::Identity;
use onionmesh_rendezvous::{Rendezvous, RendezvousConfig};
use onionmesh_wire::BridgeAddr;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// How long shutdown waits for connections to finish their close handshakes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Files for HTTP connections (two each: the socket and a static file being sent) on top of one
/// per WebSocket: the most the connections may use even where the open-file limit allows more,
/// since every connection also costs memory.
const HTTP_FILES: usize = 512;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_logging(&args.log_level) {
        eprintln!("onionmesh-bridge: {e}");
        return ExitCode::from(2);
    }
    // Before the runtime opens its first file.
    let files = files::apply(args.open_file_limit);
    // A current-thread runtime: all protocol work happens in the single hub task anyway (the
    // core is single-threaded by design), and per-connection work is a copy and a channel send.
    // More worker threads would add contention and nondeterminism before any measurement showed
    // the bridge needs them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("{}", BridgeError::Runtime(e));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, files)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) -> Result<(), BridgeError> {
    let filter = EnvFilter::try_new(level).map_err(|e| BridgeError::LogFilter {
        level: level.to_owned(),
        reason: e.to_string(),
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// The bridge's identity: from `--key-file` (created if missing), or fresh for this run. Two
/// copies of it, one for the rendezvous and one for the link handshakes (an `Identity` is
/// deliberately not `Clone`).
fn identities(key_file: Option<&std::path::Path>) -> Result<(Identity, Identity), BridgeError> {
    // `None` for the rare 32 bytes that are not a valid secret scalar (probability 2^-128).
    let both = |seed: [u8; 32]| Some((Identity::from_seed(seed)?, Identity::from_seed(seed)?));
    let fresh = || -> Result<([u8; 32], (Identity, Identity)), BridgeError> {
        loop {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(BridgeError::Entropy)?;
            if let Some(pair) = both(seed) {
                return Ok((seed, pair));
            }
        }
    };
    let Some(path) = key_file else {
        return Ok(fresh()?.1);
    };
    let err = |reason: String| BridgeError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed)
                .map_err(|e| err(format!("is not 64 hex characters ({e})")))?;
            both(seed).ok_or_else(|| err("does not hold a valid secp256k1 secret key".into()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (seed, pair) = fresh()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(path)
                .and_then(|mut f| writeln!(f, "{}", hex::encode(seed)))
                .map_err(|e| err(format!("could not be created: {e}")))?;
            info!("created a new bridge identity in {}", path.display());
            Ok(pair)
        }
        Err(e) => Err(err(format!("could not be read: {e}"))),
    }
}

async fn run(args: Args, files: files::FileLimit) -> Result<(), BridgeError> {
    let (identity, link_identity) = identities(args.key_file.as_deref())?;
    let link_identity = Arc::new(link_identity);
    info!(
        "bridge ID {} (short {}); pages can pin it with ?bridge-id={}",
        identity.id(),
        identity.id().short(),
        identity.id()
    );
    // Install the handlers before serving, so a signal can never be missed or kill us mid-way.
    let stop = signals::Stop::install()?;

    // Before listening, so no page connects before the hub can answer it.
    let cache = CacheDir::open(args.fac.cache_dir.clone())?;
    let facilitator = start_facilitator(&args.fac, cache.path()).await?;

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| BridgeError::Bind {
            addr: args.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(BridgeError::LocalAddr)?;
    announce(local)?;
    if !args.static_dir.is_dir() {
        warn!(
            "the static directory {} does not exist; only /ws will work (set --static-dir)",
            args.static_dir.display()
        );
    }

    let advertise = match args.advertise.clone() {
        Some(addr) => addr,
        // A socket address is far below MAX_ADDR, but a failure is still a sentence.
        None => {
            let addr = format!("ws://{local}/ws");
            BridgeAddr::new(addr.clone())
                .map_err(|source| BridgeError::Advertise { addr, source })?
        }
    };
    info!("known to other bridges and the DHT as {advertise}");
    let cfg = RendezvousConfig {
        max_peers: args.max_connections,
        frames_per_sec: args.rate,
        burst: args.burst,
        hello_timeout: Duration::from_millis(args.hello_timeout),
        addr: advertise,
        ..RendezvousConfig::default()
    };
    let mut dht_seed = [0u8; 32];
    getrandom::getrandom(&mut dht_seed).map_err(BridgeError::Entropy)?;
    let clock = Clock::start();
    let (hub_tx, hub_rx) = mpsc::channel(HUB_QUEUE);
    let hub_task = tokio::spawn(hub::run(
        Hub::with_facilitator(
            Rendezvous::with_dht(identity, cfg, dht_seed, clock.now()),
            facilitator,
        ),
        hub_rx,
        clock,
    ));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let next_conn = Arc::new(AtomicU64::new(1));
    for peer in &args.peer_bridges {
        tokio::spawn(federation::dial_forever(
            federation::ws_url(peer),
            hub_tx.clone(),
            next_conn.clone(),
            shutdown_rx.clone(),
            args.max_frame,
            link_identity.clone(),
        ));
    }
    let gate = Gate::new(gate_config(&args, &files));
    let state = AppState {
        hub: hub_tx,
        gate: gate.clone(),
        next_conn,
        shutdown: shutdown_rx.clone(),
        max_frame: args.max_frame,
        identity: link_identity,
        handshake_timeout: Duration::from_millis(args.hello_timeout),
        first_message_timeout: Duration::from_millis(args.first_message_timeout),
    };
    let app = http::router(state, &args.static_dir);
    info!(
        "serving {} and WebSocket /ws (max {} connections, {} frames/s burst {}, frames up to {} bytes)",
        args.static_dir.display(),
        args.max_connections,
        args.rate,
        args.burst,
        args.max_frame
    );

    let server = serve::Server {
        router: app,
        gate,
        header_timeout: Duration::from_millis(args.header_timeout),
        shutdown: shutdown_rx,
    };
    let stopper = async move {
        let signal = stop.wait().await;
        info!("{signal} received: shutting down");
        // Stops the accept loop and tells every connection task to close its socket.
        let _ = shutdown_tx.send(true);
    };
    tokio::join!(server.run(listener), stopper);

    // The server no longer accepts; the hub ends once the last connection task has closed its
    // socket and dropped its sender.
    if tokio::time::timeout(DRAIN_TIMEOUT, hub_task).await.is_err() {
        warn!(
            "some connections did not close within {} s; exiting anyway",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    drop(cache);
    info!("bridge stopped");
    Ok(())
}

/// The cache directory: `--cache-dir`, or a fresh one under the system's temporary directory
/// that is removed when this is dropped.
struct CacheDir {
    path: std::path::PathBuf,
    ours: bool,
}

impl CacheDir {
    fn open(given: Option<std::path::PathBuf>) -> Result<Self, BridgeError> {
        let (path, ours) = match given {
            Some(path) => (path, false),
            None => {
                let mut b = [0u8; 8];
                getrandom::getrandom(&mut b).map_err(BridgeError::Entropy)?;
                let name = format!("onionmesh-bridge-{}", hex::encode(b));
                (std::env::temp_dir().join(name), true)
            }
        };
        std::fs::create_dir_all(&path).map_err(|source| BridgeError::CacheDir {
            path: path.display().to_string(),
            source,
        })?;
        Ok(CacheDir { path, ours })
    }

    fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        if self.ours {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                warn!("could not remove the cache {}: {e}", self.path.display());
            }
        }
    }
}

/// The facilitator and the web exit as the flags say.
async fn start_facilitator(
    fac: &cli::FacilitatorArgs,
    cache_dir: &std::path::Path,
) -> Result<facilitator::Facilitator, BridgeError> {
    use facilitator::{torrent, web, CacheBudget, Facilitator, Services};
    let budget = CacheBudget::new(fac.cache_max_bytes);
    let torrents = if fac.facilitator.is_on() {
        let cfg = torrent::TorrentConfig {
            cache_dir: cache_dir.join("torrents"),
            max_torrents: fac.max_torrents,
            metadata_timeout: Duration::from_millis(fac.metadata_timeout),
            trackers: fac.trackers.clone(),
            dht: fac.bt_dht.is_on(),
            listen_port: fac.bt_listen_port,
            keep: fac.keep,
            corrupt_piece: fac.test_corrupt_piece,
        };
        let t = torrent::Torrents::start(cfg, budget.clone()).await?;
        info!(
            "facilitator on: BitTorrent with DHT {}, {} extra trackers, at most {} torrents, \
             metadata within {} ms",
            if fac.bt_dht.is_on() { "on" } else { "off" },
            fac.trackers.len(),
            fac.max_torrents,
            fac.metadata_timeout
        );
        if let Some(n) = fac.test_corrupt_piece {
            warn!("--test-corrupt-piece {n}: piece {n} of every torrent is served corrupted");
        }
        Some(t)
    } else {
        info!("facilitator off");
        None
    };
    let web = if fac.exit.is_on() {
        let cfg = web::WebConfig {
            cache_dir: cache_dir.to_path_buf(),
            max_fetches: fac.max_fetches,
            max_bytes: fac.exit_max_bytes,
            allow_private: fac.exit_allow_private,
            allow_hosts: fac.exit_allow.clone(),
        };
        let w = web::WebExit::new(cfg, budget.clone()).map_err(BridgeError::WebClient)?;
        info!(
            "web exit on: at most {} fetches of {} bytes each{}",
            fac.max_fetches,
            fac.exit_max_bytes,
            if fac.exit_allow_private {
                "; private addresses ALLOWED (--exit-allow-private)"
            } else {
                ""
            }
        );
        Some(w)
    } else {
        info!("web exit off");
        None
    };
    info!(
        "cache {} (at most {} bytes)",
        cache_dir.display(),
        fac.cache_max_bytes
    );
    Ok(Facilitator::new(
        Services { torrents, web },
        fac.max_requests_per_peer,
    ))
}

/// The gate's limits from the flags and the open-file limit; logs both.
fn gate_config(args: &Args, files: &files::FileLimit) -> GateConfig {
    let cap = args.max_connections.saturating_add(HTTP_FILES);
    let file_budget = files.budget(cap);
    info!(
        "{files}; {} files kept in reserve, connections may use {file_budget}",
        files.reserve()
    );
    if file_budget < cap {
        warn!(
            "the open-file limit leaves room for {file_budget} files, less than the {cap} that \
             --max-connections {} and page loads may need; when they run short the oldest \
             connections without a secured link give way. Raise the hard limit (ulimit -Hn, \
             or LimitNOFILE= under systemd) to allow more",
            args.max_connections
        );
    }
    info!(
        "at most {} connections per address ({} unfinished); request heads within {} ms, the \
         first handshake message within {} ms",
        args.max_per_address,
        args.max_unfinished_per_address,
        args.header_timeout,
        args.first_message_timeout.min(args.hello_timeout)
    );
    GateConfig {
        max_websockets: args.max_connections,
        file_budget,
        max_per_address: args.max_per_address,
        max_unfinished_per_address: args.max_unfinished_per_address,
    }
}

/// The one stdout line test harnesses and scripts parse.
fn announce(local: SocketAddr) -> Result<(), BridgeError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "onionmesh bridge listening on http://{local}").map_err(BridgeError::Stdout)?;
    out.flush().map_err(BridgeError::Stdout)
}

mod signals {
    use crate::error::BridgeError;

    /// SIGINT (Ctrl-C) and SIGTERM.
    #[cfg(unix)]
    pub struct Stop {
        int: tokio::signal::unix::Signal,
        term: tokio::signal::unix::Signal,
    }

    #[cfg(unix)]
    impl Stop {
        pub fn install() -> Result<Self, BridgeError> {
            use tokio::signal::unix::{signal, SignalKind};
            let int = signal(SignalKind::interrupt()).map_err(|source| BridgeError::Signal {
                signal: "SIGINT",
                source,
            })?;
            let term = signal(SignalKind::terminate()).map_err(|source| BridgeError::Signal {
                signal: "SIGTERM",
                source,
            })?;
            Ok(Stop { int, term })
        }

        /// Waits for the first of the two; returns its name.
        pub async fn wait(mut self) -> &'static str {
            tokio::select! {
                _ = self.int.recv() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
    }

    /// Elsewhere only Ctrl-C.
    #[cfg(not(unix))]
    pub struct Stop;

    #[cfg(not(unix))]
    impl Stop {
        pub fn install() -> Result<Self, BridgeError> {
            Ok(Stop)
        }

        pub async fn wait(self) -> &'static str {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                // Without a handler we can only run until killed.
                Err(_) => std::future::pending().await,
            }
        }
    }
}
