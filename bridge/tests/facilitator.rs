//! The facilitator against real BitTorrent software from Debian, all on loopback: opentracker
//! (a whitelisting tracker, chrooted), a torrent made by mktorrent, seeded by aria2c, and the
//! real bridge binary with `--bt-dht off --tracker <opentracker>`. The test is the page: it
//! registers over the encrypted channel and sends `Facilitate` frames.

mod common;

use common::facilitate::*;
use common::{Bridge, Client, TempDir};
use onionmesh_wire::db::{DbEndReason, DbMsg, DescriptorKind, HashName};
use onionmesh_wire::SignalMsg;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Deserialize;
use sha1::{Digest, Sha1};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const PIECE_LEN: u64 = 1 << 18;
const OPENTRACKER: &str = "/usr/bin/opentracker";
const MKTORRENT: &str = "/usr/bin/mktorrent";
const ARIA2C: &str = "/usr/bin/aria2c";

/// The info dictionary, parsed as a page would (serde_bencode).
#[derive(Debug, Deserialize)]
struct Info {
    #[serde(rename = "piece length")]
    piece_length: u64,
    #[serde(with = "serde_bytes")]
    pieces: Vec<u8>,
    length: Option<u64>,
    files: Option<Vec<InfoFile>>,
}

#[derive(Debug, Deserialize)]
struct InfoFile {
    length: u64,
    path: Vec<String>,
}

impl Info {
    fn piece_hash(&self, i: usize) -> &[u8] {
        &self.pieces[i * 20..(i + 1) * 20]
    }

    /// `(path, offset, length)` of every file, in torrent order.
    fn files(&self) -> Vec<(String, u64, u64)> {
        match (&self.files, self.length) {
            (Some(files), _) => {
                let mut at = 0;
                files
                    .iter()
                    .map(|f| {
                        let e = (f.path.join("/"), at, f.length);
                        at += f.length;
                        e
                    })
                    .collect()
            }
            (None, Some(len)) => vec![(String::new(), 0, len)],
            (None, None) => panic!("an info dictionary with neither length nor files"),
        }
    }

    fn total(&self) -> u64 {
        self.files().iter().map(|f| f.2).sum()
    }
}

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(bin: &str) {
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: install Debian's opentracker, mktorrent and aria2 \
         (cargo xtask test installs them)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// mktorrent with 2^18-byte pieces; returns the infohash as aria2c computes it (`aria2c -S`),
/// so the bridge is checked against another implementation.
fn make_torrent(content: &Path, out: &Path, announce: &str) -> [u8; 20] {
    require(MKTORRENT);
    require(ARIA2C);
    let status = Command::new(MKTORRENT)
        .args(["-l", "18", "-a", announce, "-o"])
        .arg(out)
        .arg(content)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "mktorrent failed");
    let shown = Command::new(ARIA2C).arg("-S").arg(out).output().unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Info Hash:"))
        .unwrap_or_else(|| panic!("aria2c -S shows no infohash:\n{text}"));
    let mut hash = [0u8; 20];
    hex::decode_to_slice(line.trim(), &mut hash).unwrap();
    hash
}

/// One tracker and one seeder for `torrents` (files under `data`).
struct Swarm {
    _tracker: Running,
    _seeder: Running,
    announce: String,
    rpc: String,
}

impl Swarm {
    /// opentracker on a free loopback port, whitelisting `hashes`.
    fn tracker(dir: &Path, hashes: &[[u8; 20]]) -> (Running, String, u16) {
        require(OPENTRACKER);
        let port = free_port();
        // Debian's opentracker chroots into its root directory before reading the whitelist.
        let root = dir.join("tracker-root");
        std::fs::create_dir_all(&root).unwrap();
        let list: String = hashes
            .iter()
            .map(|h| format!("{}\n", hex::encode(h)))
            .collect();
        std::fs::write(root.join("whitelist"), list).unwrap();
        let conf = dir.join("opentracker.conf");
        std::fs::write(
            &conf,
            format!(
                "listen.tcp_udp 127.0.0.1:{port}\ntracker.rootdir {}\n\
                 access.whitelist /whitelist\ntracker.user nobody\n",
                root.display()
            ),
        )
        .unwrap();
        let child = Command::new(OPENTRACKER)
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "opentracker did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        (running, format!("http://127.0.0.1:{port}/announce"), port)
    }

