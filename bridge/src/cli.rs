//! The command line.

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use onionmesh_wire::{BridgeAddr, MAX_ADDR, MAX_SIGNAL_FRAME};
use std::net::SocketAddr;
use std::path::PathBuf;

/// onionmesh bridge: serves the onionmesh page over HTTP and introduces the browsers that
/// connect to `/ws` to each other (signed hello, peer lookup, WebRTC introduction).
///
/// After binding it prints one line to stdout,
/// `onionmesh bridge listening on http://<ip>:<port>`, and logs everything else to stderr.
/// Ctrl-C or SIGTERM closes every connection and exits with status 0.
#[derive(Debug, Parser)]
#[command(name = "onionmesh-bridge", version)]
pub struct Args {
    /// Address to listen on. Port 0 picks a free port; the chosen one is printed on stdout.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory served over HTTP: `/` is its index.html, `.wasm` files go out as
    /// application/wasm.
    #[arg(long, value_name = "DIR", default_value = "web")]
    pub static_dir: PathBuf,

    /// What to log on stderr: a level (error, warn, info, debug, trace) or tracing directives
    /// such as `onionmesh_bridge=debug,info`.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,

    /// Most WebSocket connections at once. When all are taken, the oldest one still in its link
    /// handshake gives way to a new one; if every one has a secured link, the new one is closed
    /// with code 1013 and the reason. The open-file limit may allow fewer (logged at start).
    #[arg(long, value_name = "N", default_value_t = 1024,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,

    /// Most connections (HTTP or WebSocket) from one address, an IPv4 address or an IPv6 /64.
    /// Past it the address's oldest connection without a secured link gives way; if it has
    /// none, the new one is refused.
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_per_address: usize,

    /// Most unfinished connections from one address: HTTP connections that have not sent a
    /// request head, WebSockets before their link handshake. Past it the address's oldest
    /// unfinished connection gives way.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_unfinished_per_address: usize,

    /// The process's open-file soft limit (every connection is a file). Default: raised at start
    /// towards the hard limit. Connections may use it minus a reserve (logged at start); when
    /// that runs short the oldest connections without a secured link give way.
    #[arg(long, value_name = "N",
          value_parser = RangedU64ValueParser::<u64>::new().range(64..))]
    pub open_file_limit: Option<u64>,

    /// Milliseconds an HTTP connection has to send a complete request head, from opening or
    /// from the end of the previous request, before it is closed.
    #[arg(long, value_name = "MS", default_value_t = 5_000,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub header_timeout: u64,

    /// Milliseconds a new WebSocket has to send the link handshake's first message (pages send
    /// it at once). At most --hello-timeout.
    #[arg(long, value_name = "MS", default_value_t = 3_000,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub first_message_timeout: u64,

    /// Frames per second each peer may send, sustained. A peer that exceeds it (beyond
    /// `--burst`) is disconnected with an error.
    #[arg(long, value_name = "FRAMES", default_value_t = 50,
          value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub rate: u32,

    /// Frames a peer may send in a burst above the sustained `--rate`.
    #[arg(long, value_name = "N", default_value_t = 200,
          value_parser = RangedU64ValueParser::<u32>::new().range(1..))]
    pub burst: u32,

    /// Largest WebSocket message, in bytes; a larger one closes that connection. The protocol
    /// never needs more than 32768 (and a hello needs 106).
    #[arg(long, value_name = "BYTES", default_value_t = MAX_SIGNAL_FRAME,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_SIGNAL_FRAME as u64))]
    pub max_frame: usize,

    /// File holding the bridge's long-term identity key (64 hex characters). Created, readable
    /// by its owner only, if it does not exist. Without it the bridge makes a new identity at
    /// every start, and pages that pinned the old bridge ID refuse the new one.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Milliseconds a new WebSocket has to finish the link handshake, and then again to send
    /// its signed hello, before it is closed.
    #[arg(long, value_name = "MS", default_value_t = 10_000,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub hello_timeout: u64,

    /// Another bridge to federate with, as its WebSocket address (`ws://host:port/ws`; a missing
    /// path means `/ws`). Repeatable. The bridge dials each one (again every 2 s while it is
    /// down), and they share their registered peers, relay introductions and DHT traffic.
    #[arg(long = "peer-bridge", value_name = "URL")]
    pub peer_bridges: Vec<String>,

    /// The address other bridges and the DHT know this bridge by. Default:
    /// `ws://<listen address>/ws` (right for loopback tests; set it behind NAT or TLS).
    /// 1 to 256 bytes, as peer records and the DHT carry it.
    #[arg(long, value_name = "URL", value_parser = parse_advertise)]
    pub advertise: Option<BridgeAddr>,

    /// The facilitator and the web exit (issue 10).
    #[command(flatten)]
    pub fac: FacilitatorArgs,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

