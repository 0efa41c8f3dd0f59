//! Circuits end to end through the in-memory mesh: 3-hop circuits, a 1 MB echo in 498-byte
//! cells, windows, DESTROY both ways, TRUNCATE, failed extensions, timers.

mod common;

use common::Net;
use onionmesh_onion::flow::{CIRC_WINDOW_START, STREAM_WINDOW_START};
use onionmesh_onion::*;
use std::time::Duration;

fn open_stream(net: &mut Net, from: usize, circ: CircHandle) -> StreamHandle {
    let now = net.now;
    let s = net
        .node(from)
        .proxy
        .begin_stream(now, circ, "echo")
        .unwrap();
    net.run();
    let me = net.id(from);
    assert!(net
        .proxy_events
        .iter()
        .any(|(n, e)| *n == me && *e == ProxyEvent::StreamOpened { stream: s }));
    s
}

/// Push `data` through stream `s` of node `from` and collect the echo, checking windows after
/// every delivered cell.
fn echo(net: &mut Net, from: usize, s: StreamHandle, data: &[u8]) -> Vec<u8> {
    let mut sent = 0;
    let mut got = Vec::new();
    let mut max_in_flight = 0;
    for _ in 0..100_000 {
        let now = net.now;
        let p = &mut net.node(from).proxy;
        if sent < data.len() {
            sent += p.stream_write(now, s, &data[sent..]).unwrap();
        }
        got.extend(p.stream_read(now, s, usize::MAX).unwrap());
        let mut step_max = 0;
        net.run_with(|net| {
            let p = &net.node(from).proxy;
            for c in p.circuits() {
                assert!(c.in_flight <= CIRC_WINDOW_START, "circuit window overrun");
                step_max = step_max.max(c.in_flight);
            }
            if let Some(f) = p.stream_in_flight(s) {
                assert!(f <= STREAM_WINDOW_START, "stream window overrun");
            }
        });
        max_in_flight = max_in_flight.max(step_max);
        if got.len() == data.len() {
            break;
        }
    }
    assert!(max_in_flight > 0);
    got
}

#[test]
fn three_hops_one_megabyte_echo() {
    let mut net = Net::new(5, RouterConfig::default());
    let circ = net.build(0, &[1, 2, 3]);
    // No extension is left pending anywhere.
    for i in 0..5 {
        assert_eq!(net.node(i).router.pending_extends(), 0);
    }
    // Hops 2 and 3 were linked on demand (NeedLink).
    assert!(net.linked(net.id(1), net.id(2)) && net.linked(net.id(2), net.id(3)));
    assert!(!net.linked(net.id(0), net.id(3)));
    let view = &net.node(0).proxy.circuits()[0];
    assert_eq!(view.state, CircuitState::Built);
    assert_eq!(view.hops.len(), 3);

    let s = open_stream(&mut net, 0, circ);
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 498) as u8).collect();
    let got = echo(&mut net, 0, s, &data);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ or out of order");

    // Every link carried only whole cells of the circuit; the exit saw everything.
    let exit = net.id(3);
    let served: usize = net
        .services
        .iter()
        .filter(|((n, _), _)| *n == exit)
        .map(|(_, s)| s.received)
        .sum();
    assert_eq!(served, data.len());
    let v = &net.node(0).proxy.circuits()[0];
    assert_eq!(v.bytes_sent, data.len() as u64);
    assert_eq!(v.bytes_received, data.len() as u64);
    // ~2009 DATA cells each way (498 bytes, 482 in every 100th), plus SENDMEs.
    assert!(v.cells_out >= 2009 && v.cells_out < 2400, "{}", v.cells_out);
}

#[test]
fn a_slow_reader_holds_the_writer_at_the_window() {
    let mut net = Net::new(4, RouterConfig::default());
    net.service_reading = false;
    let circ = net.build(0, &[1, 2, 3]);
    let s = open_stream(&mut net, 0, circ);
    let now = net.now;
    let data = vec![0x42u8; 1_000_000];
    let mut taken = net.node(0).proxy.stream_write(now, s, &data).unwrap();
    assert_eq!(taken, STREAM_SEND_BUFFER, "the send buffer is bounded");
    for _ in 0..20 {
        net.run();
        let now = net.now;
        taken += net
            .node(0)
            .proxy
            .stream_write(now, s, &data[taken..])
            .unwrap();
    }
    // The exit holds exactly one stream window, unread; the proxy holds the rest.
    let exit = net.id(3);
    let stream = net
        .services
        .keys()
        .find(|(n, _)| *n == exit)
        .map(|(_, st)| *st)
        .unwrap();
    let buffered = net.node(3).router.stream_buffered_cells(stream).unwrap();
    assert_eq!(buffered, STREAM_WINDOW_START as usize);
    assert_eq!(
        net.node(0).proxy.stream_in_flight(s),
        Some(STREAM_WINDOW_START)
    );
    assert!(
        taken < data.len() / 2,
        "the writer was held back ({taken} bytes taken)"
    );

    // The reader starts: everything flows.
    for svc in net.services.values_mut() {
        svc.reading = true;
        svc.echo = false;
    }
    for _ in 0..200 {
        let now = net.now;
        if taken < data.len() {
            taken += net
                .node(0)
                .proxy
                .stream_write(now, s, &data[taken..])
                .unwrap();
        }
        net.run();
    }
    assert_eq!(taken, data.len());
    let received: usize = net.services.values().map(|s| s.received).sum();
    assert_eq!(received, data.len());
}

