//! The web exit: fetch an http(s) URL with reqwest and serve it as 64 KiB pieces.
//!
//! Exit policy: only http and https; never a loopback, private, link-local, unspecified,
//! multicast or other non-public address (unless `--exit-allow-private`, or the host is in
//! `--exit-allow`). Host names are resolved by the exit's own resolver, which drops refused
//! addresses before reqwest connects, so the connection goes only to a checked address (a DNS
//! answer cannot swap in a private one later); IP literals, in the URL or in a redirect, are
//! checked before the request. Sizes are bounded by `--exit-max-bytes`, concurrent fetches by
//! `--max-fetches`, every wait by a timeout.
//!
//! The body streams into a cache file that is removed when the request ends. With a
//! `Content-Length` the descriptor goes out at once and pieces are served as their bytes
//! arrive; without one the whole body is fetched first, since the descriptor's size must be
//! exact.

use super::answer::Stop;
use super::cache::{CacheBudget, Reservation};
use onionmesh_wire::db::{DbSource, WebMeta, MAX_MIME};
use reqwest::dns::{Name, Resolve, Resolving};
use reqwest::{redirect, Url};
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Longest wait for a TCP (and TLS) connection to the web server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the response head after connecting.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the next bytes of the body.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most redirects followed.
pub const MAX_REDIRECTS: usize = 5;

/// The exit's settings (from the command line).
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub cache_dir: PathBuf,
    pub max_fetches: usize,
    pub max_bytes: u64,
    /// `--exit-allow-private`: allow every address.
    pub allow_private: bool,
    /// `--exit-allow`: hosts allowed whatever their address.
    pub allow_hosts: Vec<String>,
}

/// Why the exit policy refuses an address: a sentence fragment ("a loopback address"), or
/// `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => {
            let [first, second, ..] = a.octets();
            if a.is_loopback() {
                Some("a loopback address")
            } else if a.is_private() {
                Some("a private address")
            } else if a.is_link_local() {
                Some("a link-local address")
            } else if a.is_unspecified() || first == 0 {
                Some("an unspecified (\"this network\") address")
            } else if a.is_multicast() {
                Some("a multicast address")
            } else if a.is_broadcast() {
                Some("the broadcast address")
            } else if first == 100 && (64..128).contains(&second) {
                Some("a shared (carrier-grade NAT) address")
            } else if first >= 240 {
                Some("a reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            if a.is_loopback() {
                Some("a loopback address")
            } else if a.is_unspecified() {
                Some("the unspecified address")
            } else if a.is_multicast() {
                Some("a multicast address")
            } else if a.is_unique_local() {
                Some("a private (unique local) address")
            } else if a.is_unicast_link_local() {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

/// The exit policy refused a host's address.
#[derive(Debug, thiserror::Error)]
#[error(
    "this exit refuses to fetch from {host} ({ip}): {what}, and its policy allows public \
     addresses only"
)]
pub struct Refused {
    host: String,
    ip: IpAddr,
    what: &'static str,
}

/// Who may be fetched from.
#[derive(Debug)]
struct Policy {
    allow_private: bool,
    allow_hosts: Vec<String>,
}

impl Policy {
    fn host_allowed(&self, host: &str) -> bool {
        self.allow_private
            || self
                .allow_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']')))
    }

    /// Check an IP-literal host (names are checked by the resolver).
    fn check_url(&self, url: &Url) -> Result<(), Refused> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
            Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
            _ => return Ok(()),
        };
        let host = url.host_str().unwrap_or_default();
        if self.host_allowed(host) {
            return Ok(());
        }
        match non_public(ip) {
            Some(what) => Err(Refused {
                host: host.to_owned(),
                ip,
                what,
            }),
            None => Ok(()),
        }
    }
}

/// reqwest's resolver: the system's, minus the addresses the policy refuses.
struct CheckedResolver {
    policy: Arc<Policy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_checked(
            self.policy.clone(),
            name.as_str().to_owned(),
        ))
    }
}

