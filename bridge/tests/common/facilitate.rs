//! A page's side of facilitated requests (issue 10): `Facilitate` frames out, `Facilitated`
//! answers in.

use super::Client;
use onionmesh_wire::db::{
    DbEnd, DbEndReason, DbMsg, DbQuery, DbSource, DescriptorKind, HashName, SourceKind,
};
use onionmesh_wire::SignalMsg;
use std::time::Duration;

/// How long a facilitated answer may take to start (the BitTorrent swarm and the web server
/// are on loopback).
pub const SLOW: Duration = Duration::from_secs(20);

/// A magnet `DB_SOURCE` for `infohash`.
pub fn magnet_source(infohash: [u8; 20], magnet: &str) -> DbSource {
    DbSource {
        hash_name: HashName(infohash),
        kind: SourceKind::MAGNET,
        uri: onionmesh_wire::BoundedString::new(magnet).expect("a short magnet link"),
    }
}

/// A web `DB_SOURCE` for `url`.
pub fn web_source(url: &str) -> DbSource {
    DbSource {
        hash_name: DbSource::web_hash_name(url),
        kind: SourceKind::WEB,
        uri: onionmesh_wire::BoundedString::new(url).expect("a short URL"),
    }
}

pub async fn send_source(c: &mut Client, req: u32, source: DbSource) {
    c.send(&SignalMsg::Facilitate {
        req,
        msg: DbMsg::Source(source),
    })
    .await;
}

pub async fn send_query(
    c: &mut Client,
    req: u32,
    hash: HashName,
    piece: u32,
    offset: u32,
    count: u16,
) {
    c.send(&SignalMsg::Facilitate {
        req,
        msg: DbMsg::Query(DbQuery {
            hash_name: hash,
            piece,
            offset,
            count,
            counter: 0,
        }),
    })
    .await;
}

/// The next answer to request `req` (answers to other requests on this connection are
/// dropped), waiting up to `patience` for each frame.
pub async fn answer(c: &mut Client, req: u32, patience: Duration) -> DbMsg {
    loop {
        while let Some(a) = c.facilitated.pop_front() {
            if a.req == req {
                return a.msg;
            }
        }
        match c.recv_within(patience).await {
            SignalMsg::Facilitated { answers } => {
                c.facilitated_frames += 1;
                c.facilitated_answers += answers.len() as u64;
                c.facilitated.extend(answers.into_vec());
            }
            SignalMsg::PeersGone { .. } => {}
            other => panic!("expected a Facilitated answer, got {other:?}"),
        }
    }
}

/// The `DB_END` that ends request `req`.
pub async fn expect_end(c: &mut Client, req: u32, patience: Duration) -> DbEnd {
    match answer(c, req, patience).await {
        DbMsg::End(end) => end,
        other => panic!("expected DB_END, got {other:?}"),
    }
}

/// Ask for the descriptor of request `req` and collect it.
pub async fn descriptor(
    c: &mut Client,
    req: u32,
    hash: HashName,
) -> Result<(DescriptorKind, Vec<u8>), DbEnd> {
    send_query(c, req, hash, 0, 0, 0).await;
    let mut bytes = Vec::new();
    loop {
        match answer(c, req, SLOW).await {
            DbMsg::Connected(slice) => {
                assert_eq!(
                    slice.offset() as usize,
                    bytes.len(),
                    "descriptor slices in order"
                );
                bytes.extend_from_slice(slice.bytes());
                if bytes.len() == slice.total() as usize {
                    return Ok((slice.kind(), bytes));
                }
            }
            DbMsg::End(end) => return Err(end),
            other => panic!("expected DB_CONNECTED, got {other:?}"),
        }
    }
}

/// Ask for `count` pieces from `piece` (the first from byte `offset`) and collect `len` bytes,
/// checking that slices come in order: returns the bytes, piece after piece.
pub async fn pieces(
    c: &mut Client,
    req: u32,
    hash: HashName,
    (piece, offset, count): (u32, u32, u16),
    piece_len: u64,
    len: u64,
) -> Result<Vec<u8>, DbEnd> {
    send_query(c, req, hash, piece, offset, count).await;
    let mut bytes = Vec::with_capacity(len as usize);
    let start = u64::from(piece) * piece_len + u64::from(offset);
    while (bytes.len() as u64) < len {
        match answer(c, req, SLOW).await {
            DbMsg::Data(slice) => {
                let at = start + bytes.len() as u64;
                assert_eq!(
                    (u64::from(slice.piece()), u64::from(slice.offset())),
                    (at / piece_len, at % piece_len),
                    "slices in order"
                );
                bytes.extend_from_slice(slice.data());
            }
            DbMsg::End(end) => return Err(end),
            other => panic!("expected DB_DATA, got {other:?}"),
        }
    }
    assert_eq!(bytes.len() as u64, len, "no more than asked for");
    Ok(bytes)
}

/// Assert an end's reason and that its sentence contains every one of `words`.
pub fn assert_end(end: &DbEnd, reason: DbEndReason, words: &[&str]) {
    assert_eq!(
        end.reason(),
        reason,
        "{}: {}",
        end.reason().name(),
        end.sentence()
    );
    for w in words {
        assert!(
            end.sentence().contains(w),
            "the sentence {:?} should mention {w:?}",
            end.sentence()
        );
    }
}