#[test]
fn destroy_propagates_both_ways() {
    let mut net = Net::new(4, RouterConfig::default());
    // Forward: the proxy destroys; every hop forgets the circuit.
    let circ = net.build(0, &[1, 2, 3]);
    assert_eq!(
        (
            net.router_circuits(1),
            net.router_circuits(2),
            net.router_circuits(3)
        ),
        (1, 1, 1)
    );
    net.node(0).proxy.destroy_circuit(circ).unwrap();
    net.run();
    assert_eq!(
        (
            net.router_circuits(1),
            net.router_circuits(2),
            net.router_circuits(3)
        ),
        (0, 0, 0)
    );
    assert_eq!(net.closed(net.id(0), circ), Some(CloseReason::Requested));

    // Backward: the link between hops 2 and 3 breaks; hop 2 destroys towards the proxy.
    let circ = net.build(0, &[1, 2, 3]);
    let (b, c) = (net.id(2), net.id(3));
    net.unlink(b, c);
    net.run();
    assert_eq!(
        (
            net.router_circuits(1),
            net.router_circuits(2),
            net.router_circuits(3)
        ),
        (0, 0, 0)
    );
    assert_eq!(
        net.closed(net.id(0), circ),
        Some(CloseReason::Destroyed(DestroyReason::CHANNEL_CLOSED))
    );

    // Backward from the last hop: it finds a cell it cannot recognize (a hop in the middle
    // corrupted it) and destroys; the DESTROY reaches the proxy.
    let circ = net.build(0, &[1, 2, 3]);
    let s = open_stream(&mut net, 0, circ);
    let now = net.now;
    net.node(0).proxy.stream_write(now, s, b"hello").unwrap();
    // Let the DATA cell reach hop 2's outgoing wire, then corrupt it.
    let (b, c) = (net.id(2), net.id(3));
    net.run_until(|net| net.wire.iter().any(|(f, t, _)| *f == b && *t == c));
    let pos = net
        .wire
        .iter()
        .position(|(f, t, _)| *f == b && *t == c)
        .unwrap();
    net.wire[pos].2.body[200] ^= 1;
    net.run();
    assert_eq!(
        net.closed(net.id(0), circ),
        Some(CloseReason::Destroyed(DestroyReason::BAD_CELL))
    );
    assert_eq!(
        (
            net.router_circuits(1),
            net.router_circuits(2),
            net.router_circuits(3)
        ),
        (0, 0, 0)
    );
}

#[test]
fn truncate_then_extend_elsewhere() {
    let mut net = Net::new(5, RouterConfig::default());
    let circ = net.build(0, &[1, 2, 3]);
    let now = net.now;
    net.node(0).proxy.truncate_circuit(now, circ, 1).unwrap();
    net.run();
    let me = net.id(0);
    assert!(net.proxy_events.iter().any(|(n, e)| *n == me
        && *e
            == ProxyEvent::CircuitTruncated {
                circ,
                hops: 1,
                reason: DestroyReason::REQUESTED
            }));
    assert_eq!(
        (
            net.router_circuits(1),
            net.router_circuits(2),
            net.router_circuits(3)
        ),
        (1, 0, 0)
    );
    let hop4 = net.hop(4);
    net.node(0).proxy.extend_circuit(now, circ, hop4).unwrap();
    net.run();
    let v = &net.node(0).proxy.circuits()[0];
    assert_eq!(v.state, CircuitState::Built);
    assert_eq!(v.hops.len(), 2);
    let s = open_stream(&mut net, 0, circ);
    assert_eq!(echo(&mut net, 0, s, b"after truncate"), b"after truncate");
    // Streams make a circuit final.
    let hop3 = net.hop(3);
    assert_eq!(
        net.node(0).proxy.extend_circuit(now, circ, hop3),
        Err(ApiError::CircuitUsed)
    );
}

