//! Slow and greedy clients against the real bridge binary on loopback (issue 11, cases 5 and 6):
//! slowloris request heads under an open-file limit of 1024, and one client holding every
//! WebSocket slot without ever starting the link handshake. Attackers connect from other
//! loopback addresses (127.0.x.y, all routed to `lo` on Linux) than the real page (127.0.0.1),
//! so the per-address limits can be seen at work.

// Attackers bind other loopback addresses (127.0.1.x); only Linux routes all of 127/8 to `lo`
// without configuration.
#![cfg(target_os = "linux")]

mod common;

use common::{http_get, Bridge, Client, TempDir, PATIENCE};
use futures_util::StreamExt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// The test process holds all attacking sockets itself; make sure it may.
fn raise_own_file_limit(needed: u64) {
    let soft = rlimit::increase_nofile_limit(needed).expect("read the open-file limit");
    assert!(
        soft >= needed,
        "this test needs {needed} open files; the hard limit allows {soft} (ulimit -Hn)"
    );
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.into(), 0))?;
    socket.connect(to).await
}

/// The `i`-th attacking address: 127.0.1.1, 127.0.1.2, ...
fn attacker(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8)
}

/// What became of one slowloris connection.
#[derive(Debug)]
enum Slow {
    /// Closed by the bridge after this long.
    Closed(Duration),
    /// Still open when the client gave up.
    StillOpen,
    /// The bridge never took it.
    #[allow(dead_code)] // Read through Debug in failure messages.
    NoConnect(String),
}

/// Opens a connection, sends a partial request head and then one more header line every
/// `dribble`, until the bridge closes it or `give_up` passes.
async fn slowloris(from: Ipv4Addr, to: SocketAddr, dribble: Duration, give_up: Duration) -> Slow {
    let mut s = match connect_from(from, to).await {
        Ok(s) => s,
        Err(e) => return Slow::NoConnect(e.to_string()),
    };
    let opened = Instant::now();
    if s.write_all(b"GET / HTTP/1.1\r\nHost: bridge\r\n")
        .await
        .is_err()
    {
        return Slow::Closed(opened.elapsed());
    }
    let mut buf = [0u8; 1024];
    let mut n = 0u32;
    loop {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                // Whatever the bridge says (hyper answers a timed-out head with nothing or a
                // 408), the connection must end.
                Ok(0) | Err(_) => return Slow::Closed(opened.elapsed()),
                Ok(_) => {}
            },
            () = sleep(dribble) => {
                n += 1;
                let line = format!("X-Slow-{n}: still typing\r\n");
                if s.write_all(line.as_bytes()).await.is_err() {
                    return Slow::Closed(opened.elapsed());
                }
            }
        }
        if opened.elapsed() > give_up {
            return Slow::StillOpen;
        }
    }
}

/// Issue 11 case 5: 1,100 connections dribbling header lines at a bridge limited to 1,024 open
/// files. Half come from one address, half from 100 others. Every one is closed within the
/// header timeout (most sooner, giving way to newer ones), the single address never holds more
/// than its share, and `GET /` and a real page's WebSocket keep working throughout.
#[tokio::test]
async fn slow_request_heads_are_cut_off_and_the_page_still_loads() {
    const SLOW: usize = 1_100;
    const HEADER_TIMEOUT: Duration = Duration::from_millis(3_000);
    const UNFINISHED_PER_ADDRESS: usize = 16;
    raise_own_file_limit(SLOW as u64 + 512);
    let dir = TempDir::new("slowloris");
    let index = "<!doctype html><title>onionmesh</title>";
    std::fs::write(dir.path().join("index.html"), index).unwrap();
    let bridge = Bridge::start(&[
        "--static-dir",
        dir.path().to_str().unwrap(),
        "--open-file-limit",
        "1024",
        "--header-timeout",
        &HEADER_TIMEOUT.as_millis().to_string(),
        "--max-unfinished-per-address",
        &UNFINISHED_PER_ADDRESS.to_string(),
    ]);
    bridge.wait_for_log(&["open-file limit 1024"]).await;

    // A dribble well inside the timeout: sending something keeps no connection alive.
    let dribble = Duration::from_millis(500);
    let give_up = HEADER_TIMEOUT + Duration::from_secs(4);
    let one_address = Ipv4Addr::new(127, 0, 0, 2);
    let attack: Vec<_> = (0..SLOW)
        .map(|i| {
            let from = if i % 2 == 0 {
                one_address
            } else {
                attacker(i % 100)
            };
            tokio::spawn(slowloris(from, bridge.addr, dribble, give_up))
        })
        .collect();
    let started = Instant::now();

    // While the attack runs: the page, and a WebSocket that registers.
    sleep(Duration::from_millis(300)).await;
    let addr = bridge.addr;
    let (status, _, body) = tokio::task::spawn_blocking(move || http_get(addr, "/"))
        .await
        .unwrap();
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, index.as_bytes());
    let page = Client::registered(&bridge, 7).await;
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "the page and the WebSocket must work during the attack, not after it"
    );

    // The single address holds at most its share of unfinished connections.
    let held_by_one = count_open_from(one_address, &bridge, 64).await;
    assert!(
        held_by_one <= UNFINISHED_PER_ADDRESS,
        "one address holds {held_by_one} unfinished connections"
    );

    let mut closed = Vec::with_capacity(SLOW);
    for task in attack {
        match task.await.unwrap() {
            Slow::Closed(after) => closed.push(after),
            other => panic!("a slow connection ended as {other:?}"),
        }
    }
    let slowest = closed.iter().max().unwrap();
    assert!(
        *slowest < HEADER_TIMEOUT + Duration::from_millis(1_500),
        "a slow connection stayed {slowest:?} (header timeout {HEADER_TIMEOUT:?})"
    );
    let log = bridge.stderr();
    assert!(!log.contains("could not accept"), "{log}");
    // The page's link outlived the attack (an answer arrives; its own ID is never listed).
    let mut page = page;
    assert!(page.find_peer(page.id()).await.is_empty());
    drop(dir);
}

