//! Why the bridge could not start or keep serving. Problems with one peer are not errors here:
//! they close that peer's connection and are logged by the hub.

use std::io;
use std::net::SocketAddr;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BridgeError {
    #[error("--log-level {level:?} is not a valid log filter ({reason}); try info or debug")]
    LogFilter { level: String, reason: String },
    #[error("could not start the async runtime: {0}")]
    Runtime(io::Error),
    #[error("could not get randomness from the operating system for the bridge identity: {0}")]
    Entropy(getrandom::Error),
    #[error("the key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("could not listen on {addr}: {source}; is another program using that port?")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(
        "the default advertised address {addr} does not fit a peer record ({source}); \
         set a shorter one with --advertise"
    )]
    Advertise {
        addr: String,
        source: onionmesh_wire::WireError,
    },
    #[error("could not read the address the listener is bound to: {0}")]
    LocalAddr(io::Error),
    #[error("could not write the listening line to stdout: {0}")]
    Stdout(io::Error),
    #[error("could not install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: io::Error,
    },
    #[error(
        "the cache directory {path} cannot be made: {source}; choose another with --cache-dir"
    )]
    CacheDir { path: String, source: io::Error },
    #[error(transparent)]
    Torrents(#[from] crate::facilitator::torrent::SessionError),
    #[error("the web exit's HTTP client could not start: {0}; or switch it off with --exit off")]
    WebClient(reqwest::Error),
}
