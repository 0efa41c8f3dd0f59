//! The onion part of the JS `Node` class: circuits, streams and services.
//!
//! Reads are pulled: a `readable` event says data waits, and the page takes it with
//! `read(circuit, stream, max?)` when it wants it. Reading is what reopens the circuit's flow
//! control windows, so a page that stops reading makes the far writer's `write` return 0 once
//! the windows (about 250 KB per stream) and the bounded buffers on the way are full.
//! `readable` fires when data arrives on an empty buffer: read until `read` returns an empty
//! array, or remember to come back.
//!
//! ```js
//! node.serve('echo');                          // answer streams to "echo" at this page
//! const circ = node.buildCircuit();            // 3 hops chosen by the path rules
//! // or node.buildCircuit([idB, idC, idD]);   // an explicit path (first hop linked)
//! node.on((e) => {
//!   if (e.type === 'circuit' && e.event === 'built' && e.circuit === circ) {
//!     const s = node.openStream(circ, 'echo');
//!     node.write(circ, s, bytes);              // returns how many bytes were taken
//!   }
//!   if (e.type === 'stream' && e.event === 'readable') {
//!     for (let b; (b = node.read(e.circuit, e.stream)).length > 0;) console.log(b);
//!   }
//!   if (e.type === 'stream' && e.event === 'writable') { /* write the rest */ }
//! });
//! ```

use crate::api::{to_js, BrowserNode};
use crate::args;
use crate::codes::core_error;
use crate::views::CircuitView;
use onionmesh_node::{CircHandle, CircuitInfo, ExitStream, OnionError, StreamHandle, StreamId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// What `read` and `serviceRead` return at most when no `max` is given.
pub const DEFAULT_READ_MAX: usize = 1 << 20;

#[wasm_bindgen(typescript_custom_section)]
const TS_ONION: &str = r#"
/** One entry of `Node.circuits()` / `Node.relayedCircuits()`. */
export interface CircuitInfo {
  id: number;
  /** Short IDs: the whole path for our circuits; [previous, next] for relayed ones. */
  hops: string[];
  /** Ours: "building" | "built". Relayed: "open" | "extending" | "waiting for link". */
  state: string;
  /** Stream payload bytes sent and received at this end. */
  bytesSent: number;
  bytesReceived: number;
  cellsIn: number;
  cellsOut: number;
  streams: number;
}

/** Circuit, stream and service events (`type` is "circuit", "stream" or "service"). Data is
 *  never in an event: on `readable`, pull it with `read` / `serviceRead`. */
export type OnionNodeEvent =
  | { type: "circuit"; event: "extended"; circuit: number; hops: number }
  | { type: "circuit"; event: "built"; circuit: number }
  | { type: "circuit"; event: "closed"; circuit: number; code: ErrorCode; reason: string }
  | { type: "stream"; event: "opened" | "readable" | "writable"; circuit: number; stream: number }
  | { type: "stream"; event: "ended"; circuit: number; stream: number; reason: string }
  | { type: "service"; event: "opened"; circuit: number; stream: number; service: string }
  | { type: "service"; event: "readable" | "writable" | "ended"; circuit: number; stream: number };
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "CircuitInfo[]")]
    pub type CircuitList;
}

fn onion_error(e: OnionError) -> JsValue {
    core_error(e.code(), &e)
}

fn circuit_list(list: &[CircuitInfo]) -> Result<CircuitList, JsValue> {
    let views: Vec<CircuitView> = list.iter().map(CircuitView::from).collect();
    to_js(&views, "the circuits").map(JsCast::unchecked_into)
}

/// Circuit ids count up from 1 and stay below 2^53 (a JS number holds them exactly).
fn circ(value: &JsValue) -> Result<CircHandle, JsValue> {
    args::handle(value, "The circuit", 9_007_199_254_740_991.0).map(CircHandle)
}

fn stream_id(value: &JsValue) -> Result<StreamId, JsValue> {
    args::handle(value, "The stream", f64::from(u16::MAX)).map(|s| StreamId(s as u16))
}

fn stream(c: &JsValue, s: &JsValue) -> Result<StreamHandle, JsValue> {
    Ok(StreamHandle {
        circ: circ(c)?,
        stream: stream_id(s)?,
    })
}

