//! Automatic builds (issue 13 at the onion level): a hop that failed or whose link closed is
//! left out of automatic paths; an automatic build that fails at a hop starts over on a fresh
//! path avoiding it, a bounded number of times within a deadline, and the application sees one
//! `CircuitBuilt` or one `CircuitClosed` carrying every attempt. Explicit paths are not
//! retried. Also issue 12 case 4: a path through ourselves is refused as such.

mod common;

use common::Net;
use onionmesh_onion::*;
use onionmesh_wire::NodeId;
use std::time::Duration;

/// Run, answering the routers' link requests: a link to a node in `dead` fails, others open.
fn run_links(net: &mut Net, dead: &[NodeId]) {
    loop {
        net.run();
        let needs = std::mem::take(&mut net.need_links);
        if needs.is_empty() {
            return;
        }
        let now = net.now;
        for (a, b) in needs {
            if dead.contains(&b) {
                net.nodes.get_mut(&a).unwrap().router.link_failed(now, b);
            } else {
                net.link(a, b);
            }
        }
    }
}

/// Candidates from node indices; `linked` as node 0 sees them.
fn candidates(net: &Net, idx: &[usize]) -> Vec<Candidate> {
    idx.iter()
        .map(|&i| Candidate {
            hop: net.hop(i),
            introducer: None,
            linked: net.linked(net.id(0), net.id(i)),
        })
        .collect()
}

fn rules(net: &Net) -> PathRules {
    PathRules {
        local: net.id(0),
        own_bridge: None,
        guards: vec![],
    }
}

/// The events node 0's proxy reported for `circ`.
fn events_for(net: &Net, circ: CircHandle) -> Vec<ProxyEvent> {
    let me = net.id(0);
    net.proxy_events
        .iter()
        .filter(|(n, e)| {
            *n == me
                && match e {
                    ProxyEvent::CircuitBuilt { circ: c }
                    | ProxyEvent::CircuitClosed { circ: c, .. }
                    | ProxyEvent::CircuitRetrying { circ: c, .. }
                    | ProxyEvent::CircuitExtended { circ: c, .. } => *c == circ,
                    _ => false,
                }
        })
        .map(|(_, e)| e.clone())
        .collect()
}

fn count(evs: &[ProxyEvent], f: impl Fn(&ProxyEvent) -> bool) -> usize {
    evs.iter().filter(|e| f(e)).count()
}

fn net6() -> Net {
    let mut net = Net::new(6, RouterConfig::default());
    net.auto_link = false;
    let (a, b, c) = (net.id(0), net.id(1), net.id(2));
    net.link(a, b);
    net.link(a, c);
    net
}

#[test]
fn an_automatic_build_starts_over_around_a_dead_hop_and_reports_once() {
    let mut net = net6();
    let dead = net.id(3);
    let cands = candidates(&net, &[1, 2, 3, 4, 5]);
    let rules = rules(&net);
    let mut retried = 0;
    for _ in 0..8 {
        // Forget earlier failures so every build may pick the dead hop first.
        net.node(0).proxy.hop_recovered(dead);
        let now = net.now;
        let (circ, first) = net
            .node(0)
            .proxy
            .build_circuit_auto(now, 3, &rules, &PathPins::default(), &cands)
            .unwrap();
        run_links(&mut net, &[dead]);
        let evs = events_for(&net, circ);
        assert_eq!(
            count(&evs, |e| matches!(e, ProxyEvent::CircuitBuilt { .. })),
            1,
            "{evs:?}"
        );
        assert_eq!(
            count(&evs, |e| matches!(e, ProxyEvent::CircuitClosed { .. })),
            0
        );
        let mut path: Vec<NodeId> = first.iter().map(|h| h.id).collect();
        for e in &evs {
            if let ProxyEvent::CircuitRetrying {
                failed, path: next, ..
            } = e
            {
                retried += 1;
                assert_eq!(failed.failed_node(), Some(dead), "{failed}");
                assert_eq!(
                    failed.reason,
                    CloseReason::ExtendFailed(DestroyReason::CONNECTFAILED)
                );
                assert!(failed.to_string().contains(&dead.short()));
                path = next.clone();
            }
        }
        assert!(!path.contains(&dead), "built through the dead hop");
        // The circuit works: a stream to the last hop's echo service opens.
        let s = net.node(0).proxy.begin_stream(now, circ, "echo").unwrap();
        net.run();
        assert!(net
            .proxy_events
            .iter()
            .any(|(_, e)| *e == ProxyEvent::StreamOpened { stream: s }));
        net.node(0).proxy.destroy_circuit(circ).unwrap();
        net.run();
    }
    assert!(
        retried > 0,
        "no build picked the dead hop first (seeded: change it)"
    );
}

