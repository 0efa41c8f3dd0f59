//! Who may hold the bridge's sockets: the admission gate.
//!
//! Every accepted TCP connection is admitted here before the HTTP server reads a byte of it, and
//! the gate tracks it until the last handle ([`Admission`]) is dropped. A connection moves through
//! [`Stage`]s: waiting for its first request head, served at least one request, a WebSocket in its
//! link handshake, a WebSocket whose link is secured. The gate enforces:
//!
//! - the open-file budget: sockets (and the static file an HTTP response may hold open) stay
//!   below the process's open-file limit minus a reserve, so `accept` never meets `EMFILE`;
//! - `--max-connections` WebSockets;
//! - per address (an IPv4 address, or an IPv6 /64): at most `--max-per-address` connections, of
//!   which at most `--max-unfinished-per-address` are unfinished (no request head yet, or a
//!   WebSocket before its link handshake).
//!
//! When a limit is reached the oldest connection that has not secured a link gives way to the new
//! one (evicted: its task is told through [`Admission::evicted`] and closes it), first those that
//! never sent a request head, then WebSockets in their handshake, then HTTP connections that were
//! served. A secured link is never evicted; when only those hold the room, the new connection is
//! refused with a [`Refusal`] sentence.
//!
//! The gate is synchronous (one mutex, no I/O) so its rules are unit-tested without sockets.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};

/// The gate's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Most WebSockets at once (`--max-connections`), secured or not.
    pub max_websockets: usize,
    /// Open files the connections may use: the open-file soft limit minus a reserve for the
    /// listener, logs, the runtime and refusals. See [`Stage::files`].
    pub file_budget: usize,
    /// Most connections from one address (`--max-per-address`).
    pub max_per_address: usize,
    /// Most unfinished connections from one address (`--max-unfinished-per-address`).
    pub max_unfinished_per_address: usize,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Accepted; no complete request head yet.
    Head,
    /// At least one HTTP request was read (a page load, possibly kept alive).
    Served,
    /// Upgraded to a WebSocket; the link handshake has not finished.
    Handshaking,
    /// A WebSocket whose link handshake proved the node's identity. Never evicted.
    Linked,
}

impl Stage {
    /// Open files a connection in this stage may use: an HTTP connection its socket and the
    /// static file a response may be streaming; a WebSocket its socket.
    pub fn files(self) -> usize {
        match self {
            Stage::Head | Stage::Served => 2,
            Stage::Handshaking | Stage::Linked => 1,
        }
    }

    /// Whether it counts against `--max-unfinished-per-address`.
    pub fn unfinished(self) -> bool {
        matches!(self, Stage::Head | Stage::Handshaking)
    }

    fn websocket(self) -> bool {
        matches!(self, Stage::Handshaking | Stage::Linked)
    }

    /// Eviction order, lowest first; `None` for a stage that is never evicted.
    fn rank(self) -> Option<usize> {
        match self {
            Stage::Head => Some(0),
            Stage::Handshaking => Some(1),
            Stage::Served => Some(2),
            Stage::Linked => None,
        }
    }
}

/// The unit the per-address limits count: an IPv4 address, or the /64 network of an IPv6 address
/// (one subscriber usually holds a whole /64). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrKey {
    V4([u8; 4]),
    V6Net([u8; 8]),
}

impl AddrKey {
    pub fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4.octets()),
                None => {
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&v6.octets()[..8]);
                    AddrKey::V6Net(net)
                }
            },
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(o) => write!(f, "{}.{}.{}.{}", o[0], o[1], o[2], o[3]),
            AddrKey::V6Net(n) => {
                for pair in n.chunks(2) {
                    write!(f, "{:x}:", u16::from_be_bytes([pair[0], pair[1]]))?;
                }
                write!(f, ":/64")
            }
        }
    }
}

