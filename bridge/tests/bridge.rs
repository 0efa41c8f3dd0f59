//! End-to-end tests: the real `onionmesh-bridge` binary, real WebSocket clients.

mod common;

use common::{header, hello_frame, http_get, Bridge, Client, TempDir, PATIENCE};
use onionmesh_wire::signal::Sdp;
use onionmesh_wire::{Frame, SignalMsg};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

// Stable error codes from `onionmesh_rendezvous::codes`.
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
        sdp: "v=0 offer".try_into().unwrap(),
    })
    .await;
    assert_eq!(
        a.recv().await,
        SignalMsg::Introduce {
            peer: b.id(),
            session: 42,
            sdp: "v=0 offer".try_into().unwrap()
        }
    );
    a.send(&SignalMsg::Introduced {
        peer: b.id(),
        session: 42,
        sdp: "v=0 answer".try_into().unwrap(),
    })
    .await;
    assert_eq!(
        b.recv().await,
        SignalMsg::Introduced {
            peer: a.id(),
            session: 42,
            sdp: "v=0 answer".try_into().unwrap()
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
    /// Hello, then a sealed frame with one bit flipped on the wire.
    Tampered,
    /// Hello, then the very same sealed hello again.
    Replayed,
}

impl Misbehaviour {
    async fn act(self, c: &mut Client) {
        match self {
            Misbehaviour::Garbage => {
                c.send_raw(Message::Binary(c.hello_frame().into())).await;
                assert!(matches!(c.recv().await, SignalMsg::Welcome { .. }));
                c.send_raw(Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()))
                    .await;
            }
            Misbehaviour::TruncatedHello => {
                let mut hello = c.hello_frame();
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
            Misbehaviour::Tampered => {
                c.send_raw(Message::Binary(c.hello_frame().into())).await;
                assert!(matches!(c.recv().await, SignalMsg::Welcome { .. }));
                let find = SignalMsg::FindPeer {
                    id: c.id(),
                    pubkey: c.identity.public_key(),
                }
                .encode_frame();
                let mut sealed = c.seal(&find);
                sealed[3] ^= 0x20;
                c.send_unsealed(Message::Binary(sealed.into())).await;
            }
            Misbehaviour::Replayed => {
                let sealed = c.seal(&c.hello_frame());
                c.send_unsealed(Message::Binary(sealed.clone().into()))
                    .await;
                assert!(matches!(c.recv().await, SignalMsg::Welcome { .. }));
                c.send_unsealed(Message::Binary(sealed.into())).await;
            }
            Misbehaviour::Flood(n) => {
                c.send_raw(Message::Binary(c.hello_frame().into())).await;
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
    let registered = matches!(
        bad,
        Misbehaviour::Garbage
            | Misbehaviour::Flood(_)
            | Misbehaviour::Tampered
            | Misbehaviour::Replayed
    );
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
async fn tampered_frame_closes_that_connection() {
    closes_only_the_offender(
        &[],
        Misbehaviour::Tampered,
        "link channel: a frame failed authentication",
        None,
    )
    .await;
}

#[tokio::test]
async fn replayed_frame_closes_that_connection() {
    closes_only_the_offender(
        &[],
        Misbehaviour::Replayed,
        "link channel: a frame failed authentication",
        None,
    )
    .await;
}

#[tokio::test]
async fn a_bad_link_handshake_closes_that_connection() {
    let bridge = Bridge::start(&["--hello-timeout", "500"]);
    let mut good = Client::registered(&bridge, 1).await;
    // An unencrypted hello where the handshake's first message belongs.
    let mut plain = Client::connect_plain(&bridge, 2).await;
    plain
        .send_unsealed(Message::Binary(
            hello_frame(&plain.identity, &[0; 32]).into(),
        ))
        .await;
    let ending = plain.expect_closed().await;
    assert_eq!(ending.close.map(|c| u16::from(c.code)), Some(1008));
    bridge
        .wait_for_log(&["WARN", "closing connection 2", "link handshake failed"])
        .await;
    // Silence during the handshake: closed after --hello-timeout.
    let silent = Client::connect_plain(&bridge, 3).await;
    silent.expect_closed().await;
    bridge
        .wait_for_log(&[
            "WARN",
            "closing connection 3",
            "no link handshake within 500 ms",
        ])
        .await;
    assert!(good.find_peer(good.id()).await.is_empty());
}

#[tokio::test]
async fn a_passive_observer_sees_no_identity_and_no_plaintext() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bridge = Bridge::start(&[]);
    // A TCP relay between the client and the bridge that records every byte both ways.
    let tap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tap_addr = tap.local_addr().unwrap();
    let wire = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let (bridge_addr, log) = (bridge.addr, wire.clone());
    tokio::spawn(async move {
        let (client, _) = tap.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(bridge_addr).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let log2 = log.clone();
        let up = async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = cr.read(&mut buf).await {
                log.lock().unwrap().extend_from_slice(&buf[..n]);
                if sw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        };
        let down = async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = sr.read(&mut buf).await {
                log2.lock().unwrap().extend_from_slice(&buf[..n]);
                if cw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        };
        tokio::join!(up, down);
    });

    let mut observed = Client::connect_url(&format!("ws://{tap_addr}/ws"), 1).await;
    let hello = observed.hello_frame();
    observed
        .send_raw(Message::Binary(hello.clone().into()))
        .await;
    let welcome = observed.recv().await;
    let SignalMsg::Welcome { bridge_pubkey, .. } = welcome.clone() else {
        panic!("expected Welcome, got {welcome:?}");
    };
    let info = observed.recv().await;
    assert!(
        matches!(info, SignalMsg::BridgeInfo { .. }),
        "expected BridgeInfo, got {info:?}"
    );
    let other = Client::registered(&bridge, 2).await;
    let found = observed.find_peer(other.id()).await;
    assert_eq!(found.len(), 1);
    let bridge_id = observed.bridge_id();
    assert_eq!(onionmesh_crypto::node_id(&bridge_pubkey), bridge_id);
    bridge
        .wait_for_log(&["INFO", &format!("bridge ID {bridge_id}")])
        .await;
    let (observed_id, observed_key) = (observed.id(), observed.identity.public_key());
    observed.close().await;

    let wire = wire.lock().unwrap().clone();
    assert!(wire.len() > 500, "the tap saw the traffic");
    let secrets: [(&str, Vec<u8>); 7] = [
        ("the node's ID", observed_id.0.to_vec()),
        ("the node's public key", observed_key.to_vec()),
        ("the bridge's ID", bridge_id.0.to_vec()),
        ("the bridge's public key", bridge_pubkey.to_vec()),
        ("the other peer's ID", other.id().0.to_vec()),
        ("the hello", hello),
        ("the welcome", welcome.encode_frame()),
    ];
    for (what, bytes) in secrets {
        // Any 8-byte window would be a leak; none may appear anywhere in the capture.
        for window in bytes.windows(8) {
            assert!(
                !wire.windows(8).any(|w| w == window),
                "{what} is visible on the wire"
            );
        }
    }
    // Nor do the hex forms (as in a log line or a JSON message).
    let text = String::from_utf8_lossy(&wire);
    assert!(!text.contains(&observed_id.to_hex()[..16]));
    assert!(!text.contains(&bridge_id.to_hex()[..16]));
}

#[tokio::test]
async fn key_file_keeps_the_bridge_identity() {
    let dir = TempDir::new("key-file");
    let key = dir.path().join("bridge.key");
    let key_arg = key.to_str().unwrap();
    let first = {
        let bridge = Bridge::start(&["--key-file", key_arg]);
        bridge
            .wait_for_log(&["INFO", "created a new bridge identity in"])
            .await;
        Client::connect(&bridge, 1).await.bridge_id()
    };
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key file is private");
    }
    let bridge = Bridge::start(&["--key-file", key_arg]);
    assert_eq!(Client::connect(&bridge, 1).await.bridge_id(), first);
    bridge
        .wait_for_log(&["INFO", &format!("bridge ID {first}")])
        .await;
    // A fresh bridge has another identity.
    let other = Bridge::start(&[]);
    assert_ne!(Client::connect(&other, 1).await.bridge_id(), first);
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
    // Registered, then never reads again. Its small receive buffer makes the backlog build at
    // the bridge within kilobytes: with loopback's auto-tuned megabytes, a loaded machine once
    // took longer to fill them than the bridge's 25 s silence limit, which dropped the reader
    // for silence instead.
    let slow = Client::registered_small_buffer(&bridge, 2).await;
    let slow_id = slow.id();
    let needle = format!(
        "closing connection 2 (peer {}): the peer reads too slowly",
        slow_id.short()
    );
    let sdp: Sdp = "x".repeat(16_000).try_into().unwrap();
    let mut session = 0u64;
    // Socket buffers on loopback hold several MiB; keep pushing 16 KB answers until the bridge
    // gives up on the reader (bounded, so a broken bridge fails instead of hanging). Answers,
    // not offers: an offer makes the bridge probe its target, and a target that reads nothing
    // fails that probe within 3 s and is sent no more offers (see `a_suspended_page_...`).
    while !bridge.stderr().contains(&needle) {
        assert!(session < 20_000, "the slow reader was never dropped");
        for _ in 0..20 {
            session += 1;
            let sdp = sdp.clone();
            sender
                .send(&SignalMsg::Introduced {
                    peer: slow_id,
                    session,
                    sdp,
                })
                .await;
        }
        tokio::task::yield_now().await;
    }
    bridge.wait_for_log(&["WARN", &needle]).await;

    // The sender is still served (answers sent after the drop are dropped: the answerer's
    // own timeout covers them).
    let (id, pubkey) = (sender.id(), sender.identity.public_key());
    sender.send(&SignalMsg::FindPeer { id, pubkey }).await;
    loop {
        match sender.recv().await {
            SignalMsg::IntroduceFailed { peer, .. } => assert_eq!(peer, slow_id),
            // Its departure is announced to the other pages.
            SignalMsg::PeersGone { ids } => assert_eq!(ids, vec![slow_id]),
            SignalMsg::FoundPeer { peers } => {
                assert!(peers.is_empty(), "the slow reader is still listed");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(slow);
}

/// Opens a WebSocket and returns the close frame the bridge sends at once, or `None` if it keeps
/// the connection open (a slot was granted).
async fn refusal_close(bridge: &Bridge) -> Option<tungstenite::protocol::CloseFrame> {
    use futures_util::StreamExt;
    let (mut ws, _) = tokio_tungstenite::connect_async(bridge.ws_url())
        .await
        .expect("the upgrade itself succeeds; a refusal comes as a close frame");
    match tokio::time::timeout(std::time::Duration::from_millis(300), ws.next()).await {
        Ok(Some(Ok(Message::Close(frame)))) => Some(frame.expect("a close reason")),
        Err(_) => None,
        other => panic!("expected a close frame or nothing, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_limit_refuses_with_a_sentence() {
    let bridge = Bridge::start(&["--max-connections", "2"]);
    let first = Client::connect(&bridge, 1).await;
    let _second = Client::registered(&bridge, 2).await;
    // Both slots hold secured links, so nothing gives way: the page reads a reason, not a 1006.
    let close = refusal_close(&bridge).await.expect("refused");
    assert_eq!(u16::from(close.code), 1013);
    assert!(
        close.reason.contains("this bridge is full (2 connections)"),
        "{close:?}"
    );
    bridge
        .wait_for_log(&[
            "WARN",
            "refusing a connection",
            "this bridge is full (2 connections)",
        ])
        .await;

    // A slot frees up when a connection ends.
    first.close().await;
    let deadline = Instant::now() + PATIENCE;
    while refusal_close(&bridge).await.is_some() {
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
        "--key-file",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}
