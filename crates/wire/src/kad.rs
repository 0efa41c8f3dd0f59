//! Kademlia RPC frames (filled in by the DHT work).