/// Why a connection was not let in. `Display` is the sentence the client gets (an HTTP 503 body
/// or a WebSocket close reason, at most 123 bytes) and the bridge logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection this address may hold has a secured link.
    AddressFull { max: usize },
    /// Every WebSocket slot holds a secured link.
    Full { max: usize },
    /// The open-file budget is used up by secured links.
    NoFiles,
    /// The connection was evicted for a newer one before it had secured a link.
    GaveWay,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::AddressFull { max } => write!(
                f,
                "your address already holds {max} connections to this bridge, the most one \
                 address may; try again later"
            ),
            Refusal::Full { max } => write!(
                f,
                "this bridge is full ({max} connections); try again later or use another bridge"
            ),
            Refusal::NoFiles => write!(
                f,
                "this bridge has no room for another connection; try again later or use another \
                 bridge"
            ),
            Refusal::GaveWay => write!(
                f,
                "the bridge is busy: this connection had not finished connecting and gave way to \
                 a newer one; try again"
            ),
        }
    }
}

/// What happened at the gate since the last [`Gate::take_tally`], for the periodic log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub refused: u64,
    /// Evicted connections, by the stage they were in: Head, Handshaking, Served.
    pub evicted: [u64; 3],
    /// Connections closed because no request head arrived within `--header-timeout`.
    pub head_timeouts: u64,
}

/// How full the gate is (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub connections: usize,
    pub websockets: usize,
    pub files: usize,
}

/// A connection's place in the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Ticket(u64);

struct Entry {
    key: AddrKey,
    stage: Stage,
    evict: watch::Sender<bool>,
}

#[derive(Default)]
struct PerAddr {
    open: usize,
    /// Unfinished connections, oldest first.
    unfinished: BTreeSet<Ticket>,
    /// Connections that may be evicted, oldest first.
    evictable: BTreeSet<Ticket>,
}

struct Inner {
    cfg: GateConfig,
    next: u64,
    entries: HashMap<Ticket, Entry>,
    /// Evictable tickets by [`Stage::rank`], oldest first.
    by_rank: [BTreeSet<Ticket>; 3],
    per_addr: HashMap<AddrKey, PerAddr>,
    usage: Usage,
    tally: Tally,
    /// Whether a refusal was logged at WARN since the last tally.
    warned: bool,
}

/// The admission gate. Shared by the accept loop and every connection.
pub struct Gate {
    inner: Mutex<Inner>,
}

