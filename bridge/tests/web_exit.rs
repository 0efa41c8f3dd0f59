//! The web exit: the real bridge binary fetches from a local HTTP server (axum, in the test)
//! and streams the file to a page over the encrypted channel; the exit policy refuses private
//! addresses unless told otherwise.

mod common;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use common::facilitate::*;
use common::{Bridge, Client};
use onionmesh_wire::db::{DbEndReason, DescriptorKind, WebMeta};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;

const BIG: usize = 10 * 1024 * 1024;
const SMALL: usize = 300_000;

/// A local HTTP server: `/big` (10 MB with Content-Length), `/chunked` (300 kB without one),
/// `/missing` (404).
async fn server() -> (SocketAddr, Arc<Vec<u8>>, Arc<Vec<u8>>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(42);
    let mut big = vec![0u8; BIG];
    rng.fill_bytes(&mut big);
    let mut small = vec![0u8; SMALL];
    rng.fill_bytes(&mut small);
    let (big, small) = (Arc::new(big), Arc::new(small));
    let (b, s) = (big.clone(), small.clone());
    let app = Router::new()
        .route(
            "/big",
            get(move || {
                let b = b.clone();
                async move { ([(header::CONTENT_TYPE, "video/webm")], b.to_vec()) }
            }),
        )
        .route(
            "/chunked",
            get(move || {
                let s = s.clone();
                async move {
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                        s.chunks(7_000).map(|c| Ok(c.to_vec())).collect();
                    Body::from_stream(futures_util::stream::iter(chunks)).into_response()
                }
            }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, big, small)
}

/// Fetch `url` through the exit as a page would: descriptor, then every piece.
async fn fetch(c: &mut Client, req: u32, url: &str) -> Result<(WebMeta, Vec<u8>), String> {
    let source = web_source(url);
    let hash = source.hash_name;
    send_source(c, req, source).await;
    let (kind, desc) = descriptor(c, req, hash)
        .await
        .map_err(|e| format!("{}: {}", e.reason().name(), e.sentence()))?;
    assert_eq!(kind, DescriptorKind::WEB_V1);
    let meta = WebMeta::decode(&desc).unwrap();
    assert_eq!(&*meta.url, url);
    let piece = u64::from(WebMeta::PIECE_SIZE);
    let count = meta.size.div_ceil(piece) as u16;
    let bytes = pieces(c, req, hash, (0, 0, count), piece, meta.size)
        .await
        .map_err(|e| format!("{}: {}", e.reason().name(), e.sentence()))?;
    Ok((meta, bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_streams_a_10_mb_file_while_other_requests_fail() {
    let (addr, big, small) = server().await;
    let b = Bridge::start(&["--exit-allow-private", "--bt-dht", "off"]);

    let good = async {
        let mut page = Client::registered(&b, 1).await;
        let started = tokio::time::Instant::now();
        let (meta, bytes) = fetch(&mut page, 1, &format!("http://{addr}/big"))
            .await
            .unwrap();
        let per_frame = page.facilitated_answers as f64 / page.facilitated_frames as f64;
        println!(
            "10 MB through the exit in {:?}: {} answers in {} Facilitated frames ({per_frame:.1} per frame)",
            started.elapsed(),
            page.facilitated_answers,
            page.facilitated_frames
        );
        // The exit reads a frame's worth of slices at a time and queues them together, so the
        // connection writes them together: a frame per slice would cost the page a WebSocket
        // message, a pass of its node and a data-channel send per 487 bytes.
        assert!(per_frame >= 20.0, "{per_frame:.1} answers per frame");
        assert_eq!(meta.size, BIG as u64);
        assert_eq!(&*meta.mime, "video/webm");
        assert!(bytes == *big, "the bytes are the server's");
    };
    let others = async {
        let mut page = Client::registered(&b, 2).await;
        // Without Content-Length the exit fetches first; the size is still exact.
        let (meta, bytes) = fetch(&mut page, 1, &format!("http://{addr}/chunked"))
            .await
            .unwrap();
        assert_eq!(meta.size, SMALL as u64);
        assert_eq!(&*meta.mime, "application/octet-stream");
        assert!(bytes == *small);
        let e = fetch(&mut page, 2, &format!("http://{addr}/missing"))
            .await
            .unwrap_err();
        assert!(
            e.starts_with("UNAVAILABLE") && e.contains("HTTP 404"),
            "{e}"
        );
        // Nobody listens on port 9.
        let e = fetch(&mut page, 3, "http://127.0.0.1:9/x")
            .await
            .unwrap_err();
        assert!(
            e.starts_with("UNAVAILABLE") && e.contains("127.0.0.1"),
            "{e}"
        );
    };
    tokio::join!(good, others);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exit_policy_refuses_private_addresses_with_a_sentence() {
    let (addr, _, _) = server().await;
    let b = Bridge::start(&["--bt-dht", "off"]);
    let mut page = Client::registered(&b, 3).await;

    let e = fetch(&mut page, 1, &format!("http://{addr}/big"))
        .await
        .unwrap_err();
    assert!(e.starts_with("UNAVAILABLE"), "{e}");
    assert!(
        e.contains("127.0.0.1") && e.contains("loopback") && e.contains("public"),
        "{e}"
    );
    // A name that resolves to loopback is refused by the exit's resolver.
    let e = fetch(
        &mut page,
        2,
        &format!("http://localhost:{}/big", addr.port()),
    )
    .await
    .unwrap_err();
    assert!(e.contains("localhost") && e.contains("loopback"), "{e}");
    // Only http and https.
    let e = fetch(&mut page, 3, "ftp://example.org/file")
        .await
        .unwrap_err();
    assert!(e.starts_with("BAD_REQUEST") && e.contains("ftp"), "{e}");
    // A hash_name that is not the URL's.
    let mut wrong = web_source(&format!("http://{addr}/big"));
    wrong.hash_name.0[0] ^= 1;
    send_source(&mut page, 4, wrong).await;
    let end = expect_end(&mut page, 4, SLOW).await;
    assert_end(&end, DbEndReason::BAD_REQUEST, &["hash_name"]);

    // Allowed by name, but over the size limit, with and without Content-Length.
    let small = Bridge::start(&[
        "--bt-dht",
        "off",
        "--exit-allow",
        "127.0.0.1",
        "--exit-max-bytes",
        "100000",
    ]);
    let mut page = Client::registered(&small, 4).await;
    let e = fetch(&mut page, 1, &format!("http://{addr}/big"))
        .await
        .unwrap_err();
    assert!(
        e.contains("--exit-max-bytes") && e.contains(&BIG.to_string()),
        "{e}"
    );
    let e = fetch(&mut page, 2, &format!("http://{addr}/chunked"))
        .await
        .unwrap_err();
    assert!(e.contains("--exit-max-bytes"), "{e}");
}