fn exit_stream(c: &JsValue, s: &JsValue) -> Result<ExitStream, JsValue> {
    Ok(ExitStream {
        circuit: circ(c)?.0,
        stream: stream_id(s)?,
    })
}

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Build a circuit and return its id; watch for `{type:"circuit", event:"built"}` (or
    /// `"closed"`). With `path` (peer IDs, first hop first) the circuit goes exactly there, and
    /// the first hop must be linked; without it the node picks 3 hops by the path rules. Throws
    /// `BAD_ARGUMENT` (a path that is not an array of strings), `BAD_PEER_ID`, `PATH_THROUGH_SELF`
    /// (a hop is this page), `UNKNOWN_PEER`, `NOT_LINKED`, `NO_PATH`, `BAD_PATH`,
    /// `TOO_MANY_CIRCUITS`.
    #[wasm_bindgen(js_name = buildCircuit)]
    pub fn build_circuit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string[] | undefined")] path: JsValue,
    ) -> Result<f64, JsValue> {
        let ids = args::path(&path)?;
        let r = self.live(move |d, now| {
            let me = d.node.id();
            match ids {
                // The core would say "unknown peer" for its own ID: say what is wrong.
                Some(ids) if ids.contains(&me) => Err(OnionError::SelfInPath),
                Some(ids) => d.node.onion().build(now, &ids),
                None => d.node.onion().build_auto(now, 3).map(|(c, _)| c),
            }
        })?;
        r.map(|c| c.0 as f64).map_err(onion_error)
    }

    /// Our circuits: hops as short IDs, state, bytes.
    pub fn circuits(&self) -> Result<CircuitList, JsValue> {
        circuit_list(&self.live(|d, _| d.node.circuits())?)
    }

    /// Circuits this page relays (or ends) for others.
    #[wasm_bindgen(js_name = relayedCircuits)]
    pub fn relayed_circuits(&self) -> Result<CircuitList, JsValue> {
        circuit_list(&self.live(|d, _| d.node.relayed_circuits())?)
    }

    /// Tear one of our circuits down (DESTROY travels along it).
    #[wasm_bindgen(js_name = destroyCircuit)]
    pub fn destroy_circuit(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
    ) -> Result<(), JsValue> {
        let c = circ(&circuit)?;
        self.live(|d, _| d.node.onion().destroy(c))?
            .map_err(onion_error)
    }

    /// Open a stream to `service` at the circuit's last hop; returns the stream id. Watch for
    /// `{type:"stream", event:"opened"}`, then `readable` when data waits. Throws
    /// `UNKNOWN_CIRCUIT`, `NOT_OPEN`, `TOO_MANY_STREAMS`, `BAD_SERVICE_NAME`.
    #[wasm_bindgen(js_name = openStream)]
    pub fn open_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] service: JsValue,
    ) -> Result<u16, JsValue> {
        let c = circ(&circuit)?;
        let service = args::string(&service, "The service name")?;
        self.live(|d, now| d.node.onion().open_stream(now, c, &service))?
            .map(|s| s.stream.0)
            .map_err(onion_error)
    }

    /// Queue bytes on a stream; returns how many were taken. Fewer than given (0 included) is
    /// backpressure: the stream's bounded buffer is full because the circuit's windows are
    /// (the far reader is not reading, or the path is slow); write the rest after the next
    /// `{type:"stream", event:"writable"}`.
    pub fn write(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(js_name = "stream", unchecked_param_type = "number")] stream_number: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: JsValue,
    ) -> Result<u32, JsValue> {
        let s = stream(&circuit, &stream_number)?;
        let data = args::bytes(&data, "The data")?;
        self.live(|d, now| d.node.onion().write(now, s, &data))?
            .map(|n| n as u32)
            .map_err(onion_error)
    }

    /// Take up to `max` bytes (default 1 MiB) that arrived on a stream; an empty array when
    /// nothing waits. Reading is what lets the far side send more.
    pub fn read(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(js_name = "stream", unchecked_param_type = "number")] stream_number: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number | undefined")] max: JsValue,
    ) -> Result<Vec<u8>, JsValue> {
        let s = stream(&circuit, &stream_number)?;
        let max = args::max_bytes(&max, DEFAULT_READ_MAX)?;
        self.live(|d, now| d.node.onion().read(now, s, max))?
            .map_err(onion_error)
    }

    /// End a stream once what was written is sent.
    #[wasm_bindgen(js_name = closeStream)]
    pub fn close_stream(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(js_name = "stream", unchecked_param_type = "number")] stream_number: JsValue,
    ) -> Result<(), JsValue> {
        let s = stream(&circuit, &stream_number)?;
        self.live(|d, now| d.node.onion().close_stream(now, s))?
            .map_err(onion_error)
    }

    /// Accept streams to `service` at this page. `"echo"` is built in (everything sent comes
    /// back); other names raise `{type:"service"}` events for the page to answer with
    /// `serviceRead` / `serviceWrite`.
    pub fn serve(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] service: JsValue,
    ) -> Result<(), JsValue> {
        let service = args::string(&service, "The service name")?;
        self.live(|d, _| d.node.onion().serve(&service))?
            .map_err(onion_error)
    }

    /// Take up to `max` bytes (default 1 MiB) a client sent to one of our application services;
    /// an empty array when nothing waits.
    #[wasm_bindgen(js_name = serviceRead)]
    pub fn service_read(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(js_name = "stream", unchecked_param_type = "number")] stream_number: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number | undefined")] max: JsValue,
    ) -> Result<Vec<u8>, JsValue> {
        let s = exit_stream(&circuit, &stream_number)?;
        let max = args::max_bytes(&max, DEFAULT_READ_MAX)?;
        self.live(|d, now| d.node.onion().service_read(now, s, max))?
            .map_err(onion_error)
    }

    /// Answer a client of one of our application services; returns how many bytes were taken
    /// (fewer is backpressure: wait for the service's `writable` event).
    #[wasm_bindgen(js_name = serviceWrite)]
    pub fn service_write(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(js_name = "stream", unchecked_param_type = "number")] stream_number: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] data: JsValue,
    ) -> Result<u32, JsValue> {
        let s = exit_stream(&circuit, &stream_number)?;
        let data = args::bytes(&data, "The data")?;
        self.live(|d, now| d.node.onion().service_write(now, s, &data))?
            .map(|n| n as u32)
            .map_err(onion_error)
    }

    /// End a stream to one of our application services.
    #[wasm_bindgen(js_name = serviceClose)]
    pub fn service_close(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] circuit: JsValue,
        #[wasm_bindgen(js_name = "stream", unchecked_param_type = "number")] stream_number: JsValue,
    ) -> Result<(), JsValue> {
        let s = exit_stream(&circuit, &stream_number)?;
        self.live(|d, now| d.node.onion().service_close(now, s))?
            .map_err(onion_error)
    }
}