#[test]
fn a_build_that_cannot_avoid_the_failed_hop_fails_once_with_every_reason() {
    let mut net = net6();
    let dead = net.id(3);
    let cands = candidates(&net, &[1, 3]);
    let rules = rules(&net);
    let now = net.now;
    let (circ, first) = net
        .node(0)
        .proxy
        .build_circuit_auto(now, 2, &rules, &PathPins::default(), &cands)
        .unwrap();
    assert_eq!(first[1].id, dead);
    run_links(&mut net, &[dead]);
    let evs = events_for(&net, circ);
    assert_eq!(
        count(&evs, |e| matches!(e, ProxyEvent::CircuitClosed { .. })),
        1
    );
    assert_eq!(
        count(&evs, |e| matches!(e, ProxyEvent::CircuitBuilt { .. })),
        0
    );
    let Some(CloseReason::BuildFailed { attempts, no_path }) = net.closed(net.id(0), circ) else {
        panic!("{evs:?}");
    };
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].path, vec![net.id(1), dead]);
    assert_eq!(attempts[0].failed_hop, Some(1));
    assert_eq!(
        no_path,
        Some(PathError::NotEnoughCandidates { need: 2, have: 1 })
    );
    let reason = net.closed(net.id(0), circ).unwrap();
    assert_eq!(reason.code(), "BUILD_FAILED");
    let text = reason.to_string();
    assert!(
        text.contains("hop 2 of 2")
            && text.contains(&dead.short())
            && text.contains("no other path"),
        "{text}"
    );
}

#[test]
fn attempts_are_bounded_and_each_names_its_hop() {
    let mut net = net6();
    let dead = [net.id(3), net.id(4), net.id(5)];
    // Node 1 is the only first hop; every second hop is unreachable.
    let cands = candidates(&net, &[1, 3, 4, 5]);
    let rules = rules(&net);
    let now = net.now;
    let (circ, _) = net
        .node(0)
        .proxy
        .build_circuit_auto(now, 2, &rules, &PathPins::default(), &cands)
        .unwrap();
    run_links(&mut net, &dead);
    let Some(CloseReason::BuildFailed { attempts, no_path }) = net.closed(net.id(0), circ) else {
        panic!("{:?}", events_for(&net, circ));
    };
    assert_eq!(attempts.len(), ProxyConfig::default().build_attempts);
    assert_eq!(no_path, None);
    let failed: std::collections::BTreeSet<NodeId> =
        attempts.iter().filter_map(|a| a.failed_node()).collect();
    assert_eq!(
        failed.len(),
        attempts.len(),
        "each attempt avoided the earlier failures"
    );
    assert_eq!(
        count(&events_for(&net, circ), |e| matches!(
            e,
            ProxyEvent::CircuitRetrying { .. }
        )),
        attempts.len() - 1
    );
}

#[test]
fn an_explicit_path_is_not_retried_but_its_failed_hop_is_remembered() {
    let mut net = net6();
    let dead = net.id(3);
    let now = net.now;
    let path = [net.hop(1), net.hop(3)];
    let circ = net.node(0).proxy.build_circuit(now, &path).unwrap();
    run_links(&mut net, &[dead]);
    assert_eq!(
        net.closed(net.id(0), circ),
        Some(CloseReason::ExtendFailed(DestroyReason::CONNECTFAILED))
    );
    assert_eq!(
        count(&events_for(&net, circ), |e| matches!(
            e,
            ProxyEvent::CircuitRetrying { .. }
        )),
        0
    );
    assert_eq!(net.node(0).proxy.recently_failed(now), vec![dead]);
    // An automatic build now leaves the dead hop out from the start.
    let cands = candidates(&net, &[1, 3, 4]);
    let rules = rules(&net);
    for _ in 0..10 {
        let (c, p) = net
            .node(0)
            .proxy
            .build_circuit_auto(now, 2, &rules, &PathPins::default(), &cands)
            .unwrap();
        assert_eq!((p[0].id, p[1].id), (net.id(1), net.id(4)));
        net.node(0).proxy.destroy_circuit(c).unwrap();
    }
    // The memory expires.
    let later = now + ProxyConfig::default().failed_hop_memory;
    assert!(net.node(0).proxy.recently_failed(later).is_empty());
}

