//! End-to-end tests: the real `onionmesh-bridge` binary, real WebSocket clients.

mod common;

use common::{header, hello_frame, http_get, Bridge, Client, TempDir, PATIENCE};
use onionmesh_wire::{Frame, SignalMsg};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

// Stable error codes from `onionmesh_node`'s rendezvous (`codes`).
const MALFORMED: u16 = 1;
const RATE_LIMITED: u16 = 2;
const HELLO_TIMEOUT: u16 = 4;
const PROTOCOL: u16 = 5;

#[tokio::test]
async fn two_peers_find_and_introduce_each_other() {
    let bridge = Bridge::start(&[]);
    let mut a = Client::registered(&bridge, 1).await;
    let mut b = Client::registered(&bridge, 2).await;
    bridge
        .wait_for_log(&[
            "INFO",
            &format!("peer {} registered on connection 1", a.id().short()),
        ])
        .await;
    bridge
        .wait_for_log(&[
            "INFO",
            &format!("peer {} registered on connection 2", b.id().short()),
        ])
        .await;

    let peers = b.find_peer(a.id()).await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, a.id());
    assert_eq!(peers[0].pubkey, a.identity.public_key());

    b.send(&SignalMsg::Introduce {
        peer: a.id(),
        session: 42,
        sdp: "v=0 offer".into(),
    })
    .await;
    assert_eq!(
        a.recv().await,
        SignalMsg::Introduce {
            peer: b.id(),
            session: 42,
            sdp: "v=0 offer".into()
        }
    );
    a.send(&SignalMsg::Introduced {
        peer: b.id(),
        session: 42,
        sdp: "v=0 answer".into(),
    })
    .await;
    assert_eq!(
        b.recv().await,
        SignalMsg::Introduced {
            peer: a.id(),
            session: 42,
            sdp: "v=0 answer".into()
        }
    );

    // A normal goodbye is logged at INFO, with the peer.
    let a_short = a.id().short();
    a.close().await;
    bridge
        .wait_for_log(&[
            "INFO",
            &format!("closing connection 1 (peer {a_short}): the peer said goodbye"),
        ])
        .await;
    // And A is gone from the registry.
    assert!(b.find_peer(b.id()).await.is_empty());
}

/// Things a client can do wrong.
#[derive(Debug, Clone, Copy)]
enum Misbehaviour {
    /// Hello, then bytes that are no command.
    Garbage,
    /// A hello missing its last bytes.
    TruncatedHello,
    /// A binary frame of this many bytes.
    Oversized(usize),
    Text,
    /// FindPeer as the first frame.
    BeforeHello,
    /// An empty binary frame.
    Empty,
    /// Hello, then this many FindPeers without reading the answers.
    Flood(usize),
    /// Nothing at all: no hello.
    Silent,
}

impl Misbehaviour {
    async fn act(self, c: &mut Client) {
        match self {
            Misbehaviour::Garbage => {
                c.send_raw(Message::Binary(hello_frame(&c.identity).into()))
                    .await;
                assert!(matches!(c.recv().await, SignalMsg::Welcome { .. }));
                c.send_raw(Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()))
                    .await;
            }
            Misbehaviour::TruncatedHello => {
                let mut hello = hello_frame(&c.identity);
                hello.truncate(hello.len() - 10);
                c.send_raw(Message::Binary(hello.into())).await;
            }
            Misbehaviour::Oversized(len) => {
                c.send_raw(Message::Binary(vec![0x12; len].into())).await;
            }
            Misbehaviour::Text => c.send_raw(Message::Text("hello".into())).await,
            Misbehaviour::BeforeHello => {
                let (id, pubkey) = (c.id(), c.identity.public_key());
                c.send(&SignalMsg::FindPeer { id, pubkey }).await;
            }
            Misbehaviour::Empty => c.send_raw(Message::Binary(Vec::new().into())).await,
            Misbehaviour::Silent => {}
            Misbehaviour::Flood(n) => {
                c.send_raw(Message::Binary(hello_frame(&c.identity).into()))
                    .await;
                let find = SignalMsg::FindPeer {
                    id: c.id(),
                    pubkey: c.identity.public_key(),
                }
                .encode_frame();
                for _ in 0..n {
                    // The bridge may already have closed us; later sends may fail.
                    if !c.try_send_raw(Message::Binary(find.clone().into())).await {
                        break;
                    }
                }
            }
        }
    }
}

