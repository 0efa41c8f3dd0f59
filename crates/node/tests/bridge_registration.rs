//! A page registers with the bridge by signing the bridge's challenge (issue 11, case 1): its
//! wall clock plays no part, so pages whose clocks are a day off register; and a registered page
//! answers the bridge's keepalive pings, so it is never dropped as silent (issue 12, case 1).
//! Real `Node`s against a real `Rendezvous`, on the shared network of `onionmesh_node::testing`.

use onionmesh_node::testing::{Net, NetConfig};
use onionmesh_node::BridgeState;
use std::time::Duration;

#[test]
fn pages_with_clocks_a_day_off_register_and_stay_registered() {
    // Four pages whose wall clocks are a day behind, right, a day ahead and stuck at 1970. The
    // page's wall clock never reaches the node: `Input::BridgeOpened` carries none, and
    // freshness is the bridge's challenge, so all four are the same to the core. No page is
    // handed peers, so nothing but registration and keepalives crosses the bridge.
    let pages = 4;
    let mut net = Net::with(NetConfig {
        undiscovering: (0..pages).collect(),
        settle: Duration::ZERO,
        ..NetConfig::new(pages)
    });
    assert!(net.bridge_closes.is_empty(), "{:?}", net.bridge_closes);
    assert_eq!(net.bridge.registered_peers(), pages);
    for n in &net.nodes {
        assert_eq!(n.bridge_state(), BridgeState::Registered);
    }

    // Two minutes with no traffic but the bridge's pings and the pages' answers.
    net.advance_for(Duration::from_secs(120));
    assert!(net.bridge_closes.is_empty(), "{:?}", net.bridge_closes);
    assert_eq!(net.bridge.registered_peers(), pages);
}