/// The facilitator's and the web exit's flags: what a page's ORDB may ask this bridge to fetch
/// from outside the mesh, and the limits on it.
#[derive(Debug, Clone, clap::Args)]
pub struct FacilitatorArgs {
    /// Fetch BitTorrent content (magnet links, infohashes) for the pages registered here. Off:
    /// every torrent request ends UNAVAILABLE, "this bridge is not a facilitator".
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub facilitator: Switch,

    /// Fetch http(s) URLs for the pages registered here (the web exit). Off: every URL request
    /// ends UNAVAILABLE, "this bridge is not a web exit".
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub exit: Switch,

    /// Directory for torrent pieces and web files while they are served. Default: a fresh
    /// directory under the system's temporary directory, removed at exit.
    #[arg(long, value_name = "PATH")]
    pub cache_dir: Option<PathBuf>,

    /// Most bytes the cache may hold: the files of every torrent being served that a request
    /// touched, plus every web file being fetched. A request that would pass it ends BUSY.
    #[arg(long, value_name = "BYTES", default_value_t = 4 << 30,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub cache_max_bytes: u64,

    /// Most torrents fetched at once (a torrent asked for by several requests counts once).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub max_torrents: usize,

    /// Most web files fetched at once by the exit.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub max_fetches: usize,

    /// Most facilitated requests open at once on one page's connection.
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000))]
    pub max_requests_per_peer: usize,

    /// TCP port on which BitTorrent peers may connect to the facilitator. Default: none (the
    /// facilitator only dials out; it never uploads anyway).
    #[arg(long, value_name = "PORT")]
    pub bt_listen_port: Option<u16>,

    /// Find BitTorrent peers through the mainline DHT (off in tests).
    #[arg(long, value_name = "on|off", default_value = "on")]
    pub bt_dht: Switch,

    /// A BitTorrent tracker tried for every torrent, besides the magnet link's own `tr`
    /// trackers. Repeatable.
    #[arg(long = "tracker", value_name = "URL", value_parser = parse_tracker)]
    pub trackers: Vec<reqwest::Url>,

    /// Milliseconds to wait for a torrent's metadata (the info dictionary) from its peers before
    /// the request ends NOT_FOUND with a sentence.
    #[arg(long, value_name = "MS", default_value_t = 30_000,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub metadata_timeout: u64,

    /// Keep a torrent (and its downloaded files, in the cache) after its last request ends,
    /// instead of deleting both. The facilitator never uploads either way.
    #[arg(long)]
    pub keep: bool,

    /// Tests only: let the web exit fetch from loopback, private, link-local and other
    /// non-public addresses.
    #[arg(long)]
    pub exit_allow_private: bool,

    /// A host name or IP address the web exit may fetch from even when it resolves to a
    /// non-public address. Repeatable.
    #[arg(long = "exit-allow", value_name = "HOST")]
    pub exit_allow: Vec<String>,

    /// Largest web file the exit fetches, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub exit_max_bytes: u64,

    /// Tests only: flip one byte of piece N of every torrent served, so the page's piece check
    /// must catch it.
    #[arg(long, value_name = "N", hide = true)]
    pub test_corrupt_piece: Option<u32>,
}

/// `--tracker`: an http(s) or udp URL.
fn parse_tracker(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" | "udp" => Ok(url),
        other => Err(format!(
            "a tracker URL starts with http://, https:// or udp://, not {other}://"
        )),
    }
}