    /// aria2c seeding `torrents` from `data`, never uploading anything else, with its RPC on.
    fn seeder(data: &Path, torrents: &[PathBuf], announce: &str) -> (Running, String) {
        require(ARIA2C);
        let rpc_port = free_port();
        let child = Command::new(ARIA2C)
            .arg(format!("--dir={}", data.display()))
            .args([
                "--check-integrity=true",
                "--seed-ratio=0.0",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--file-allocation=none",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--enable-rpc=true",
                "--rpc-listen-all=false",
                "--interface=127.0.0.1",
            ])
            // The torrents name a placeholder tracker: announce to ours instead.
            .arg("--bt-exclude-tracker=*")
            .arg(format!("--bt-tracker={announce}"))
            .arg(format!("--listen-port={}", free_port()))
            .arg(format!("--rpc-listen-port={rpc_port}"))
            .arg(format!("--stop-with-process={}", std::process::id()))
            .args(torrents)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (
            Running(child),
            format!("http://127.0.0.1:{rpc_port}/jsonrpc"),
        )
    }

    async fn start(dir: &Path, data: &Path, torrents: &[(PathBuf, [u8; 20])]) -> Swarm {
        let hashes: Vec<[u8; 20]> = torrents.iter().map(|t| t.1).collect();
        let (tracker, announce, _) = Swarm::tracker(dir, &hashes);
        let files: Vec<PathBuf> = torrents.iter().map(|t| t.0.clone()).collect();
        let (seeder, rpc) = Swarm::seeder(data, &files, &announce);
        let swarm = Swarm {
            _tracker: tracker,
            _seeder: seeder,
            announce,
            rpc,
        };
        // The bridge asks the tracker once at start: the seeder must be listed by then.
        for h in &hashes {
            swarm.wait_for_seeder(h).await;
        }
        swarm
    }

