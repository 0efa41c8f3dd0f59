//! Ghost peers over real WebSockets (issue 12, case 1): a page that stops reading and answering
//! without closing (a suspended browser) fails introductions to it within seconds, is announced
//! gone and not offered, and is dropped within 30 s; a page that answers stays.

mod common;

use common::{Bridge, Client, PATIENCE};
use onionmesh_wire::SignalMsg;
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test]
async fn a_suspended_page_fails_introductions_fast_and_is_dropped_within_30_s() {
    let bridge = Bridge::start(&[]);
    let mut live = Client::registered(&bridge, 1).await;
    // Registered, then suspended: it neither reads nor writes again, and keeps its socket.
    let ghost = Client::registered(&bridge, 2).await;
    let (ghost_id, ghost_short) = (ghost.id(), ghost.id().short());
    let registered_at = Instant::now();
    assert_eq!(live.find_peer(live.id()).await.len(), 1);

    // An introduction to it fails within a few seconds, with a sentence.
    let asked = Instant::now();
    live.send(&SignalMsg::Introduce {
        peer: ghost_id,
        session: 9,
        sdp: "v=0 offer".try_into().unwrap(),
    })
    .await;
    match live.recv().await {
        SignalMsg::IntroduceFailed {
            peer,
            session: 9,
            reason,
        } => {
            assert_eq!(peer, ghost_id);
            assert!(reason.contains("did not answer the bridge"), "{reason}");
        }
        other => panic!("expected IntroduceFailed, got {other:?}"),
    }
    assert!(asked.elapsed() < PATIENCE, "{:?}", asked.elapsed());
    // The other pages are told it is gone, and it is not offered any more.
    assert_eq!(
        live.recv().await,
        SignalMsg::PeersGone {
            ids: vec![ghost_id].try_into().unwrap()
        }
    );
    assert!(live.find_peer(live.id()).await.is_empty());

    // Dropped within 30 s of its last frame, while the live page (answering the bridge's pings
    // as it reads) stays.
    let needle = format!("(peer {ghost_short}): nothing arrived from the peer");
    while !bridge.stderr().contains(&needle) {
        assert!(
            registered_at.elapsed() < Duration::from_secs(31),
            "the suspended page was not dropped; stderr:\n{}",
            bridge.stderr()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), live.recv()).await;
    }
    assert!(registered_at.elapsed() <= Duration::from_secs(30));
    let line = bridge.wait_for_log(&["WARN", &needle]).await;
    assert!(
        line.contains("not even the answer to a keepalive ping"),
        "{line}"
    );
    assert!(live.find_peer(live.id()).await.is_empty());
    assert!(!bridge.stderr().contains("closing connection 1"));
    drop(ghost);
}