/// `--advertise`: refused at start-up with a sentence when it cannot travel in a peer record.
fn parse_advertise(s: &str) -> Result<BridgeAddr, String> {
    if s.is_empty() {
        return Err(
            "a bridge address cannot be empty; leave out --advertise for the default".into(),
        );
    }
    BridgeAddr::new(s).map_err(|_| {
        format!(
            "the address is {} bytes, but peer records and the DHT carry at most {MAX_ADDR}; \
             give a shorter URL",
            s.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let a = Args::parse_from(["onionmesh-bridge"]);
        assert_eq!(a.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(a.static_dir, PathBuf::from("web"));
        assert_eq!(a.log_level, "info");
        assert_eq!((a.max_connections, a.rate, a.burst), (1024, 50, 200));
        assert_eq!(a.max_frame, 32768);
        assert_eq!((a.max_per_address, a.max_unfinished_per_address), (64, 16));
        assert_eq!((a.header_timeout, a.first_message_timeout), (5_000, 3_000));
        assert!(a.first_message_timeout < a.hello_timeout);
        let core = onionmesh_rendezvous::RendezvousConfig::default();
        assert_eq!(u128::from(a.hello_timeout), core.hello_timeout.as_millis());
    }

    #[test]
    fn limits_are_checked() {
        assert!(Args::try_parse_from(["b", "--max-frame", "40000"]).is_err());
        assert!(Args::try_parse_from(["b", "--rate", "0"]).is_err());
        assert!(Args::try_parse_from(["b", "--max-connections", "0"]).is_err());
        assert!(Args::try_parse_from(["b", "--max-per-address", "0"]).is_err());
        assert!(Args::try_parse_from(["b", "--header-timeout", "0"]).is_err());
        let a =
            Args::try_parse_from(["b", "--listen", "127.0.0.1:0", "--max-frame", "4096"]).unwrap();
        assert_eq!(a.max_frame, 4096);
        let a = Args::try_parse_from([
            "b",
            "--peer-bridge",
            "ws://127.0.0.1:1/ws",
            "--peer-bridge",
            "ws://127.0.0.1:2",
        ])
        .unwrap();
        assert_eq!(a.peer_bridges.len(), 2);
        assert_eq!(a.advertise, None);
    }

    #[test]
    fn facilitator_flags() {
        let a = Args::try_parse_from(["b"]).unwrap();
        assert!(a.fac.facilitator.is_on() && a.fac.exit.is_on() && a.fac.bt_dht.is_on());
        assert_eq!(a.fac.metadata_timeout, 30_000);
        let a = Args::try_parse_from([
            "b",
            "--facilitator",
            "off",
            "--bt-dht",
            "off",
            "--tracker",
            "http://127.0.0.1:6969/announce",
            "--tracker",
            "udp://127.0.0.1:6969",
            "--exit-allow",
            "files.lan",
            "--test-corrupt-piece",
            "3",
        ])
        .unwrap();
        assert!(!a.fac.facilitator.is_on() && !a.fac.bt_dht.is_on());
        assert_eq!(a.fac.trackers.len(), 2);
        assert_eq!(a.fac.exit_allow, ["files.lan"]);
        assert_eq!(a.fac.test_corrupt_piece, Some(3));
        let e = Args::try_parse_from(["b", "--tracker", "ftp://x/"]).unwrap_err();
        assert!(e.to_string().contains("udp://"), "{e}");
        assert!(Args::try_parse_from(["b", "--exit", "maybe"]).is_err());
    }

    #[test]
    fn advertise_must_fit_a_peer_record() {
        let a = Args::try_parse_from(["b", "--advertise", "wss://bridge.example/ws"]).unwrap();
        assert_eq!(a.advertise.unwrap(), "wss://bridge.example/ws");
        let long = format!("wss://{}/ws", "b".repeat(MAX_ADDR));
        let e = Args::try_parse_from(["b", "--advertise", &long]).unwrap_err();
        assert!(e.to_string().contains("at most 256"), "{e}");
        let e = Args::try_parse_from(["b", "--advertise", ""]).unwrap_err();
        assert!(e.to_string().contains("cannot be empty"), "{e}");
    }
}