/// Opens `n` more connections from `from` with partial request heads, then completes the heads
/// and counts the answers that are the page: only the connections the bridge still counted as
/// this address's unfinished ones get it (those that gave way are refused, or closed at once
/// if too many are being refused).
async fn count_open_from(from: Ipv4Addr, bridge: &Bridge, n: usize) -> usize {
    let mut conns = Vec::new();
    for _ in 0..n {
        if let Ok(mut s) = connect_from(from, bridge.addr).await {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: bridge\r\n").await;
            conns.push(s);
        }
    }
    // Give the bridge a moment to act on the ones that gave way.
    sleep(Duration::from_millis(200)).await;
    let mut served = 0;
    for mut s in conns {
        let _ = s.write_all(b"Connection: close\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = timeout(PATIENCE, s.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            served += 1;
        }
    }
    served
}

/// How an attacking WebSocket ended.
#[derive(Debug)]
enum Ended {
    Close(CloseFrame),
    /// The connection ended without a close frame: what a page would report as 1006.
    #[allow(dead_code)] // Read through Debug in failure messages.
    Bare(String),
    /// The upgrade itself failed.
    #[allow(dead_code)]
    Upgrade(String),
}

/// Keeps `slots` WebSockets open from `from` that never send a byte, opening them one after
/// another and a new one whenever one is closed, until `stop`. Returns how each closed
/// connection ended.
async fn hold_every_slot(
    from: Ipv4Addr,
    url: String,
    addr: SocketAddr,
    slots: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Ended> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Ended>(slots);
    let mut endings = Vec::new();
    let mut open = 0;
    while !stop.load(Ordering::Relaxed) {
        if open < slots {
            match open_idle(from, &url, addr).await {
                Ok(mut ws) => {
                    open += 1;
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let ended = match timeout(PATIENCE * 4, ws.next()).await {
                            Ok(Some(Ok(Message::Close(Some(frame))))) => Ended::Close(frame),
                            Ok(other) => Ended::Bare(format!("{other:?}")),
                            Err(_) => Ended::Bare("still open".into()),
                        };
                        let _ = tx.send(ended).await;
                    });
                }
                Err(ended) => endings.push(ended),
            }
        }
        let wait = if open < slots {
            Duration::ZERO
        } else {
            Duration::from_millis(50)
        };
        while let Ok(Some(ended)) = timeout(wait, rx.recv()).await {
            open -= 1;
            endings.push(ended);
        }
    }
    endings
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket from `from` whose upgrade succeeded (it may be refused with a close frame next).
async fn open_idle(from: Ipv4Addr, url: &str, addr: SocketAddr) -> Result<Ws, Ended> {
    let stream = connect_from(from, addr)
        .await
        .map_err(|e| Ended::Upgrade(e.to_string()))?;
    let (ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| Ended::Upgrade(e.to_string()))?;
    Ok(ws)
}

