//! Test harness: the real bridge binary on 127.0.0.1 port 0, and real WebSocket clients.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

pub mod facilitate;

use futures_util::{SinkExt, StreamExt};
use onionmesh_crypto::channel::{Channel, ClientHandshake};
use onionmesh_crypto::{hello, Identity};
use onionmesh_wire::signal::ChallengeNonce;
use onionmesh_wire::{Frame, NodeId, PeerRecord, SignalMsg};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for anything the bridge should do "at once"; tests poll, they do not sleep.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A running bridge process. Killed on drop if still running.
pub struct Bridge {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until EOF; joined after exit so the log is complete.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    pub fn start(args: &[&str]) -> Bridge {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onionmesh-bridge"));
        cmd.args(["--listen", "127.0.0.1:0"]);
        if !args.contains(&"--static-dir") {
            cmd.args(["--static-dir", "/nonexistent-onionmesh-test"]);
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the bridge binary");

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(err_pipe.read_line(&mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });

        let (tx, rx) = mpsc::channel();
        let mut out_pipe = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = out_pipe.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the bridge can never block on a full pipe.
            let _ = std::io::copy(&mut out_pipe, &mut std::io::sink());
        });
        let line = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            panic!(
                "the bridge printed no listening line; stderr:\n{}",
                stderr.lock().unwrap()
            )
        });
        let url = line
            .trim_end()
            .strip_prefix("onionmesh bridge listening on http://")
            .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"));
        let addr: SocketAddr = url.parse().expect("an ip:port");
        assert_ne!(addr.port(), 0);
        Bridge {
            child,
            addr,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains a line with every one of `needles`; returns that line.
    pub async fn wait_for_log(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.stderr();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no log line containing {needles:?}; stderr:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, then for the rest of its stderr.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().expect("the stderr reader");
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the bridge did not exit; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("bridge stderr:\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn identity(seed: u8) -> Identity {
    Identity::from_seed([seed; 32]).expect("a valid test seed")
}

/// A hello signing `challenge` (the bridge's challenge on the connection it is sent on).
pub fn hello_frame(identity: &Identity, challenge: &ChallengeNonce) -> Vec<u8> {
    SignalMsg::Hello {
        pubkey: identity.public_key(),
        challenge: *challenge,
        sig: hello::sign(identity, challenge),
    }
    .encode_frame()
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Default)]
pub struct Ending {
    /// The `SignalMsg::Error` received before the end, if any: (code, reason).
    pub error: Option<(u16, String)>,
    pub close: Option<CloseFrame>,
    /// Other signalling messages that arrived first.
    pub before: Vec<SignalMsg>,
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub identity: Identity,
    /// The link's secure channel; `None` for a client that skipped the handshake.
    channel: Option<Channel>,
    /// The bridge's challenge on this connection (all zero before the link handshake).
    pub challenge: ChallengeNonce,
    /// Facilitated answers received in a frame and not yet taken (see `facilitate::answer`).
    pub facilitated: std::collections::VecDeque<onionmesh_wire::signal::FacilitatedAnswer>,
    /// `Facilitated` frames and the answers in them, received so far.
    pub facilitated_frames: u64,
    pub facilitated_answers: u64,
}

impl Client {
    /// Connect and run the link handshake (not yet registered).
    pub async fn connect(bridge: &Bridge, seed: u8) -> Client {
        Client::connect_url(&bridge.ws_url(), seed).await
    }

    pub async fn connect_url(url: &str, seed: u8) -> Client {
        let mut c = Client::connect_plain_url(url, seed).await;
        c.handshake().await;
        // The bridge's first frame on every connection.
        match c.recv().await {
            SignalMsg::Challenge { nonce } => c.challenge = nonce,
            other => panic!("expected the bridge's Challenge first, got {other:?}"),
        }
        c
    }

    /// A hello signing this connection's challenge.
    pub fn hello_frame(&self) -> Vec<u8> {
        hello_frame(&self.identity, &self.challenge)
    }

    /// Connect without the link handshake, to misbehave at that level.
    pub async fn connect_plain(bridge: &Bridge, seed: u8) -> Client {
        Client::connect_plain_url(&bridge.ws_url(), seed).await
    }

    async fn connect_plain_url(url: &str, seed: u8) -> Client {
        let (ws, _) = tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("WebSocket handshake");
        Client::over(ws, seed)
    }

    /// A registered client whose socket's receive buffer is a few KiB (`SO_RCVBUF` set before
    /// connecting), so a client that stops reading backs the bridge up after kilobytes, not the
    /// megabytes loopback's auto-tuned buffers would absorb first.
    pub async fn registered_small_buffer(bridge: &Bridge, seed: u8) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(PATIENCE, socket.connect(bridge.addr))
            .await
            .expect("connect in time")
            .expect("TCP connect");
        let (ws, _) = tokio::time::timeout(
            PATIENCE,
            tokio_tungstenite::client_async(bridge.ws_url(), MaybeTlsStream::Plain(stream)),
        )
        .await
        .expect("handshake in time")
        .expect("WebSocket handshake");
        let mut c = Client::over(ws, seed);
        c.handshake().await;
        match c.recv().await {
            SignalMsg::Challenge { nonce } => c.challenge = nonce,
            other => panic!("expected the bridge's Challenge first, got {other:?}"),
        }
        let hello = c.hello_frame();
        c.send_raw(Message::Binary(hello.into())).await;
        match c.recv().await {
            SignalMsg::Welcome { .. } => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
        c
    }

    fn over(ws: WebSocketStream<MaybeTlsStream<TcpStream>>, seed: u8) -> Client {
        Client {
            ws,
            identity: identity(seed),
            channel: None,
            challenge: [0; 32],
            facilitated: Default::default(),
            facilitated_frames: 0,
            facilitated_answers: 0,
        }
    }

    async fn handshake(&mut self) {
        let mut rng =
            <rand_chacha::ChaCha20Rng as rand_chacha::rand_core::SeedableRng>::seed_from_u64(
                u64::from(self.identity.id().0[0]),
            );
        let (hs, m1) = ClientHandshake::start(&mut rng, None);
        self.ws
            .send(Message::Binary(m1.to_vec().into()))
            .await
            .expect("send m1");
        let m2 = self.next_binary().await;
        let (channel, m3) = hs
            .finish(&self.identity, &m2)
            .expect("the bridge's handshake");
        self.ws
            .send(Message::Binary(m3.into()))
            .await
            .expect("send m3");
        self.channel = Some(channel);
    }

    async fn next_binary(&mut self) -> Vec<u8> {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .expect("a clean read");
            match msg {
                Message::Binary(b) => return b.to_vec(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The bridge's ID, as proven in the link handshake.
    pub fn bridge_id(&self) -> NodeId {
        self.channel.as_ref().expect("a secured link").peer_id()
    }

    /// Seal `payload` as the next frame without sending it (to tamper with or replay it).
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        self.channel
            .as_mut()
            .expect("a secured link")
            .seal(payload)
            .expect("seal")
    }

    /// Send a WebSocket message exactly as given (no sealing).
    pub async fn send_unsealed(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    fn open(&mut self, b: &[u8]) -> Vec<u8> {
        match self.channel.as_mut() {
            Some(ch) => ch.open(b).expect("an authentic frame from the bridge"),
            None => b.to_vec(),
        }
    }

    fn sealed(&mut self, msg: Message) -> Message {
        match (msg, self.channel.as_mut()) {
            (Message::Binary(b), Some(ch)) => Message::Binary(ch.seal(&b).expect("seal").into()),
            (other, _) => other,
        }
    }

    pub fn id(&self) -> NodeId {
        self.identity.id()
    }

    /// Connect and register; returns once Welcome and BridgeInfo arrived.
    pub async fn registered(bridge: &Bridge, seed: u8) -> Client {
        let mut c = Client::connect(bridge, seed).await;
        let hello = c.hello_frame();
        c.send_raw(Message::Binary(hello.into())).await;
        match c.recv().await {
            SignalMsg::Welcome { .. } => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
        match c.recv().await {
            SignalMsg::BridgeInfo { .. } => c,
            other => panic!("expected BridgeInfo, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &SignalMsg) {
        self.send_raw(Message::Binary(msg.encode_frame().into()))
            .await;
    }

    /// Send one message; a binary one is sealed on a secured link.
    pub async fn send_raw(&mut self, msg: Message) {
        let msg = self.sealed(msg);
        self.ws.send(msg).await.expect("send");
    }

    /// Sends unless the connection is already gone.
    pub async fn try_send_raw(&mut self, msg: Message) -> bool {
        let msg = self.sealed(msg);
        self.ws.send(msg).await.is_ok()
    }

    /// A normal goodbye: close frame, then wait for the bridge's reply.
    pub async fn close(mut self) {
        self.ws.close(None).await.expect("send close");
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        tokio::time::timeout(PATIENCE, drain)
            .await
            .expect("close handshake");
    }

    /// The next signalling message. A live page answers the bridge's keepalive pings at once,
    /// so this answers them and reads on.
    pub async fn recv(&mut self) -> SignalMsg {
        loop {
            match self.recv_any().await {
                SignalMsg::Ping { nonce } => self.send(&SignalMsg::Pong { nonce }).await,
                other => return other,
            }
        }
    }

    /// The next signalling message, pings included.
    pub async fn recv_any(&mut self) -> SignalMsg {
        self.recv_any_within(PATIENCE).await
    }

    /// Like [`Client::recv`], waiting up to `patience` for each message.
    pub async fn recv_within(&mut self, patience: Duration) -> SignalMsg {
        loop {
            match self.recv_any_within(patience).await {
                SignalMsg::Ping { nonce } => self.send(&SignalMsg::Pong { nonce }).await,
                other => return other,
            }
        }
    }

    /// Like [`Client::recv_any`], waiting up to `patience`.
    pub async fn recv_any_within(&mut self, patience: Duration) -> SignalMsg {
        loop {
            let msg = tokio::time::timeout(patience, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .expect("a clean read");
            match msg {
                Message::Binary(b) => {
                    let plain = self.open(&b);
                    return SignalMsg::decode_frame(&plain).expect("a valid frame");
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    pub async fn find_peer(&mut self, target: NodeId) -> Vec<PeerRecord> {
        let pubkey = self.identity.public_key();
        self.send(&SignalMsg::FindPeer { id: target, pubkey }).await;
        match self.recv().await {
            SignalMsg::FoundPeer { peers } => peers.into_vec(),
            other => panic!("expected FoundPeer, got {other:?}"),
        }
    }

    /// Reads until the bridge has closed the connection; panics if it stays open.
    pub async fn expect_closed(mut self) -> Ending {
        let mut ending = Ending::default();
        let read_all = async {
            while let Some(msg) = self.ws.next().await {
                match msg {
                    Ok(Message::Binary(b)) => match SignalMsg::decode_frame(&self.open(&b)) {
                        Ok(SignalMsg::Error { code, reason }) => {
                            ending.error = Some((code, reason.into_string()))
                        }
                        Ok(other) => ending.before.push(other),
                        Err(e) => panic!("the bridge sent a malformed frame: {e}"),
                    },
                    Ok(Message::Close(frame)) => ending.close = frame,
                    Ok(_) => {}
                    // A reset after the close is fine: the socket is closed either way.
                    Err(tungstenite::Error::Io(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                        break
                    }
                    Err(e) => panic!("unexpected client error {e}"),
                }
            }
        };
        tokio::time::timeout(PATIENCE, read_all)
            .await
            .expect("the bridge should have closed the connection");
        ending
    }
}

/// A directory under the target dir that is removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("onionmesh-bridge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain HTTP/1.1 GET; returns (status line, lower-cased headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