/// A registered client, then a misbehaving one: the bridge must close the misbehaving
/// connection (and only it) with `reason` in its log, and keep serving the good one.
async fn closes_only_the_offender(
    args: &[&str],
    bad: Misbehaviour,
    reason: &str,
    code: Option<u16>,
) -> common::Ending {
    let bridge = Bridge::start(args);
    let mut good = Client::registered(&bridge, 1).await;
    let mut offender = Client::connect(&bridge, 2).await;
    let offender_id = offender.id();
    bad.act(&mut offender).await;
    let ending = offender.expect_closed().await;
    assert!(
        ending.error.is_some() || ending.close.is_some(),
        "{bad:?}: neither an Error frame nor a close frame arrived: {ending:?}"
    );
    if let Some(code) = code {
        let (got, text) = ending
            .error
            .clone()
            .expect("an Error frame before the close");
        assert_eq!(got, code, "{bad:?}: {text}");
        assert!(text.contains(reason), "{bad:?}: error text {text:?}");
    }

    let line = bridge
        .wait_for_log(&["WARN", "closing connection 2", reason])
        .await;
    let registered = matches!(bad, Misbehaviour::Garbage | Misbehaviour::Flood(_));
    assert_eq!(
        line.contains(&format!(
            "closing connection 2 (peer {}): ",
            offender_id.short()
        )),
        registered,
        "{line}"
    );

    // The well-behaved client is still served, and newcomers are too.
    assert!(good.find_peer(good.id()).await.is_empty());
    let newcomer = Client::registered(&bridge, 3).await;
    let peers = good.find_peer(newcomer.id()).await;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].id, newcomer.id());
    ending
}

#[tokio::test]
async fn garbage_after_hello_closes_that_connection() {
    closes_only_the_offender(
        &[],
        Misbehaviour::Garbage,
        "unknown command 0xde",
        Some(PROTOCOL),
    )
    .await;
}

#[tokio::test]
async fn truncated_hello_closes_that_connection() {
    closes_only_the_offender(
        &[],
        Misbehaviour::TruncatedHello,
        "malformed frame: the frame ended early",
        Some(MALFORMED),
    )
    .await;
}

#[tokio::test]
async fn empty_frame_closes_that_connection() {
    closes_only_the_offender(
        &[],
        Misbehaviour::Empty,
        "malformed frame: the frame is empty",
        Some(MALFORMED),
    )
    .await;
}

#[tokio::test]
async fn frame_before_hello_closes_that_connection() {
    closes_only_the_offender(
        &[],
        Misbehaviour::BeforeHello,
        "the first frame must be a hello",
        Some(PROTOCOL),
    )
    .await;
}

#[tokio::test]
async fn text_frame_closes_that_connection() {
    let ending = closes_only_the_offender(
        &[],
        Misbehaviour::Text,
        "a text frame arrived; this protocol uses binary frames only",
        Some(MALFORMED),
    )
    .await;
    assert_eq!(ending.close.map(|c| u16::from(c.code)), Some(1003));
}

#[tokio::test]
async fn oversized_frame_closes_that_connection() {
    // 40 000 bytes: above the default --max-frame (32768).
    let ending = closes_only_the_offender(
        &[],
        Misbehaviour::Oversized(40_000),
        "the frame is larger than the maximum of 32768 bytes",
        Some(MALFORMED),
    )
    .await;
    assert_eq!(ending.close.map(|c| u16::from(c.code)), Some(1009));
}

#[tokio::test]
async fn max_frame_flag_is_enforced() {
    closes_only_the_offender(
        &["--max-frame", "4096"],
        Misbehaviour::Oversized(5000),
        "the frame is larger than the maximum of 4096 bytes",
        Some(MALFORMED),
    )
    .await;
}

#[tokio::test]
async fn flood_above_the_rate_limit_closes_that_connection() {
    let ending = closes_only_the_offender(
        &["--rate", "5", "--burst", "10"],
        Misbehaviour::Flood(40),
        "sending faster than the per-peer rate limit",
        Some(RATE_LIMITED),
    )
    .await;
    // The burst was served before the limit hit: Welcome plus some FoundPeers.
    assert!(matches!(
        ending.before.first(),
        Some(SignalMsg::Welcome { .. })
    ));
    assert!(ending.before.len() < 40);
}

#[tokio::test]
async fn no_hello_in_time_closes_that_connection() {
    // The hello deadline is the core's timer, driven by the bridge's sleep on `poll_timeout`.
    closes_only_the_offender(
        &["--hello-timeout", "300"],
        Misbehaviour::Silent,
        "no hello within the time limit",
        Some(HELLO_TIMEOUT),
    )
    .await;
}