#[test]
fn a_failed_extension_closes_the_building_circuit() {
    let mut net = Net::new(4, RouterConfig::default());
    net.auto_link = false;
    let (a, b) = (net.id(0), net.id(1));
    net.link(a, b);
    let path = [net.hop(1), net.hop(2)];
    let now = net.now;
    let circ = net.node(0).proxy.build_circuit(now, &path).unwrap();
    net.run();
    // Hop 1 asked for a link to hop 2; it cannot be had.
    assert_eq!(net.need_links, vec![(b, net.id(2))]);
    let target = net.id(2);
    net.node(1).router.link_failed(now, target);
    net.run();
    assert_eq!(
        net.closed(a, circ),
        Some(CloseReason::ExtendFailed(DestroyReason::CONNECTFAILED))
    );
    assert_eq!(net.router_circuits(1), 0);
    assert_eq!(net.node(1).router.pending_extends(), 0);
}

#[test]
fn timers_close_idle_and_stuck_circuits() {
    let mut net = Net::new(4, RouterConfig::default());
    // Idle: the routers' idle timeout (5 min) fires first and destroys towards the proxy.
    let circ = net.build(0, &[1, 2, 3]);
    assert!(net.node(0).proxy.poll_timeout().is_some());
    assert!(net.node(1).router.poll_timeout().is_some());
    net.advance(Duration::from_secs(301));
    assert_eq!(
        net.closed(net.id(0), circ),
        Some(CloseReason::Destroyed(DestroyReason::TIMEOUT))
    );
    assert_eq!(
        (
            net.router_circuits(1),
            net.router_circuits(2),
            net.router_circuits(3)
        ),
        (0, 0, 0)
    );

    // Stuck: hop 1 never gets its link to hop 2; its extend timeout fires, the proxy learns by
    // TRUNCATED, and its own build timeout would have fired next.
    net.auto_link = false;
    let path = [net.hop(1), net.hop(3)];
    let (b, d) = (net.id(1), net.id(3));
    net.unlink(b, d);
    let now = net.now;
    let circ = net.node(0).proxy.build_circuit(now, &path).unwrap();
    net.run();
    net.advance(Duration::from_secs(31));
    assert_eq!(
        net.closed(net.id(0), circ),
        Some(CloseReason::ExtendFailed(DestroyReason::TIMEOUT))
    );

    // A first hop that never answers: the proxy's build timeout.
    let (a, c) = (net.id(0), net.id(2));
    net.link(a, c);
    let path = [net.hop(2)];
    let now = net.now;
    let circ = net.node(0).proxy.build_circuit(now, &path).unwrap();
    net.run_until(|n| n.wire.iter().any(|(f, _, _)| *f == a));
    net.wire.clear();
    net.advance(Duration::from_secs(61));
    assert_eq!(net.closed(a, circ), Some(CloseReason::Timeout));
}

#[test]
fn eight_hops_work_and_nine_are_refused() {
    let mut net = Net::new(10, RouterConfig::default());
    let circ = net.build(0, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let s = open_stream(&mut net, 0, circ);
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    assert_eq!(echo(&mut net, 0, s, &data), data);
    let nine: Vec<HopSpec> = (1..10).map(|i| net.hop(i)).collect();
    let now = net.now;
    assert_eq!(
        net.node(0).proxy.build_circuit(now, &nine),
        Err(ApiError::BadPath(PathError::BadLength(9)))
    );
}

#[test]
fn the_proxy_sees_resourcelimit() {
    let mut net = Net::new(
        3,
        RouterConfig {
            max_circuits_per_link: 2,
            ..RouterConfig::default()
        },
    );
    net.build(0, &[1]);
    net.build(0, &[1, 2]);
    let now = net.now;
    let hop = net.hop(1);
    let third = net.node(0).proxy.build_circuit(now, &[hop]).unwrap();
    net.run();
    assert_eq!(
        net.closed(net.id(0), third),
        Some(CloseReason::Destroyed(DestroyReason::RESOURCELIMIT))
    );
    // The other node is not limited by our link's cap.
    net.build(2, &[1]);
}

#[test]
fn closing_a_stream_with_unread_data_frees_the_window() {
    let mut net = Net::new(4, RouterConfig::default());
    net.service_reading = false;
    let circ = net.build(0, &[1, 2, 3]);
    let s = open_stream(&mut net, 0, circ);
    let now = net.now;
    for _ in 0..10 {
        net.node(0)
            .proxy
            .stream_write(now, s, &[1u8; 60_000])
            .unwrap();
        net.run();
    }
    assert_eq!(
        net.node(0).proxy.circuits()[0].in_flight,
        STREAM_WINDOW_START
    );
    // The service closes without reading: its 500 unread cells are credited back.
    let exit = net.id(3);
    let stream = net.services.keys().find(|(n, _)| *n == exit).unwrap().1;
    net.services.clear();
    net.node(3).router.stream_close(now, stream).unwrap();
    net.run();
    let me = net.id(0);
    assert!(net.proxy_events.iter().any(|(n, e)| *n == me
        && *e
            == ProxyEvent::StreamEnded {
                stream: s,
                reason: EndReason::DONE
            }));
    assert_eq!(net.node(0).proxy.circuits()[0].in_flight, 0);
    assert_eq!(net.node(3).router.stream_buffered_cells(stream), None);
}