    /// Until the tracker's scrape lists a complete peer for `hash`.
    async fn wait_for_seeder(&self, hash: &[u8; 20]) {
        let scrape = self.announce.replace("/announce", "/scrape");
        // Every byte percent-encoded: form encoding would send a 0x20 byte as `+`, which
        // trackers read literally.
        let encoded: String = hash.iter().map(|b| format!("%{b:02x}")).collect();
        let url = format!("{scrape}?info_hash={encoded}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if let Ok(body) = r.bytes().await {
                    if scrape_complete(&body) > 0 {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "aria2c never announced {} as a seeder",
                hex::encode(hash)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The seeder's upload counter for `hash`, in bytes (aria2's JSON-RPC `tellActive`).
    async fn uploaded(&self, hash: &[u8; 20]) -> u64 {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "id": "t",
            "method": "aria2.tellActive",
            "params": [["infoHash", "uploadLength"]],
        });
        let answer: serde_json::Value = reqwest::Client::new()
            .post(&self.rpc)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        let want = hex::encode(hash);
        answer["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["infoHash"] == want.as_str())
            .and_then(|d| d["uploadLength"].as_str())
            .expect("the seeder serves the torrent")
            .parse()
            .unwrap()
    }
}

/// `complete` of the first file in a bencoded scrape answer.
fn scrape_complete(body: &[u8]) -> i64 {
    use serde_bencode::value::Value;
    let Ok(Value::Dict(top)) = serde_bencode::from_bytes::<Value>(body) else {
        return 0;
    };
    let Some(Value::Dict(files)) = top.get(&b"files"[..]) else {
        return 0;
    };
    files
        .values()
        .find_map(|f| match f {
            Value::Dict(d) => match d.get(&b"complete"[..]) {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or(0)
}

fn bridge(announce: &str, cache: &Path, extra: &[&str]) -> Bridge {
    let mut args = vec![
        "--bt-dht",
        "off",
        "--tracker",
        announce,
        "--exit-allow-private",
        "--metadata-timeout",
        "4000",
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

/// A bare magnet link: the tracker comes from the bridge's `--tracker`.
fn magnet(hash: &[u8; 20]) -> String {
    format!("magnet:?xt=urn:btih:{}", hex::encode(hash))
}

/// Open request `req` for `hash` and return the parsed info dictionary (after checking its
/// SHA-1 is the infohash).
async fn open_torrent(c: &mut Client, req: u32, hash: [u8; 20]) -> Info {
    send_source(c, req, magnet_source(hash, &magnet(&hash))).await;
    let (kind, info) = descriptor(c, req, HashName(hash))
        .await
        .unwrap_or_else(|e| panic!("no descriptor: {}: {}", e.reason().name(), e.sentence()));
    assert_eq!(kind, DescriptorKind::BITTORRENT_V1_INFO);
    let digest: [u8; 20] = Sha1::digest(&info).into();
    assert_eq!(digest, hash, "SHA-1 of the info dictionary is the infohash");
    serde_bencode::from_bytes(&info).expect("an info dictionary")
}

fn check_pieces(info: &Info, first: u64, bytes: &[u8]) -> Vec<bool> {
    bytes
        .chunks(info.piece_length as usize)
        .enumerate()
        .map(|(i, piece)| {
            let digest: [u8; 20] = Sha1::digest(piece).into();
            digest == info.piece_hash(first as usize + i)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_link_streams_a_torrent_verified_piece_by_piece() {
    let dir = TempDir::new("fac-single");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = random_file(&data.join("movie.webm"), 3 * 1024 * 1024 + 12_345, 1);
    let placeholder = "http://127.0.0.1:9/announce";
    let torrent = dir.path().join("movie.torrent");
    let hash = make_torrent(&data.join("movie.webm"), &torrent, placeholder);
    let swarm = Swarm::start(dir.path(), &data, &[(torrent, hash)]).await;
    let cache = dir.path().join("cache");
    let b = bridge(&swarm.announce, &cache, &[]);

    let good = async {
        let mut page = Client::registered(&b, 1).await;
        let info = open_torrent(&mut page, 1, hash).await;
        assert_eq!(info.piece_length, PIECE_LEN);
        assert_eq!(info.total(), file.len() as u64);
        let pieces = info.total().div_ceil(PIECE_LEN);
        // Five whole pieces, then the rest resuming 1000 bytes into piece 5.
        let head = pieces_of(&mut page, 1, hash, (0, 0, 5), 5 * PIECE_LEN).await;
        assert_eq!(head, file[..5 * PIECE_LEN as usize]);
        assert!(check_pieces(&info, 0, &head).iter().all(|ok| *ok));
        let from = 5 * PIECE_LEN + 1000;
        let rest_count = (pieces - 5) as u16;
        let tail = pieces_of(
            &mut page,
            1,
            hash,
            (5, 1000, rest_count),
            file.len() as u64 - from,
        )
        .await;
        assert_eq!(tail, file[from as usize..], "the bytes are the file's");
        let whole_tail = &file[6 * PIECE_LEN as usize..];
        assert!(check_pieces(&info, 6, whole_tail).iter().all(|ok| *ok));
        // A piece past the end.
        send_query(&mut page, 1, HashName(hash), pieces as u32, 0, 1).await;
        let end = expect_end(&mut page, 1, SLOW).await;
        assert_end(&end, DbEndReason::BAD_REQUEST, &["pieces"]);
    };

    let bad = async {
        let mut other = Client::registered(&b, 2).await;
        // A malformed magnet link.
        send_source(
            &mut other,
            7,
            magnet_source([7; 20], "magnet:?xt=urn:btih:nothex"),
        )
        .await;
        let end = expect_end(&mut other, 7, SLOW).await;
        assert_end(&end, DbEndReason::BAD_REQUEST, &["magnet"]);
        // An infohash nobody has: no metadata within --metadata-timeout (4 s).
        let unknown = [0x5a; 20];
        let started = Instant::now();
        send_source(&mut other, 8, magnet_source(unknown, &magnet(&unknown))).await;
        send_query(&mut other, 8, HashName(unknown), 0, 0, 0).await;
        let end = expect_end(&mut other, 8, SLOW).await;
        assert_end(&end, DbEndReason::NOT_FOUND, &["metadata", "4 s"]);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(3_900) && took < Duration::from_secs(9),
            "ended after {took:?}"
        );
        // A magnet whose infohash is not the hash_name.
        send_source(&mut other, 9, magnet_source([1; 20], &magnet(&hash))).await;
        let end = expect_end(&mut other, 9, SLOW).await;
        assert_end(&end, DbEndReason::BAD_REQUEST, &["infohash"]);
        // A query before any DB_SOURCE.
        send_query(&mut other, 10, HashName(hash), 0, 0, 0).await;
        let end = expect_end(&mut other, 10, SLOW).await;
        assert_end(&end, DbEndReason::BAD_REQUEST, &["DB_SOURCE"]);
    };
    // Both connections at once: the failures never disturb the good stream.
    tokio::join!(good, bad);
}

async fn pieces_of(
    c: &mut Client,
    req: u32,
    hash: [u8; 20],
    range: (u32, u32, u16),
    len: u64,
) -> Vec<u8> {
    pieces(c, req, HashName(hash), range, PIECE_LEN, len)
        .await
        .unwrap_or_else(|e| panic!("pieces {range:?}: {}: {}", e.reason().name(), e.sentence()))
}

/// Files named `name` under `dir` (recursively) and the bytes the file system allocated for
/// each.
fn allocated(dir: &Path, name: &str) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(allocated(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(e.metadata().unwrap().blocks() * 512);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chosen_file_of_a_multi_file_torrent_is_fetched() {
    let dir = TempDir::new("fac-multi");
    let data = dir.path().join("data");
    let content = data.join("album");
    std::fs::create_dir_all(&content).unwrap();
    let sizes = [
        ("a.bin", 1_200_000),
        ("b.bin", 700_000),
        ("c.bin", 1_300_000),
    ];
    let mut bytes = std::collections::HashMap::new();
    for (i, (name, len)) in sizes.iter().enumerate() {
        bytes.insert(*name, random_file(&content.join(name), *len, 10 + i as u64));
    }
    let torrent = dir.path().join("album.torrent");
    let hash = make_torrent(&content, &torrent, "http://127.0.0.1:9/announce");
    let swarm = Swarm::start(dir.path(), &data, &[(torrent, hash)]).await;
    let cache = dir.path().join("cache");
    let b = bridge(&swarm.announce, &cache, &[]);

    let mut page = Client::registered(&b, 3).await;
    let info = open_torrent(&mut page, 1, hash).await;
    let files = info.files();
    assert_eq!(files.len(), 3);
    let (_, off, len) = files.iter().find(|f| f.0 == "b.bin").cloned().unwrap();
    let first = off / PIECE_LEN;
    let last = (off + len - 1) / PIECE_LEN;
    let count = last - first + 1;
    let span = (count * PIECE_LEN).min(info.total() - first * PIECE_LEN);
    // The boundary pieces first, each alone, as a page does when its first source is not
    // measured yet (one piece) and when the player seeks to the end: neither may select the
    // neighbour that shares it (a holds more of piece `first` than b does), then the rest.
    let first_len = PIECE_LEN.min(span);
    let mut got = pieces_of(&mut page, 1, hash, (first as u32, 0, 1), first_len).await;
    let last_len = span - (count - 1) * PIECE_LEN;
    let tail = pieces_of(&mut page, 1, hash, (last as u32, 0, 1), last_len).await;
    let middle = span - first_len - last_len;
    let mid = (first as u32 + 1, 0, count as u16 - 2);
    got.extend(pieces_of(&mut page, 1, hash, mid, middle).await);
    got.extend(tail);
    assert!(
        check_pieces(&info, first, &got).iter().all(|ok| *ok),
        "every piece checks"
    );
    let inner = (off - first * PIECE_LEN) as usize;
    assert_eq!(&got[inner..inner + len as usize], &bytes["b.bin"][..]);

    // The seeder uploaded the chosen file's pieces, not the whole torrent.
    let uploaded = swarm.uploaded(&hash).await;
    println!(
        "seeder uploaded {uploaded} bytes for pieces {first}..={last} ({span} bytes) of a \
         {}-byte torrent",
        info.total()
    );
    assert!(
        uploaded >= len,
        "uploaded {uploaded}, the file alone is {len}"
    );
    assert_eq!(
        uploaded, span,
        "the seeder uploaded exactly the {span} bytes of the chosen pieces"
    );
    // Neighbours hold at most their bytes in the boundary pieces.
    for name in ["a.bin", "c.bin"] {
        for held in allocated(&cache, name) {
            assert!(
                held <= PIECE_LEN + 4096,
                "{name} holds {held} bytes in the cache"
            );
        }
    }
    assert_eq!(allocated(&cache, "b.bin").len(), 1, "b.bin is in the cache");

    // When the last request ends, the torrent and its files leave the cache.
    page.send(&SignalMsg::FacilitateClose { req: 1 }).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !allocated(&cache, "b.bin").is_empty() {
        assert!(Instant::now() < deadline, "the cache still holds b.bin");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupting_facilitator_is_caught_by_the_piece_hashes() {
    let dir = TempDir::new("fac-corrupt");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = random_file(&data.join("clip.bin"), 1_000_000, 3);
    let torrent = dir.path().join("clip.torrent");
    let hash = make_torrent(
        &data.join("clip.bin"),
        &torrent,
        "http://127.0.0.1:9/announce",
    );
    let swarm = Swarm::start(dir.path(), &data, &[(torrent, hash)]).await;
    let cache = dir.path().join("cache");
    let b = bridge(&swarm.announce, &cache, &["--test-corrupt-piece", "2"]);

    let mut page = Client::registered(&b, 4).await;
    let info = open_torrent(&mut page, 1, hash).await;
    let got = pieces_of(&mut page, 1, hash, (0, 0, 4), file.len() as u64).await;
    assert_eq!(check_pieces(&info, 0, &got), [true, true, false, true]);
    let differ = got.iter().zip(&file).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 1, "exactly one byte flipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_without_facilitator_or_exit_says_so() {
    let b = Bridge::start(&["--facilitator", "off", "--exit", "off"]);
    let mut page = Client::registered(&b, 5).await;
    let hash = [0x11; 20];
    send_source(&mut page, 1, magnet_source(hash, &magnet(&hash))).await;
    let end = expect_end(&mut page, 1, SLOW).await;
    assert_end(
        &end,
        DbEndReason::UNAVAILABLE,
        &["this bridge is not a facilitator"],
    );
    send_source(&mut page, 2, web_source("http://example.org/file")).await;
    let end = expect_end(&mut page, 2, SLOW).await;
    assert_end(
        &end,
        DbEndReason::UNAVAILABLE,
        &["this bridge is not a web exit"],
    );
    // Anything but DB_SOURCE and DB_QUERY is refused, and the connection lives on.
    page.send(&SignalMsg::Facilitate {
        req: 3,
        msg: DbMsg::End(onionmesh_wire::db::DbEnd::with_sentence(
            DbEndReason::FINISHED,
            "x",
        )),
    })
    .await;
    let end = expect_end(&mut page, 3, SLOW).await;
    assert_end(&end, DbEndReason::BAD_REQUEST, &["DB_END"]);
    // The connection still answers: a peer lookup comes back.
    let _ = page.find_peer(page.id()).await;
}