impl Gate {
    pub fn new(cfg: GateConfig) -> Arc<Gate> {
        Arc::new(Gate {
            inner: Mutex::new(Inner {
                cfg,
                next: 0,
                entries: HashMap::new(),
                by_rank: Default::default(),
                per_addr: HashMap::new(),
                usage: Usage::default(),
                tally: Tally::default(),
                warned: false,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock (plain map and set updates), so a poisoned lock
        // can only come from a bug elsewhere; the data is still consistent, keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a new TCP connection from `ip`, evicting older unfinished connections if a limit is
    /// reached.
    pub fn admit(self: &Arc<Gate>, ip: IpAddr) -> Result<Admission, Refusal> {
        let key = AddrKey::of(ip);
        let mut g = self.lock();
        let cfg = g.cfg;
        let (open, unfinished) = g
            .per_addr
            .get(&key)
            .map_or((0, 0), |a| (a.open, a.unfinished.len()));
        if open >= cfg.max_per_address || unfinished >= cfg.max_unfinished_per_address {
            // The address's oldest unfinished connection gives way, else its oldest served one;
            // one with a secured link never does.
            let victim = g
                .per_addr
                .get(&key)
                .and_then(|a| a.unfinished.first().or(a.evictable.first()).copied());
            match victim {
                Some(t) => g.evict(t),
                None => {
                    g.tally.refused += 1;
                    return Err(Refusal::AddressFull {
                        max: cfg.max_per_address,
                    });
                }
            }
        }
        while g.usage.files + Stage::Head.files() > cfg.file_budget {
            match g.oldest_evictable(None) {
                Some(t) => g.evict(t),
                None => {
                    g.tally.refused += 1;
                    return Err(Refusal::NoFiles);
                }
            }
        }
        let ticket = Ticket(g.next);
        g.next += 1;
        let (evict, evicted) = watch::channel(false);
        g.insert(ticket, key, Stage::Head, evict);
        drop(g);
        Ok(Admission(Arc::new(Held {
            gate: self.clone(),
            ticket,
            evicted,
        })))
    }

    /// How full the gate is.
    pub fn usage(&self) -> Usage {
        self.lock().usage
    }

    /// What happened since the last call; resets the counts.
    pub fn take_tally(&self) -> Tally {
        let mut g = self.lock();
        g.warned = false;
        std::mem::take(&mut g.tally)
    }

    /// True for the first caller since the last tally: that refusal is logged at WARN, the
    /// others only counted.
    pub fn should_warn(&self) -> bool {
        !std::mem::replace(&mut self.lock().warned, true)
    }

    fn release(&self, ticket: Ticket) {
        self.lock().remove(ticket);
    }
}

impl Inner {
    fn insert(&mut self, ticket: Ticket, key: AddrKey, stage: Stage, evict: watch::Sender<bool>) {
        self.entries.insert(ticket, Entry { key, stage, evict });
        self.account(ticket, key, stage, true);
    }

    /// Add (`on`) or remove a connection's share of every count.
    fn account(&mut self, ticket: Ticket, key: AddrKey, stage: Stage, on: bool) {
        let addr = self.per_addr.entry(key).or_default();
        let set = |s: &mut BTreeSet<Ticket>| {
            if on {
                s.insert(ticket);
            } else {
                s.remove(&ticket);
            }
        };
        if stage.unfinished() {
            set(&mut addr.unfinished);
        }
        if let Some(rank) = stage.rank() {
            set(&mut addr.evictable);
            set(&mut self.by_rank[rank]);
        }
        let step = |n: &mut usize, by: usize| {
            *n = if on { *n + by } else { n.saturating_sub(by) };
        };
        step(&mut addr.open, 1);
        if addr.open == 0 {
            self.per_addr.remove(&key);
        }
        step(&mut self.usage.connections, 1);
        step(&mut self.usage.files, stage.files());
        if stage.websocket() {
            step(&mut self.usage.websockets, 1);
        }
    }

    fn remove(&mut self, ticket: Ticket) -> Option<Entry> {
        let entry = self.entries.remove(&ticket)?;
        self.account(ticket, entry.key, entry.stage, false);
        Some(entry)
    }

    /// Take `ticket` out of every count at once and tell its task to close it.
    fn evict(&mut self, ticket: Ticket) {
        if let Some(entry) = self.remove(ticket) {
            if let Some(rank) = entry.stage.rank() {
                self.tally.evicted[rank] += 1;
            }
            if self.tally.evicted.iter().sum::<u64>() == 1 {
                warn!(
                    "the bridge is short of room: connections without a secured link are giving \
                     way to newer ones, first from {} (counts follow every few seconds; see \
                     --max-per-address, --max-unfinished-per-address, --open-file-limit)",
                    entry.key
                );
            }
            // Nobody listening means the task is already gone.
            let _ = entry.evict.send(true);
        }
    }

    /// The oldest evictable connection, lowest rank first; only WebSockets if `ranks` says so.
    fn oldest_evictable(&self, ranks: Option<&[usize]>) -> Option<Ticket> {
        let all = [0, 1, 2];
        let ranks = ranks.unwrap_or(&all);
        ranks.iter().find_map(|&r| self.by_rank[r].first().copied())
    }

    fn set_stage(&mut self, ticket: Ticket, stage: Stage) {
        let Some(entry) = self.entries.get(&ticket) else {
            return;
        };
        let (key, old) = (entry.key, entry.stage);
        if old == stage {
            return;
        }
        self.account(ticket, key, old, false);
        self.account(ticket, key, stage, true);
        if let Some(e) = self.entries.get_mut(&ticket) {
            e.stage = stage;
        }
    }
}

#[cfg(test)]
impl Inner {
    /// Panics if a count disagrees with the entries or a limit is exceeded.
    fn check(&self) {
        let mut usage = Usage::default();
        let mut per: HashMap<AddrKey, (usize, usize)> = HashMap::new();
        for e in self.entries.values() {
            usage.connections += 1;
            usage.files += e.stage.files();
            usage.websockets += usize::from(e.stage.websocket());
            let p = per.entry(e.key).or_default();
            p.0 += 1;
            p.1 += usize::from(e.stage.unfinished());
        }
        assert_eq!(usage, self.usage);
        assert!(usage.websockets <= self.cfg.max_websockets, "{usage:?}");
        for (key, (open, unfinished)) in &per {
            let a = &self.per_addr[key];
            assert_eq!((a.open, a.unfinished.len()), (*open, *unfinished));
            assert!(*open <= self.cfg.max_per_address);
            assert!(*unfinished <= self.cfg.max_unfinished_per_address);
        }
        assert_eq!(per.len(), self.per_addr.len());
        let ranked: usize = self.by_rank.iter().map(BTreeSet::len).sum();
        let evictable = self.entries.values().filter(|e| e.stage.rank().is_some());
        assert_eq!(ranked, evictable.count());
    }
}

struct Held {
    gate: Arc<Gate>,
    ticket: Ticket,
    evicted: watch::Receiver<bool>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gate.release(self.ticket);
    }
}

/// A connection's admission. Clones share it; the gate forgets the connection when the last clone
/// is dropped (or at once when it is evicted).
#[derive(Clone)]
pub struct Admission(Arc<Held>);

impl Admission {
    /// The connection read a complete request head.
    pub fn served(&self) {
        let mut g = self.0.gate.lock();
        if g.entries.get(&self.0.ticket).map(|e| e.stage) == Some(Stage::Head) {
            g.set_stage(self.0.ticket, Stage::Served);
        }
    }

    /// The connection asks to become a WebSocket. Takes a WebSocket slot, evicting the oldest
    /// WebSocket still in its handshake if all are taken, and counts it as unfinished again.
    /// `Err` if every slot holds a secured link.
    pub fn upgrade(&self) -> Result<(), Refusal> {
        let me = self.0.ticket;
        let mut g = self.0.gate.lock();
        let cfg = g.cfg;
        let Some(entry) = g.entries.get(&me) else {
            // Evicted meanwhile; its task is closing it.
            return Ok(());
        };
        let (key, stage) = (entry.key, entry.stage);
        if stage.websocket() {
            return Ok(());
        }
        if g.usage.websockets >= cfg.max_websockets {
            match g.oldest_evictable(Some(&[1])) {
                Some(t) => g.evict(t),
                None => {
                    g.tally.refused += 1;
                    return Err(Refusal::Full {
                        max: cfg.max_websockets,
                    });
                }
            }
        }
        if !stage.unfinished() {
            let addr = g.per_addr.get(&key);
            if addr.is_some_and(|a| a.unfinished.len() >= cfg.max_unfinished_per_address) {
                if let Some(t) = addr.and_then(|a| a.unfinished.first().copied()) {
                    g.evict(t);
                }
            }
        }
        g.set_stage(me, Stage::Handshaking);
        Ok(())
    }

    /// The WebSocket's link handshake succeeded: it can no longer be evicted.
    pub fn linked(&self) {
        self.0.gate.lock().set_stage(self.0.ticket, Stage::Linked);
    }

    /// Resolves once the gate has evicted this connection (never, if it is not evicted).
    pub async fn evicted(&self) {
        let mut rx = self.0.evicted.clone();
        if rx.wait_for(|gone| *gone).await.is_err() {
            // The gate dropped the sender without evicting (the connection was released).
            std::future::pending::<()>().await;
        }
    }

    /// The connection was closed for sending no request head in time (counted for the log).
    pub fn note_head_timeout(&self) {
        self.0.gate.lock().tally.head_timeouts += 1;
    }

    /// Whether the gate has evicted this connection.
    pub fn is_evicted(&self) -> bool {
        *self.0.evicted.borrow()
    }
}

/// How often the gate's counts are logged while anything is refused or evicted.
pub const TALLY_EVERY: Duration = Duration::from_secs(10);

/// A request extension on a connection the gate refused: every request on it is answered with
/// the refusal.
#[derive(Debug, Clone)]
pub struct Refused(pub Refusal);

/// One refusal a period at WARN, with what to do; the rest at DEBUG and in the tally line.
pub fn log_refusal(gate: &Gate, peer: SocketAddr, refusal: &Refusal) {
    if gate.should_warn() {
        warn!(
            "refusing a connection from {peer}: {refusal} (further refusals are counted every \
             {} s; see --max-connections, --max-per-address)",
            TALLY_EVERY.as_secs()
        );
    } else {
        debug!("refusing a connection from {peer}: {refusal}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn gate(
        max_websockets: usize,
        file_budget: usize,
        per_addr: usize,
        unfinished: usize,
    ) -> Arc<Gate> {
        Gate::new(GateConfig {
            max_websockets,
            file_budget,
            max_per_address: per_addr,
            max_unfinished_per_address: unfinished,
        })
    }

    #[test]
    fn an_address_past_its_unfinished_cap_loses_its_oldest() {
        let g = gate(100, 1000, 10, 3);
        let a: Vec<_> = (0..3).map(|_| g.admit(ip(1)).unwrap()).collect();
        let other = g.admit(ip(2)).unwrap();
        let fourth = g.admit(ip(1)).unwrap();
        assert!(a[0].is_evicted(), "the oldest from that address gives way");
        assert!(!a[1].is_evicted() && !a[2].is_evicted() && !fourth.is_evicted());
        assert!(!other.is_evicted(), "another address is untouched");
        assert_eq!(g.usage().connections, 4);
        assert_eq!(g.take_tally().evicted, [1, 0, 0]);
    }

    #[test]
    fn an_address_full_of_secured_links_is_refused_with_a_sentence() {
        let g = gate(100, 1000, 2, 2);
        let held: Vec<_> = (0..2)
            .map(|_| {
                let a = g.admit(ip(1)).unwrap();
                a.served();
                a.upgrade().unwrap();
                a.linked();
                a
            })
            .collect();
        let refusal = g.admit(ip(1)).err().unwrap();
        assert_eq!(refusal, Refusal::AddressFull { max: 2 });
        for r in [
            Refusal::AddressFull { max: 1_000_000 },
            Refusal::Full { max: 1_000_000 },
            Refusal::NoFiles,
            Refusal::GaveWay,
        ] {
            assert!(
                r.to_string().len() <= 123,
                "too long for a close frame: {r}"
            );
        }
        assert!(g.admit(ip(2)).is_ok());
        assert!(held.iter().all(|a| !a.is_evicted()));
    }

    #[test]
    fn the_file_budget_evicts_the_oldest_unfinished_first() {
        // Room for three HTTP connections (two files each).
        let g = gate(100, 6, 10, 10);
        let served = g.admit(ip(1)).unwrap();
        served.served();
        let hs = g.admit(ip(2)).unwrap();
        hs.upgrade().unwrap();
        let head = g.admit(ip(3)).unwrap();
        // 2 + 1 + 2 = 5 files; a fourth needs 2 more: the Head connection goes first although
        // it is the newest, then the handshaking WebSocket.
        let d = g.admit(ip(4)).unwrap();
        assert!(head.is_evicted() && !hs.is_evicted() && !served.is_evicted());
        let e = g.admit(ip(5)).unwrap();
        assert!(
            d.is_evicted(),
            "a Head connection still goes before a handshake"
        );
        let _f = g.admit(ip(6)).unwrap();
        assert!(e.is_evicted());
        assert_eq!(g.usage().files, 5);
        assert!(!hs.is_evicted());
    }

    #[test]
    fn secured_links_are_never_evicted() {
        // Two WebSocket slots and three files: two links leave no room for an HTTP connection.
        let g = gate(2, 3, 10, 10);
        let links: Vec<_> = (1..=2)
            .map(|i| {
                let a = g.admit(ip(i)).unwrap();
                a.upgrade().unwrap();
                a.linked();
                a
            })
            .collect();
        assert_eq!(g.usage().files, 2);
        assert_eq!(g.admit(ip(9)).err(), Some(Refusal::NoFiles));
        assert!(links.iter().all(|a| !a.is_evicted()));

        let g = gate(2, 100, 10, 10);
        let links: Vec<_> = (1..=2)
            .map(|i| {
                let a = g.admit(ip(i)).unwrap();
                a.upgrade().unwrap();
                a.linked();
                a
            })
            .collect();
        let http = g.admit(ip(9)).unwrap();
        assert_eq!(http.upgrade(), Err(Refusal::Full { max: 2 }));
        assert!(links.iter().all(|a| !a.is_evicted()));
        assert_eq!(g.take_tally().refused, 1);
    }

    #[test]
    fn a_full_set_of_websockets_gives_way_to_a_new_one_from_its_oldest_handshake() {
        let g = gate(2, 100, 10, 10);
        let linked = g.admit(ip(1)).unwrap();
        linked.upgrade().unwrap();
        linked.linked();
        let slow = g.admit(ip(2)).unwrap();
        slow.upgrade().unwrap();
        let new = g.admit(ip(3)).unwrap();
        assert_eq!(new.upgrade(), Ok(()));
        assert!(slow.is_evicted() && !linked.is_evicted());
        assert_eq!(g.usage().websockets, 2);
    }

    #[test]
    fn counts_return_to_zero() {
        let g = gate(10, 100, 10, 10);
        let a = g.admit(ip(1)).unwrap();
        let b = a.clone();
        a.upgrade().unwrap();
        drop(a);
        assert_eq!(g.usage().connections, 1, "a clone still holds it");
        b.linked();
        drop(b);
        assert_eq!(g.usage(), Usage::default());
        let c = g.admit(ip(1)).unwrap();
        let _d: Vec<_> = (0..10).map(|_| g.admit(ip(1)).unwrap()).collect();
        assert!(c.is_evicted());
        drop(c);
        drop(_d);
        assert_eq!(g.usage(), Usage::default());
        assert!(g.lock().per_addr.is_empty() && g.lock().entries.is_empty());
    }

    /// One step of a random connection history.
    #[derive(Debug, Clone)]
    enum Op {
        Admit(u8),
        Served(usize),
        Upgrade(usize),
        Linked(usize),
        Drop(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0u8..4).prop_map(Op::Admit),
            any::<usize>().prop_map(Op::Served),
            any::<usize>().prop_map(Op::Upgrade),
            any::<usize>().prop_map(Op::Linked),
            any::<usize>().prop_map(Op::Drop),
        ]
    }

    proptest::proptest! {
        /// Whatever connections do, the counts match the connections, no limit is exceeded
        /// (the file budget only by secured links, which are never evicted), and everything
        /// returns to zero.
        #[test]
        fn limits_hold_for_any_history(
            ops in proptest::collection::vec(op(), 1..200),
            (ws, files, per, unfinished) in (1usize..6, 2usize..14, 1usize..6, 1usize..4),
        ) {
            let g = gate(ws, files, per, unfinished);
            let mut held: Vec<(Admission, Stage)> = Vec::new();
            for op in ops {
                let pick = |i: usize| (!held.is_empty()).then(|| i % held.len());
                match op {
                    Op::Admit(a) => {
                        if let Ok(adm) = g.admit(ip(a)) {
                            held.push((adm, Stage::Head));
                        }
                    }
                    Op::Served(i) => if let Some(i) = pick(i) {
                        held[i].0.served();
                        if held[i].1 == Stage::Head { held[i].1 = Stage::Served; }
                    },
                    Op::Upgrade(i) => if let Some(i) = pick(i) {
                        if matches!(held[i].1, Stage::Head | Stage::Served)
                            && held[i].0.upgrade().is_ok()
                        {
                            held[i].1 = Stage::Handshaking;
                        }
                    },
                    Op::Linked(i) => if let Some(i) = pick(i) {
                        if held[i].1 == Stage::Handshaking && !held[i].0.is_evicted() {
                            held[i].0.linked();
                            held[i].1 = Stage::Linked;
                        }
                    },
                    Op::Drop(i) => if let Some(i) = pick(i) {
                        held.swap_remove(i);
                    },
                }
                g.lock().check();
                let linked_files: usize = held
                    .iter()
                    .filter(|(a, s)| *s == Stage::Linked && !a.is_evicted())
                    .count();
                let usage = g.usage();
                proptest::prop_assert!(usage.files <= files.max(linked_files + 2));
                for (a, s) in &held {
                    proptest::prop_assert!(!(*s == Stage::Linked && a.is_evicted()));
                }
                // Evicted ones are closed by their tasks; here, by dropping them.
                held.retain(|(a, _)| !a.is_evicted());
            }
            drop(held);
            proptest::prop_assert_eq!(g.usage(), Usage::default());
        }
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddrKey::of(a.into()), AddrKey::of(b.into()));
        assert_ne!(AddrKey::of(a.into()), AddrKey::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(AddrKey::of(mapped.into()), AddrKey::of(ip(1)));
        assert_eq!(AddrKey::of(a.into()).to_string(), "2001:db8:1:2::/64");
        assert_eq!(AddrKey::of(ip(7)).to_string(), "10.0.0.7");
    }
}
