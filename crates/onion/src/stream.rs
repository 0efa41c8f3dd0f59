//! The end of a circuit that carries streams: the proxy for its circuits, the last hop for the
//! service side. Both ends use this one handler ([`Endpoint`]): windows, bounded send and
//! receive buffers, what an arriving stream message does ([`Endpoint::on_stream_msg`]), and the
//! choice of the next cell to package. Crypto, links and event types are the caller's business:
//! the endpoint answers with [`EndSignal`]s and relay cells to send, and the owner maps them
//! onto its own events and seals the cells for its own direction.

use crate::crypto::SendmeTag;
use crate::error::ProtocolError;
use crate::flow::{CircFlow, FlowError, StreamFlow, TAG_CELL_MIN_PADDING};
use onionmesh_bounded::FlatMap;
use onionmesh_wire::cell::{
    field, CellBody, EndReason, RelayCell, RelayData, RelayMsg, StreamId, RELAY_DATA_LEN,
};
use rand_core::RngCore;
use std::collections::VecDeque;

/// Bytes a stream accepts from its writer before `write` returns short.
pub const STREAM_SEND_BUFFER: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct StreamEnd {
    pub(crate) flow: StreamFlow,
    /// CONNECTED seen (proxy) or sent (last hop).
    pub(crate) open: bool,
    send: VecDeque<u8>,
    recv: VecDeque<Vec<u8>>,
    recv_off: usize,
    /// END received, with its reason.
    pub(crate) remote_end: Option<EndReason>,
    /// The local side closed: send END once `send` drains.
    pub(crate) local_close: bool,
    end_sent: bool,
    /// A write came back short: tell the writer when there is room again.
    pub(crate) want_writable: bool,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl StreamEnd {
    pub(crate) fn new(open: bool) -> StreamEnd {
        StreamEnd {
            flow: StreamFlow::default(),
            open,
            send: VecDeque::new(),
            recv: VecDeque::new(),
            recv_off: 0,
            remote_end: None,
            local_close: false,
            end_sent: false,
            want_writable: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    pub(crate) fn buffered_out(&self) -> usize {
        self.send.len()
    }

    pub(crate) fn buffered_in_cells(&self) -> usize {
        self.recv.len()
    }

    /// Nothing more will happen on this stream.
    pub(crate) fn finished(&self) -> bool {
        (self.remote_end.is_some() || self.end_sent) && self.recv.is_empty()
    }
}

/// What reading did, for the caller to act on.
#[derive(Debug, Default)]
pub(crate) struct ReadOutcome {
    pub(crate) data: Vec<u8>,
    pub(crate) stream_sendmes: u32,
    pub(crate) circ_sendmes: Vec<SendmeTag>,
}

/// What arriving DATA did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// Buffered; `true` if the buffer was empty before (the reader should be told).
    Buffered(bool),
    /// The stream is unknown or closed; the cell was counted and dropped. Send these
    /// circuit SENDMEs so the window does not leak.
    Dropped(Vec<SendmeTag>),
}

/// Something a stream message did that the owner turns into its own event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndSignal {
    /// CONNECTED arrived for a stream we began.
    Opened(StreamId),
    /// Data arrived on a stream whose receive buffer was empty.
    Readable(StreamId),
    /// The other end sent END.
    Ended(StreamId, EndReason),
}

/// What a stream message at this end asks of the owner.
#[derive(Debug, Default)]
pub(crate) struct Reaction {
    pub(crate) signal: Option<EndSignal>,
    /// Relay cells to seal and send back towards the other end (SENDMEs).
    pub(crate) replies: Vec<RelayCell>,
    /// A window opened or a stream opened: the endpoint may have cells to package now, so the
    /// owner puts the circuit in its ready set.
    pub(crate) ready: bool,
}

/// `n` stream SENDMEs for `stream`, then one authenticated circuit SENDME per tag.
pub(crate) fn sendmes(stream: StreamId, n: u32, tags: &[SendmeTag]) -> Vec<RelayCell> {
    let mut out = Vec::with_capacity(n as usize + tags.len());
    for _ in 0..n {
        out.push(RelayCell::new(stream, RelayMsg::Sendme { tag: None }));
    }
    for tag in tags {
        out.push(RelayCell::new(
            StreamId(0),
            RelayMsg::Sendme { tag: Some(*tag) },
        ));
    }
    out
}

#[derive(Debug, Default)]
pub(crate) struct Endpoint {
    pub(crate) flow: CircFlow,
    pub(crate) streams: FlatMap<StreamId, StreamEnd>,
    rr: u16,
    /// Some stream's write came back short: `take_writable` has something to look for.
    writers_waiting: bool,
}

impl Endpoint {
    pub(crate) fn write(&mut self, id: StreamId, data: &[u8]) -> Option<usize> {
        let s = self.streams.get_mut(&id)?;
        if s.local_close || s.remote_end.is_some() {
            return Some(0);
        }
        let room = STREAM_SEND_BUFFER.saturating_sub(s.send.len());
        let n = room.min(data.len());
        s.send.extend(&data[..n]);
        if n < data.len() {
            s.want_writable = true;
            self.writers_waiting = true;
        }
        Some(n)
    }

    /// A stream message (CONNECTED, DATA, SENDME, END) from the other end, with the tag of the
    /// cell that carried it. The caller has checked that the cell came from the other end of
    /// the circuit (the last hop, or the proxy) and that the message may travel this way.
    pub(crate) fn on_stream_msg(
        &mut self,
        stream: StreamId,
        msg: RelayMsg,
        tag: SendmeTag,
    ) -> Result<Reaction, ProtocolError> {
        let mut r = Reaction::default();
        match msg {
            RelayMsg::Connected => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    if !s.open {
                        s.open = true;
                        r.signal = Some(EndSignal::Opened(stream));
                        r.ready = true;
                    }
                }
            }
            RelayMsg::Data(data) => match self.on_data(stream, data.into_vec(), tag) {
                Ok(DataOutcome::Buffered(true)) => r.signal = Some(EndSignal::Readable(stream)),
                Ok(DataOutcome::Buffered(false)) => {}
                Ok(DataOutcome::Dropped(tags)) => r.replies = sendmes(StreamId(0), 0, &tags),
                Err(_) => return Err(ProtocolError::WindowExceeded),
            },
            RelayMsg::Sendme { tag } => {
                let ok = if stream == StreamId(0) {
                    self.flow.on_sendme(tag).is_ok()
                } else {
                    self.streams
                        .get_mut(&stream)
                        .is_none_or(|s| s.flow.on_sendme().is_ok())
                };
                if !ok {
                    return Err(ProtocolError::BadSendme);
                }
                r.ready = true;
            }
            RelayMsg::End(reason) => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    if s.remote_end.is_none() {
                        s.remote_end = Some(reason);
                        r.signal = Some(EndSignal::Ended(stream, reason));
                    }
                }
                self.reap();
            }
            _ => return Err(ProtocolError::Unexpected("a non-stream message")),
        }
        Ok(r)
    }

    pub(crate) fn read(&mut self, id: StreamId, max: usize) -> Option<ReadOutcome> {
        let s = self.streams.get_mut(&id)?;
        let mut out = ReadOutcome::default();
        let mut cells = 0u32;
        while let Some(front) = s.recv.front() {
            if out.data.len() >= max && !front.is_empty() {
                break;
            }
            let take = (max - out.data.len()).min(front.len() - s.recv_off);
            out.data
                .extend_from_slice(&front[s.recv_off..s.recv_off + take]);
            s.recv_off += take;
            if s.recv_off == front.len() {
                s.recv.pop_front();
                s.recv_off = 0;
                cells += 1;
            }
        }
        if s.remote_end.is_none() {
            out.stream_sendmes = s.flow.on_consumed(cells);
        }
        out.circ_sendmes = self.flow.on_consumed(cells);
        Some(out)
    }

    /// A DATA cell arrived for `id` with this tag.
    pub(crate) fn on_data(
        &mut self,
        id: StreamId,
        data: Vec<u8>,
        tag: SendmeTag,
    ) -> Result<DataOutcome, FlowError> {
        self.flow.on_received(tag)?;
        match self.streams.get_mut(&id) {
            Some(s) if s.open && s.remote_end.is_none() && !s.end_sent => {
                s.flow.on_received()?;
                s.bytes_in += data.len() as u64;
                let was_empty = s.recv.is_empty();
                // An empty DATA cell is kept too: it counts against the windows until read.
                s.recv.push_back(data);
                Ok(DataOutcome::Buffered(was_empty))
            }
            // Late data for a stream we closed (Tor drops it too).
            _ => Ok(DataOutcome::Dropped(self.flow.on_consumed(1))),
        }
    }

    /// The next cell to package, if windows and buffers allow: DATA (round-robin across
    /// streams) or a deferred END. Stream windows are charged here; the caller charges the
    /// circuit window with the sealed cell's tag via `flow.on_sent`.
    pub(crate) fn next_cell(&mut self) -> Option<RelayCell> {
        let circ_ok = self.flow.can_send();
        let limit = if self.flow.next_is_tagged() {
            RELAY_DATA_LEN - TAG_CELL_MIN_PADDING
        } else {
            RELAY_DATA_LEN
        };
        // Round-robin: the streams after the last one served, then from the start. Two passes
        // over the map instead of collecting its ids, so a cell costs no allocation here.
        let after = StreamId(self.rr.wrapping_add(1));
        let found = self
            .streams
            .range_mut(after..)
            .find_map(|(id, s)| pack(*id, s, circ_ok, limit))
            .or_else(|| {
                self.streams
                    .range_mut(..after)
                    .find_map(|(id, s)| pack(*id, s, circ_ok, limit))
            });
        if let Some(cell) = &found {
            self.rr = cell.stream.0;
        }
        found
    }

    /// Streams whose writers asked to hear about room, and now have it.
    /// Costs nothing unless some write came back short.
    pub(crate) fn take_writable(&mut self) -> Vec<StreamId> {
        let mut out = Vec::new();
        if !self.writers_waiting {
            return out;
        }
        let mut still_waiting = false;
        for (id, s) in self.streams.iter_mut() {
            if s.want_writable && s.send.len() <= STREAM_SEND_BUFFER / 2 {
                s.want_writable = false;
                out.push(*id);
            }
            still_waiting |= s.want_writable;
        }
        self.writers_waiting = still_waiting;
        out
    }

    /// The local side closes `id`: unread data is dropped (and credited to the circuit window:
    /// the returned tags are circuit SENDMEs to send); queued data is still sent, then END. A
    /// stream the other side already ended, or that never opened, goes at once.
    pub(crate) fn close_stream(&mut self, id: StreamId) -> Option<Vec<SendmeTag>> {
        let s = self.streams.get_mut(&id)?;
        s.local_close = true;
        let gone = s.remote_end.is_some() || !s.open;
        let cells = s.recv.len() as u32;
        s.recv.clear();
        s.recv_off = 0;
        if gone {
            self.streams.remove(&id);
        }
        Some(self.flow.on_consumed(cells))
    }

    /// Remove streams that are done; returns them.
    pub(crate) fn reap(&mut self) -> Vec<StreamId> {
        let done: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.finished())
            .map(|(id, _)| *id)
            .collect();
        for id in &done {
            self.streams.remove(id);
        }
        done
    }
}