/// Issue 11 case 6 with a many-address flood's effect: the per-address caps are lifted, so one
/// client can take every WebSocket slot with upgrades that never handshake. A real page still
/// registers at once (the oldest unfinished connection gives way), and every attacking
/// connection that is closed is told why in its close frame.
#[tokio::test]
async fn slots_held_without_a_handshake_give_way_to_a_real_page() {
    const SLOTS: usize = 64;
    let bridge = Bridge::start(&[
        "--max-connections",
        &SLOTS.to_string(),
        "--max-per-address",
        "1000",
        "--max-unfinished-per-address",
        "1000",
        // Only giving way closes the attacker's connections in this test.
        "--first-message-timeout",
        "10000",
        "--hello-timeout",
        "10000",
        "--log-level",
        "onionmesh_bridge=debug,info",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let attack = tokio::spawn(hold_every_slot(
        attacker(0),
        bridge.ws_url(),
        bridge.addr,
        SLOTS,
        stop.clone(),
    ));
    // Wait until the attacker holds every slot.
    bridge
        .wait_for_log(&[&format!("connection {SLOTS} opened from {}", attacker(0))])
        .await;
    sleep(Duration::from_millis(200)).await;

    // Real pages join during the attack, each within the usual patience.
    let mut pages = Vec::new();
    for seed in 1..=3 {
        pages.push(Client::registered(&bridge, seed).await);
    }
    let id = pages[0].id();
    assert!(pages[2].find_peer(id).await.iter().any(|p| p.id == id));

    stop.store(true, Ordering::Relaxed);
    let endings = attack.await.unwrap();
    assert!(
        endings.len() >= 3,
        "three attacking connections gave way: {endings:?}"
    );
    for ended in &endings {
        match ended {
            Ended::Close(frame) => {
                assert_eq!(u16::from(frame.code), 1013, "{frame:?}");
                assert!(
                    frame.reason.contains("gave way to a newer one"),
                    "{frame:?}"
                );
            }
            other => panic!("an attacking connection ended without a sentence: {other:?}"),
        }
    }
}

/// Issue 11 case 6 as reported: one address opens `--max-connections` upgrades that never
/// handshake, replacing each one that is closed. With the default per-address caps it never
/// holds more than its share, a real page registers throughout, and every close the attacker
/// sees is a sentence (giving way to its own newer connections, or the first-message deadline).
#[tokio::test]
async fn one_address_cannot_hold_the_bridge() {
    const SLOTS: usize = 128;
    let bridge = Bridge::start(&[
        "--max-connections",
        &SLOTS.to_string(),
        "--first-message-timeout",
        "500",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let attack = tokio::spawn(hold_every_slot(
        attacker(0),
        bridge.ws_url(),
        bridge.addr,
        SLOTS,
        stop.clone(),
    ));
    sleep(Duration::from_millis(300)).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seed = 1;
    while Instant::now() < deadline {
        let page = Client::registered(&bridge, seed).await;
        page.close().await;
        seed += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let endings = attack.await.unwrap();
    let (mut gave_way, mut deadline_hit) = (0, 0);
    for ended in &endings {
        match ended {
            Ended::Close(f) if f.reason.contains("gave way to a newer one") => gave_way += 1,
            Ended::Close(f) if f.reason.contains("no link handshake within 500 ms") => {
                deadline_hit += 1
            }
            other => panic!("an attacking connection ended without a sentence: {other:?}"),
        }
    }
    assert!(
        gave_way >= SLOTS - 16,
        "past its 16 unfinished connections the address's oldest give way ({gave_way})"
    );
    // Churning, the attacker's newest connections keep pushing out its oldest before their
    // deadline; either way each close said why.
    assert_eq!(gave_way + deadline_hit, endings.len());
    let log = bridge.stderr();
    assert!(!log.contains("this bridge is full"), "{log}");
}

/// The smallest open-file limit the bridge accepts leaves room for one HTTP connection: a flood
/// of slow connections is refused or gives way, the accept loop keeps going, and once the flood
/// is over the page loads and a WebSocket registers.
#[tokio::test]
async fn a_tiny_file_limit_never_stops_the_accept_loop() {
    const FLOOD: usize = 300;
    raise_own_file_limit(FLOOD as u64 + 512);
    let dir = TempDir::new("tiny-limit");
    std::fs::write(dir.path().join("index.html"), "onionmesh").unwrap();
    let bridge = Bridge::start(&[
        "--static-dir",
        dir.path().to_str().unwrap(),
        "--open-file-limit",
        "64",
        "--header-timeout",
        "1000",
    ]);
    bridge
        .wait_for_log(&["open-file limit 64", "connections may use 2"])
        .await;
    let give_up = Duration::from_secs(4);
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let from = attacker(i % 30);
            tokio::spawn(slowloris(
                from,
                bridge.addr,
                Duration::from_millis(300),
                give_up,
            ))
        })
        .collect();
    for task in flood {
        match task.await.unwrap() {
            Slow::Closed(_) => {}
            other => panic!("a slow connection ended as {other:?}"),
        }
    }
    let addr = bridge.addr;
    let (status, _, body) = tokio::task::spawn_blocking(move || http_get(addr, "/"))
        .await
        .unwrap();
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, b"onionmesh");
    // The reserve below the limit was enough: `accept` never ran out of files.
    let log = bridge.stderr();
    assert!(!log.contains("could not accept"), "{log}");
    assert!(log.contains("giving way to newer ones"), "{log}");
    let mut page = Client::registered(&bridge, 9).await;
    assert!(page.find_peer(page.id()).await.is_empty());
}

#[test]
fn help_names_the_limit_flags() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onionmesh-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--max-per-address",
        "--max-unfinished-per-address",
        "--open-file-limit",
        "--header-timeout",
        "--first-message-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
