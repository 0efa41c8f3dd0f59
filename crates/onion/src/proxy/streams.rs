//! The proxy's side of streams: choosing stream ids and naming endpoint signals as events.
//! The stream logic itself is the shared end-of-circuit handler ([`crate::stream::Endpoint`]).

use super::circuit::Circuit;
use super::event::{CircHandle, ProxyEvent, StreamHandle};
use crate::error::ApiError;
use crate::stream::{EndSignal, StreamEnd};
use onionmesh_wire::cell::StreamId;

/// Add a new stream (not yet open) to built circuit `c`; returns its id.
pub(crate) fn begin(c: &mut Circuit, max_streams: usize) -> Result<StreamId, ApiError> {
    if !c.built {
        return Err(ApiError::NotOpen);
    }
    if c.endpoint.streams.len() >= max_streams {
        return Err(ApiError::TooManyStreams(max_streams));
    }
    let mut id = c.next_stream;
    while id == 0 || c.endpoint.streams.contains_key(&StreamId(id)) {
        id = id.wrapping_add(1);
    }
    c.next_stream = id.wrapping_add(1);
    c.used = true;
    c.endpoint
        .streams
        .insert(StreamId(id), StreamEnd::new(false));
    Ok(StreamId(id))
}

pub(crate) fn event(circ: CircHandle, signal: EndSignal) -> ProxyEvent {
    let h = |stream| StreamHandle { circ, stream };
    match signal {
        EndSignal::Opened(id) => ProxyEvent::StreamOpened { stream: h(id) },
        EndSignal::Readable(id) => ProxyEvent::StreamReadable { stream: h(id) },
        EndSignal::Ended(id, reason) => ProxyEvent::StreamEnded {
            stream: h(id),
            reason,
        },
    }
}
