//! The onion part of the JS `Node` class: circuits, streams and services.
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
//!   if (e.type === 'stream' && e.event === 'data') console.log(e.data);
//!   if (e.type === 'stream' && e.event === 'writable') { /* write the rest */ }
//! });
//! ```

use crate::api::{capitalise, parse_peer, BrowserNode};
use crate::error::{js_error, ErrorCode};
use onionmesh_node::OnionError;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(typescript_custom_section)]
const TS_ONION: &str = r#"
/** One entry of `Node.circuits()` / `Node.relayedCircuits()`. */
export interface CircuitInfo {
  id: number;
  /** Short IDs: the whole path for our circuits; [previous, next] for relayed ones. */
  hops: string[];
  /** Ours: "building" | "extending" | "built". Relayed: "open" | "extending" | "waiting for link". */
  state: string;
  /** Stream payload bytes sent and received at this end. */
  bytesSent: number;
  bytesReceived: number;
  cellsIn: number;
  cellsOut: number;
  streams: number;
}

/** Circuit, stream and service events (`type` is "circuit", "stream" or "service"). */
export type OnionNodeEvent =
  | { type: "circuit"; event: "extended"; circuit: number; hops: number }
  | { type: "circuit"; event: "built"; circuit: number }
  | { type: "circuit"; event: "closed"; circuit: number; code: string; reason: string }
  | { type: "stream"; event: "opened" | "writable"; circuit: number; stream: number }
  | { type: "stream"; event: "data"; circuit: number; stream: number; data: Uint8Array }
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
    let sentence = capitalise(&e.to_string());
    js_error(ErrorCode::Onion(e.code()), &format!("{sentence}."))
}

fn circuit_list(list: Vec<onionmesh_node::CircuitInfo>) -> Result<CircuitList, JsValue> {
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    list.serialize(&ser)
        .map(JsCast::unchecked_into)
        .map_err(|e| {
            js_error(
                ErrorCode::Internal,
                &format!("Could not list circuits: {e}."),
            )
        })
}

fn circ_id(circuit: f64) -> u64 {
    if circuit.is_finite() && circuit >= 0.0 {
        circuit as u64
    } else {
        0 // No circuit has id 0: the call fails with UNKNOWN_CIRCUIT.
    }
}

#[wasm_bindgen(js_class = Node)]
impl BrowserNode {
    /// Build a circuit and return its id; watch for `{type:"circuit", event:"built"}` (or
    /// `"closed"`). With `path` (peer IDs, first hop first) the circuit goes exactly there, and
    /// the first hop must be linked; without it the node picks 3 hops by the path rules. Throws
    /// `BAD_PEER_ID`, `UNKNOWN_PEER`, `NOT_LINKED`, `NO_PATH`, `BAD_PATH`, `TOO_MANY_CIRCUITS`.
    #[wasm_bindgen(js_name = buildCircuit)]
    pub fn build_circuit(&self, path: Option<Vec<String>>) -> Result<f64, JsValue> {
        let ids = match path {
            Some(p) => Some(
                p.iter()
                    .map(|s| parse_peer(s))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let r = self.live(move |d, now| match ids {
            Some(ids) => d.node.build_circuit(now, &ids),
            None => d.node.build_circuit_auto(now, 3).map(|(c, _)| c),
        })?;
        r.map(|c| c as f64).map_err(onion_error)
    }

    /// Our circuits: hops as short IDs, state, bytes.
    pub fn circuits(&self) -> Result<CircuitList, JsValue> {
        circuit_list(self.live(|d, _| d.node.circuits())?)
    }

    /// Circuits this page relays (or ends) for others.
    #[wasm_bindgen(js_name = relayedCircuits)]
    pub fn relayed_circuits(&self) -> Result<CircuitList, JsValue> {
        circuit_list(self.live(|d, _| d.node.relayed_circuits())?)
    }

    /// Tear one of our circuits down (DESTROY travels along it).
    #[wasm_bindgen(js_name = destroyCircuit)]
    pub fn destroy_circuit(&self, circuit: f64) -> Result<(), JsValue> {
        self.live(|d, _| d.node.destroy_circuit(circ_id(circuit)))?
            .map_err(onion_error)
    }

    /// Open a stream to `service` at the circuit's last hop; returns the stream id. Watch for
    /// `{type:"stream", event:"opened"}`; data comes as `event:"data"`. Throws `UNKNOWN_CIRCUIT`,
    /// `NOT_OPEN`, `TOO_MANY_STREAMS`, `BAD_SERVICE_NAME`.
    #[wasm_bindgen(js_name = openStream)]
    pub fn open_stream(&self, circuit: f64, service: &str) -> Result<u16, JsValue> {
        self.live(|d, now| d.node.open_stream(now, circ_id(circuit), service))?
            .map_err(onion_error)
    }

    /// Queue bytes on a stream; returns how many were taken. Fewer than given is backpressure:
    /// the stream's bounded buffer is full because the circuit is not keeping up; write the rest
    /// after the next `{type:"stream", event:"writable"}`.
    pub fn write(&self, circuit: f64, stream: u16, data: &[u8]) -> Result<u32, JsValue> {
        self.live(|d, now| d.node.stream_write(now, circ_id(circuit), stream, data))?
            .map(|n| n as u32)
            .map_err(onion_error)
    }

    /// End a stream once what was written is sent.
    #[wasm_bindgen(js_name = closeStream)]
    pub fn close_stream(&self, circuit: f64, stream: u16) -> Result<(), JsValue> {
        self.live(|d, now| d.node.stream_close(now, circ_id(circuit), stream))?
            .map_err(onion_error)
    }

    /// Accept streams to `service` at this page. `"echo"` is built in (everything sent comes
    /// back); other names raise `{type:"service"}` events for the page to answer with
    /// `serviceRead` / `serviceWrite`.
    pub fn serve(&self, service: &str) -> Result<(), JsValue> {
        self.live(|d, _| d.node.serve(service))?
            .map_err(onion_error)
    }

    /// Read up to `max` bytes a client sent to one of our application services.
    #[wasm_bindgen(js_name = serviceRead)]
    pub fn service_read(&self, circuit: f64, stream: u16, max: u32) -> Result<Vec<u8>, JsValue> {
        self.live(|d, now| {
            d.node
                .service_read(now, circ_id(circuit), stream, max as usize)
        })?
        .map_err(onion_error)
    }

    /// Answer a client of one of our application services; returns how many bytes were taken.
    #[wasm_bindgen(js_name = serviceWrite)]
    pub fn service_write(&self, circuit: f64, stream: u16, data: &[u8]) -> Result<u32, JsValue> {
        self.live(|d, now| d.node.service_write(now, circ_id(circuit), stream, data))?
            .map(|n| n as u32)
            .map_err(onion_error)
    }
}