type BoxError = Box<dyn StdError + Send + Sync>;

/// The addresses of `host` the policy allows; an error naming the first refused one if none.
async fn resolve_checked(
    policy: Arc<Policy>,
    host: String,
) -> Result<reqwest::dns::Addrs, BoxError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    if policy.host_allowed(&host) {
        return Ok(Box::new(addrs.into_iter()));
    }
    let public: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| non_public(a.ip()).is_none())
        .collect();
    match (public.is_empty(), addrs.first()) {
        (false, _) => Ok(Box::new(public.into_iter())),
        (true, Some(first)) => Err(Box::new(Refused {
            host,
            ip: first.ip(),
            what: non_public(first.ip()).unwrap_or("a refused address"),
        })),
        (true, None) => Err(format!("{host} has no address").into()),
    }
}

/// How far a fetch has come.
#[derive(Debug, Clone, Default)]
struct Progress {
    written: u64,
    done: bool,
    error: Option<String>,
}

/// The bridge's web exit.
pub struct WebExit {
    client: reqwest::Client,
    policy: Arc<Policy>,
    cfg: WebConfig,
    fetches: Arc<Semaphore>,
    cache: Arc<CacheBudget>,
}

impl WebExit {
    /// Errors: reqwest could not build its client (no TLS roots, for instance).
    pub fn new(cfg: WebConfig, cache: Arc<CacheBudget>) -> Result<Arc<Self>, reqwest::Error> {
        let policy = Arc::new(Policy {
            allow_private: cfg.allow_private,
            allow_hosts: cfg.allow_hosts.clone(),
        });
        let redirect_policy = policy.clone();
        let client = reqwest::Client::builder()
            .dns_resolver(CheckedResolver {
                policy: policy.clone(),
            })
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                if !matches!(attempt.url().scheme(), "http" | "https") {
                    let scheme = attempt.url().scheme().to_owned();
                    return attempt.error(format!("a redirect to a {scheme}: URL"));
                }
                match redirect_policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(STALL_TIMEOUT)
            .user_agent(concat!("onionmesh-bridge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(WebExit {
            client,
            policy,
            fetches: Arc::new(Semaphore::new(cfg.max_fetches)),
            cfg,
            cache,
        }))
    }

    /// Start fetching the URL a `DB_SOURCE` names; returns once the size is known.
    pub async fn open(&self, source: &DbSource) -> Result<WebFile, Stop> {
        let url = Url::parse(&source.uri)
            .map_err(|e| Stop::bad_request(format!("the web address cannot be read: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Stop::bad_request(format!(
                "this exit fetches http:// and https:// URLs, not {}:",
                url.scheme()
            )));
        }
        if DbSource::web_hash_name(&source.uri) != source.hash_name {
            return Err(Stop::bad_request(
                "the hash_name is not the web hash_name of this URL",
            ));
        }
        self.policy
            .check_url(&url)
            .map_err(|r| Stop::unavailable(r.to_string()))?;
        let permit = self.fetches.clone().try_acquire_owned().map_err(|_| {
            Stop::busy(format!(
                "this exit is already fetching {} files, its most (--max-fetches); try \
                 another or later",
                self.cfg.max_fetches
            ))
        })?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let response = timeout(RESPONSE_TIMEOUT, self.client.get(url).send())
            .await
            .map_err(|_| {
                Stop::unavailable(format!(
                    "{host} did not answer within {} s",
                    RESPONSE_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| Stop::unavailable(fetch_error(&host, &e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(Stop::unavailable(format!(
                "the web server answered HTTP {status}"
            )));
        }
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|m| !m.is_empty() && m.len() <= MAX_MIME)
            .unwrap_or("application/octet-stream")
            .to_owned();
        let length = response.content_length();
        if let Some(len) = length.filter(|&l| l > self.cfg.max_bytes) {
            return Err(Stop::unavailable(too_large(len, self.cfg.max_bytes)));
        }
        let reservation = self.cache.reserve(length.unwrap_or(0)).ok_or_else(|| {
            Stop::busy(format!(
                "this exit's cache is full ({} of {} bytes, --cache-max-bytes); try another \
                 or later",
                self.cache.used(),
                self.cache.max()
            ))
        })?;
        let path = self.cfg.cache_dir.join(format!("web-{}", cache_name()));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| Stop::unavailable(format!("the exit cannot write its cache: {e}")))?;
        let (tx, progress) = watch::channel(Progress::default());
        let task = tokio::spawn(download(
            response,
            file,
            length,
            self.cfg.max_bytes,
            reservation,
            tx,
        ));
        let mut served = WebFile {
            descriptor: Vec::new(),
            size: 0,
            reader: None,
            path,
            progress,
            task,
            _permit: permit,
        };
        let size = match length {
            Some(len) => len,
            None => served.wait_for_end().await?,
        };
        let meta = WebMeta {
            size,
            mime: onionmesh_wire::BoundedString::lossy(&mime),
            url: source.uri.clone(),
        };
        served.size = size;
        served.descriptor = meta.encode();
        Ok(served)
    }
}

fn too_large(len: u64, max: u64) -> String {
    format!("the file is {len} bytes, more than this exit's limit of {max} (--exit-max-bytes)")
}

/// A sentence for a failed request: the policy's refusal if that was it, else the error chain.
fn fetch_error(host: &str, e: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
    let mut chain = Vec::new();
    while let Some(c) = cause {
        if let Some(refused) = c.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        chain.push(c.to_string());
        cause = c.source();
    }
    if e.is_timeout() {
        return format!("{host} did not answer in time");
    }
    format!("could not fetch from {host}: {}", chain.join(": "))
}

/// A cache file name no other fetch of this process (or another bridge sharing the
/// directory) uses.
fn cache_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Stream the body into `file`, telling `progress` how far it got.
async fn download(
    mut response: reqwest::Response,
    mut file: tokio::fs::File,
    length: Option<u64>,
    max_bytes: u64,
    mut reservation: Reservation,
    progress: watch::Sender<Progress>,
) {
    let result = pump(
        &mut response,
        &mut file,
        length,
        max_bytes,
        &mut reservation,
        &progress,
    )
    .await;
    progress.send_modify(|p| match result {
        Ok(()) => p.done = true,
        Err(e) => p.error = Some(e),
    });
    // The reservation lives as long as the task; the file is removed by the WebFile.
    drop(reservation);
}

/// The body into the file, chunk by chunk; a sentence on failure.
async fn pump(
    response: &mut reqwest::Response,
    file: &mut tokio::fs::File,
    length: Option<u64>,
    max_bytes: u64,
    reservation: &mut Reservation,
    progress: &watch::Sender<Progress>,
) -> Result<(), String> {
    let limit = length.unwrap_or(max_bytes);
    let mut written = 0u64;
    let cache_error = |e: std::io::Error| format!("the exit cannot write its cache: {e}");
    loop {
        let chunk = match timeout(STALL_TIMEOUT, response.chunk()).await {
            Err(_) => {
                return Err(format!(
                    "the web server sent nothing for {} s",
                    STALL_TIMEOUT.as_secs()
                ))
            }
            Ok(Err(e)) => return Err(format!("the web server's answer broke off: {e}")),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        let after = written + chunk.len() as u64;
        if after > limit {
            return Err(match length {
                Some(len) => format!("the web server sent more than the {len} bytes it announced"),
                None => format!(
                    "the file is larger than this exit's limit of {max_bytes} bytes \
                     (--exit-max-bytes)"
                ),
            });
        }
        if length.is_none() && !reservation.grow(chunk.len() as u64) {
            return Err("this exit's cache is full (--cache-max-bytes)".into());
        }
        file.write_all(&chunk).await.map_err(cache_error)?;
        file.flush().await.map_err(cache_error)?;
        written = after;
        progress.send_modify(|p| p.written = written);
    }
    match length {
        Some(len) if len != written => Err(format!(
            "the web server sent {written} bytes of the {len} it announced"
        )),
        _ => Ok(()),
    }
}

/// One request's web file.
pub struct WebFile {
    descriptor: Vec<u8>,
    size: u64,
    reader: Option<tokio::fs::File>,
    path: PathBuf,
    progress: watch::Receiver<Progress>,
    task: JoinHandle<()>,
    _permit: OwnedSemaphorePermit,
}

impl WebFile {
    /// The encoded [`WebMeta`].
    pub fn descriptor(&self) -> &[u8] {
        &self.descriptor
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Wait for the whole body; its size.
    async fn wait_for_end(&mut self) -> Result<u64, Stop> {
        let p = self
            .progress
            .wait_for(|p| p.done || p.error.is_some())
            .await
            .map_err(|_| Stop::unavailable("the fetch stopped"))?
            .clone();
        match p.error {
            Some(e) => Err(Stop::unavailable(e)),
            None => Ok(p.written),
        }
    }

    /// Fill `buf` with the file's bytes from `at`, waiting for them to arrive.
    pub async fn read_at(&mut self, at: u64, buf: &mut [u8]) -> Result<(), Stop> {
        let end = at + buf.len() as u64;
        let p = self
            .progress
            .wait_for(|p| p.written >= end || p.error.is_some())
            .await
            .map_err(|_| Stop::unavailable("the fetch stopped"))?
            .clone();
        if p.written < end {
            return Err(Stop::unavailable(
                p.error.unwrap_or_else(|| "the fetch stopped".into()),
            ));
        }
        let cache_error =
            |e: std::io::Error| Stop::unavailable(format!("the exit cannot read its cache: {e}"));
        if self.reader.is_none() {
            self.reader = Some(
                tokio::fs::File::open(&self.path)
                    .await
                    .map_err(cache_error)?,
            );
        }
        let Some(reader) = self.reader.as_mut() else {
            // Set just above.
            return Err(Stop::unavailable("the exit cannot read its cache"));
        };
        reader
            .seek(std::io::SeekFrom::Start(at))
            .await
            .map_err(cache_error)?;
        reader.read_exact(buf).await.map_err(cache_error)?;
        Ok(())
    }
}

impl Drop for WebFile {
    fn drop(&mut self) {
        self.task.abort();
        // Best effort: the cache directory is removed at exit anyway when it is our own.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn policy_refuses_non_public_addresses() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
        ];
        for ip in refused {
            assert!(non_public(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
        assert_eq!(
            non_public(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Some("a loopback address")
        );
        assert!(non_public(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))).is_none());
    }

    #[test]
    fn allow_list_and_literals() {
        let p = Policy {
            allow_private: false,
            allow_hosts: vec!["files.lan".into(), "10.0.0.5".into()],
        };
        let refused = p.check_url(&Url::parse("http://127.0.0.1:8/x").unwrap());
        let e = refused.unwrap_err().to_string();
        assert!(e.contains("127.0.0.1") && e.contains("loopback"), "{e}");
        assert!(p
            .check_url(&Url::parse("http://10.0.0.5/x").unwrap())
            .is_ok());
        assert!(p.check_url(&Url::parse("http://[::1]/x").unwrap()).is_err());
        assert!(p
            .check_url(&Url::parse("http://example.org/x").unwrap())
            .is_ok());
        assert!(p.host_allowed("FILES.lan"));
        let open = Policy {
            allow_private: true,
            allow_hosts: vec![],
        };
        assert!(open
            .check_url(&Url::parse("http://127.0.0.1/").unwrap())
            .is_ok());
    }
}