#[tokio::test]
async fn a_slow_reader_is_dropped_and_the_sender_is_not() {
    // No rate limit to speak of: the sender must be able to outrun the slow reader.
    let bridge = Bridge::start(&["--rate", "1000000", "--burst", "1000000"]);
    let mut sender = Client::registered(&bridge, 1).await;
    // Registered, then never reads again.
    let slow = Client::registered(&bridge, 2).await;
    let slow_id = slow.id();
    let needle = format!(
        "closing connection 2 (peer {}): the peer reads too slowly",
        slow_id.short()
    );
    let sdp = "x".repeat(16_000);
    let mut session = 0u64;
    // Socket buffers on loopback hold several MiB; keep pushing 16 KB offers until the bridge
    // gives up on the reader (bounded, so a broken bridge fails instead of hanging).
    while !bridge.stderr().contains(&needle) {
        assert!(session < 20_000, "the slow reader was never dropped");
        for _ in 0..20 {
            session += 1;
            let sdp = sdp.clone();
            sender
                .send(&SignalMsg::Introduce {
                    peer: slow_id,
                    session,
                    sdp,
                })
                .await;
        }
        tokio::task::yield_now().await;
    }
    bridge.wait_for_log(&["WARN", &needle]).await;

    // The sender is still served; introductions sent after the drop come back as failures.
    let (id, pubkey) = (sender.id(), sender.identity.public_key());
    sender.send(&SignalMsg::FindPeer { id, pubkey }).await;
    loop {
        match sender.recv().await {
            SignalMsg::IntroduceFailed { peer, .. } => assert_eq!(peer, slow_id),
            SignalMsg::FoundPeer { peers } => {
                assert!(peers.is_empty(), "the slow reader is still listed");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(slow);
}

#[tokio::test]
async fn connection_limit_refuses_with_503() {
    let bridge = Bridge::start(&["--max-connections", "2"]);
    let first = Client::connect(&bridge, 1).await;
    let _second = Client::registered(&bridge, 2).await;
    match tokio_tungstenite::connect_async(bridge.ws_url()).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    bridge
        .wait_for_log(&[
            "WARN",
            "refusing a WebSocket",
            "all 2 connection slots are in use",
        ])
        .await;

    // A slot frees up when a connection ends.
    first.close().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match tokio_tungstenite::connect_async(bridge.ws_url()).await {
            Ok(_) => break,
            Err(tungstenite::Error::Http(resp)) if resp.status() == 503 => {
                assert!(Instant::now() < deadline, "the slot was never released");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

#[tokio::test]
async fn serves_static_files() {
    let dir = TempDir::new("static");
    let index = "<!doctype html><title>onionmesh test page</title>";
    std::fs::write(dir.path().join("index.html"), index).unwrap();
    let wasm = b"\0asm\x01\0\0\0";
    std::fs::write(dir.path().join("onionmesh_bg.wasm"), wasm).unwrap();
    let static_dir = dir.path().to_str().unwrap();
    let bridge = Bridge::start(&["--static-dir", static_dir]);

    let (status, headers, body) = http_get(bridge.addr, "/");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, index.as_bytes());
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));

    let (status, headers, body) = http_get(bridge.addr, "/onionmesh_bg.wasm");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body, wasm);
    assert_eq!(header(&headers, "content-type"), Some("application/wasm"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));

    let (status, _, _) = http_get(bridge.addr, "/missing.js");
    assert!(status.contains("404"), "{status}");
}

async fn signal_shuts_down_cleanly(sig: &str) {
    let mut bridge = Bridge::start(&[]);
    let client = Client::registered(&bridge, 1).await;
    let short = client.id().short();
    bridge.signal(sig);
    let ending = client.expect_closed().await;
    assert_eq!(ending.close.map(|c| u16::from(c.code)), Some(1001));
    let status = bridge.wait_exit().await;
    assert!(status.success(), "exit status {status:?}");
    let log = bridge.stderr();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        log.contains(&format!(
            "closing connection 1 (peer {short}): the bridge is shutting down"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn sigint_exits_zero_promptly() {
    signal_shuts_down_cleanly("INT").await;
}

#[tokio::test]
async fn sigterm_exits_zero_promptly() {
    signal_shuts_down_cleanly("TERM").await;
}

#[test]
fn help_names_every_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onionmesh-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--static-dir",
        "--log-level",
        "--max-connections",
        "--rate",
        "--burst",
        "--max-frame",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