/// The cell stream `id` would send now, if any: DATA within `limit` bytes (charging the stream
/// window) or its deferred END.
fn pack(id: StreamId, s: &mut StreamEnd, circ_ok: bool, limit: usize) -> Option<RelayCell> {
    if !s.open || s.end_sent || s.remote_end.is_some() {
        return None;
    }
    if !s.send.is_empty() && circ_ok && s.flow.can_send() {
        // One cell's worth at most; the rest stays queued for the next cell.
        let n = s.send.len().min(limit).min(RELAY_DATA_LEN);
        // Copy out by slices: collecting a VecDeque drain goes byte by byte.
        let mut data = vec![0u8; n];
        let (a, b) = s.send.as_slices();
        let k = a.len().min(n);
        data[..k].copy_from_slice(&a[..k]);
        data[k..].copy_from_slice(&b[..n - k]);
        s.send.drain(..n);
        s.flow.on_sent();
        s.bytes_out += n as u64;
        // Cannot fail: `n` is at most RELAY_DATA_LEN.
        let data = RelayData::new(data).expect("at most one cell of data");
        return Some(RelayCell::new(id, RelayMsg::Data(data)));
    }
    if s.send.is_empty() && s.local_close {
        s.end_sent = true;
        return Some(RelayCell::new(id, RelayMsg::End(EndReason::DONE)));
    }
    None
}

/// Encode `cell` as a plaintext body with random padding after its data.
pub(crate) fn plaintext(rng: &mut impl RngCore, cell: &RelayCell) -> CellBody {
    let mut body = cell.encode();
    let start = field::DATA.start + cell.data_len();
    rng.fill_bytes(&mut body[start..]);
    body
}