#[test]
fn a_hop_whose_link_closed_under_a_circuit_is_not_chosen_and_a_pinned_last_hop_is_kept() {
    let mut net = net6();
    let (me, two) = (net.id(0), net.id(2));
    let cands = candidates(&net, &[1, 2, 4]);
    // An idle link closing is no failure.
    let (one, now) = (net.id(1), net.now);
    net.unlink(me, one);
    assert!(net.node(0).proxy.recently_failed(now).is_empty());
    net.link(me, one);
    // A link closing under a circuit is.
    net.build(0, &[2]);
    net.unlink(me, two);
    let now = net.now;
    assert_eq!(net.node(0).proxy.recently_failed(now), vec![two]);
    let rules = rules(&net);
    for _ in 0..10 {
        // The stale candidate list still says node 2 is linked; the proxy knows better.
        let (c, p) = net
            .node(0)
            .proxy
            .build_circuit_auto(now, 1, &rules, &PathPins::default(), &cands)
            .unwrap();
        assert_eq!(p[0].id, net.id(1));
        net.node(0).proxy.destroy_circuit(c).unwrap();
    }
    // Pinning the last hop ends the circuit there, failed or not.
    let pins = PathPins::last(net.id(4));
    let (c, p) = net
        .node(0)
        .proxy
        .build_circuit_auto(now, 2, &rules, &pins, &cands)
        .unwrap();
    assert_eq!((p[0].id, p[1].id), (net.id(1), net.id(4)));
    run_links(&mut net, &[]);
    assert!(events_for(&net, c).contains(&ProxyEvent::CircuitBuilt { circ: c }));
}

#[test]
fn a_retry_does_not_start_at_a_peer_whose_link_closed_since() {
    let mut net = net6();
    let (me, dead) = (net.id(0), net.id(3));
    let (four, five) = (net.id(4), net.id(5));
    net.link(me, four);
    net.link(me, five);
    // Four possible first hops; the second hop is pinned to the dead node, so every attempt
    // fails and is retried.
    let cands = candidates(&net, &[1, 2, 4, 5, 3]);
    let rules = rules(&net);
    let now = net.now;
    let pins = PathPins::default().and_at(1, dead);
    let (circ, first) = net
        .node(0)
        .proxy
        .build_circuit_auto(now, 2, &rules, &pins, &cands)
        .unwrap();
    // Before the extension fails, we close our (idle) links to the other first hops.
    net.now = now + Duration::from_millis(1);
    for i in [1, 2, 4, 5] {
        let other = net.id(i);
        if other != first[0].id {
            net.unlink(me, other);
        }
    }
    run_links(&mut net, &[dead]);
    let mut retries = 0;
    for e in events_for(&net, circ) {
        if let ProxyEvent::CircuitRetrying { path, .. } = e {
            retries += 1;
            assert_eq!(path[0], first[0].id, "a retry started at a closed link");
        }
    }
    assert_eq!(retries, 2);
    assert!(matches!(
        net.closed(me, circ),
        Some(CloseReason::BuildFailed { .. })
    ));
}

#[test]
fn no_new_attempt_after_the_deadline() {
    let mut net = net6();
    let cfg = ProxyConfig {
        build_deadline: Duration::from_secs(1),
        ..ProxyConfig::default()
    };
    let me = net.id(0);
    net.node(0).proxy = OnionProxy::new(me, cfg, [9; 32]);
    let dead = net.id(3);
    let cands = candidates(&net, &[1, 3, 4, 5]);
    let rules = rules(&net);
    let now = net.now;
    let pins = PathPins::default().and_at(1, dead);
    let (circ, _) = net
        .node(0)
        .proxy
        .build_circuit_auto(now, 3, &rules, &pins, &cands)
        .unwrap();
    net.run();
    // The link request hangs past the deadline, then fails.
    net.now = now + Duration::from_secs(2);
    run_links(&mut net, &[dead]);
    let Some(CloseReason::BuildFailed { attempts, no_path }) = net.closed(me, circ) else {
        panic!("{:?}", events_for(&net, circ));
    };
    assert_eq!((attempts.len(), no_path), (1, None));
}

#[test]
fn a_path_through_ourselves_is_refused_as_such() {
    let mut net = net6();
    let now = net.now;
    let me = net.hop(0);
    let path = [net.hop(1), me];
    let err = net.node(0).proxy.build_circuit(now, &path).unwrap_err();
    assert_eq!(err, ApiError::BadPath(PathError::ContainsSelf));
    assert_eq!(err.code(), "PATH_THROUGH_SELF");
    assert_eq!(
        check_path_ids(me.id, &[net.id(1), me.id]),
        Err(PathError::ContainsSelf)
    );
    let cands = candidates(&net, &[1, 2, 4]);
    let rules = rules(&net);
    let err = net
        .node(0)
        .proxy
        .build_circuit_auto(now, 2, &rules, &PathPins::last(me.id), &cands)
        .unwrap_err();
    assert_eq!(err, ApiError::BadPath(PathError::ContainsSelf));
}
