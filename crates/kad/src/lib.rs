//! # onionmesh-kad: the Kademlia DHT, sans-IO
//!
//! Nodes find each other and content references through a Kademlia DHT over their 160-bit IDs
//! (XOR metric, buckets of `k = 8`, `alpha = 3` parallel requests), as the spec's "DHT and
//! Bridges" and "Content discovery" sections describe, with the BitTorrent DHT's rules for node
//! health (good / questionable / bad, 15 minutes) and STORE tokens.
//!
//! Like every protocol crate here, it pretends the network does not exist: [`Kad`] owns no
//! socket, reads no clock and draws no randomness it was not given. Pieces, each usable alone:
//!
//! - [`table::RoutingTable`]: 160 fixed buckets with replacement caches and refresh bookkeeping;
//! - [`lookup::ClosestIter`]: the iterative lookup, told whom it asked and what they answered;
//! - [`store::ValueStore`], [`token::Tokens`], [`limit::RateLimiter`]: what we hold for others,
//!   who may store, and how fast anyone may ask;
//! - [`limit::Pacer`], [`rtt::RoundTrips`]: how fast we ask any one peer, and how long we wait
//!   for it (an adaptive timeout from measured round trips);
//! - [`Kad`]: all of the above wired to the RPCs of `onionmesh_wire::kad`;
//! - `sim` (behind the `sim` cargo feature, for tests and benchmarks): a deterministic network
//!   of thousands of `Kad`s on a virtual clock.
//!
//! ## Calling rules
//!
//! In the style of quinn-proto and str0m:
//! 1. feed every input in with `handle_message(now, from, bytes)`, `handle_send_failed`, or an
//!    API call (`bootstrap`, `find_node`, `find_value`, `publish`), passing `now` on the
//!    driver's monotonic clock;
//! 2. after each call, drain [`Kad::poll_output`] until it returns `None` and carry out the
//!    [`Output`]s in order: `Send { to, bytes }` (deliver one frame to that contact) or
//!    `Event(..)`;
//! 3. arm one timer for [`Kad::poll_timeout`] and call [`Kad::handle_timeout`] when it fires.
//!
//! ## Reaching nodes
//!
//! A browser node cannot open a connection to an address: it reaches an unlinked node through
//! an introducer (a peer linked to both) or through the node's bridge. So `Kad` never asks for a
//! link per contact. A [`Contact`](onionmesh_wire::kad::Contact) carries its bridge address and
//! up to four introducers (the spec's `[IDx]`): whoever told us about a node is one. `Send`
//! hands the whole contact to the node layer, which routes the frame and reports a frame it
//! could not route with [`Kad::handle_send_failed`]. Choosing the way (the open link to the
//! contact, else a linked introducer that relays it, else the contact's bridge, else failure) is
//! the node's job and lives in its DHT part (`crates/node`, `dht.rs`), not in this crate.
//! Answers go back to the `from` contact the node layer gave with the request, so they take the
//! same way back.
//!
//! ## Design choices
//!
//! - **160 fixed buckets** of `k` (the spec's layout, not BEP 5's splitting buckets); see
//!   [`table`] for why. States good / questionable / bad follow BEP 5's 15-minute rules; a full
//!   bucket pings its least recently seen questionable entry (twice) before replacing it with a
//!   candidate from its bounded replacement cache; buckets unchanged for 15 minutes are
//!   refreshed by a lookup of a random ID in their range.
//! - **Joining** ends as in the Kademlia paper (section 2.3): after the self-lookup, every bucket
//!   farther than our closest neighbour is refreshed (at most `max_refresh_lookups` at once,
//!   farthest first). The self-lookup only meets nodes near our ID; a node whose far buckets
//!   stay empty answers lookups for keys over there with nodes on its own side only, and a
//!   lookup (or a publication) that meets only such nodes settles on a wrong set of nodes.
//!   Pages join through their bridge's DHT node, so without this step a third of a
//!   1,000-node mesh knew nobody in the other half of the ID space.
//! - **Lookups** keep `alpha = 3` requests in flight and finish when the `k` closest known nodes
//!   have all answered (failures drop out). Each [`LookupResult`] reports its rounds (depth, as
//!   in synchronous Kademlia) and requests.
//! - **Two timeouts**, as rust-libp2p's lookups have: a peer that has not answered within an
//!   adaptive timeout (`SRTT + 4 RTTVAR` of its measured round trips, RFC 6298, clamped to
//!   300 ms..3 s; 1 s before any sample) is *slow*: the lookup stops waiting for it and asks the
//!   next peer, but still takes a late answer. Only after `request_timeout` (10 s) has the
//!   request failed (the routing table counts it). So one silent peer (a suspended laptop)
//!   costs a lookup a few hundred milliseconds, not 10 s.
//! - **FIND_VALUE** returns as soon as one holder answered with providers (`value_quorum`, 1 by
//!   default: every holder of a key keeps all its providers' records), while `alpha` keeps the
//!   other requests bounded; a larger quorum collects from more holders.
//! - **Pacing**: our requests to any one peer are paced ([`limit::PacingConfig`]: a burst of 16,
//!   then 8/s, half of what [`limit::RateConfig`] lets a peer ask of us) and wait in a queue
//!   bounded by `max_pending` beyond that; so a burst of our own work is spread out instead of
//!   being dropped unanswered by the peers' rate limiters.
//! - **Publishing** stores our provider record at the `k` closest nodes found by a lookup, and
//!   again every 10 minutes (records live 30). At most `max_publish_lookups` rounds run at
//!   once; the others wait their turn. A STORE that goes unanswered is sent again (up to
//!   `store_attempts`, the timeout doubled each time); a node that refuses or stays silent is
//!   replaced by the next closest node that answered the lookup. Each round ends with one
//!   [`KadEvent::Published`] whose `error` ([`PublishError`]) is `None` only if
//!   `min(k, nodes that answered)` nodes hold the record; a round never succeeds with no holder.
//!   The spec's hop-by-hop STORE forwarding is not
//!   used, because a holder may only store records *of the sender itself*: a STORE needs a token
//!   the holder issued to the sender (HMAC of its ID, 5-minute secret rotation, current and
//!   previous accepted), and a provider record naming anyone else is refused. So nobody can sign
//!   up other nodes.
//! - **Contacts are checked** at the boundary: a node's ID must be the hash of its public key,
//!   so placing fake nodes next to a target takes generating keys.
//! - **Floods** are dropped unanswered (an ERROR would cost as much as an answer), per peer and
//!   globally, with one [`KadEvent::Rejected`] per burst; answering allocates nothing.
//!
//! ## Bounds
//!
//! Everything a remote peer can make us keep is capped: `k` entries and `replacements`
//! candidates per bucket; `max_pending` requests (paced ones included); `max_lookups` lookups,
//! each with at most `max_candidates` candidates and `max_requests` requests; `max_keys` /
//! `max_providers_per_key` / `max_records` stored records; `max_publications` (and at most one
//! waiting round each); the `max_peers` of the rate limiter, the pacer and the round-trip
//! estimates; at most
//! 20 contacts or providers and 4 introducers per decoded message. The output queue holds what
//! one call produced: drain it after every call.
//!
//! ## Example: two nodes
//!
//! ```
//! use onionmesh_kad::{sim::test_contact, Kad, KadConfig, KadEvent, Output, Time};
//! let (a, b) = (test_contact(1), test_contact(2));
//! let now = Time::ZERO;
//! let mut na = Kad::new(a.clone(), KadConfig::default(), [1; 32], now).unwrap();
//! let mut nb = Kad::new(b.clone(), KadConfig::default(), [2; 32], now).unwrap();
//! // A joins through B: it looks itself up, starting from B.
//! na.bootstrap(now, &[b.clone()]).unwrap();
//! let Some(Output::Send { to, bytes }) = na.poll_output() else { panic!() };
//! assert_eq!(to.id, b.id);
//! // The driver delivers the FIND_NODE to B, and B's answer back to A.
//! nb.handle_message(now, &a, &bytes);
//! let Some(Output::Send { to, bytes }) = nb.poll_output() else { panic!() };
//! assert_eq!(to.id, a.id);
//! na.handle_message(now, &b, &bytes);
//! let Some(Output::Event(KadEvent::LookupFinished(done))) = na.poll_output() else { panic!() };
//! assert_eq!(done.closest, vec![b.clone()]);
//! // Both now know each other.
//! assert!(na.table().get(&b.id).is_some() && nb.table().get(&a.id).is_some());
//! ```
#![forbid(unsafe_code)]

pub mod contact;
mod dht;
pub mod limit;
pub mod lookup;
pub mod rtt;
#[cfg(feature = "sim")]
pub mod sim;
pub mod store;
pub mod table;
pub mod token;

pub use dht::{
    ApiError, Kad, KadConfig, KadEvent, LookupId, LookupKind, LookupResult, Output, PublishError,
    Rejection,
};
pub use onionmesh_wire::Time;
