//! The service seam: named services at circuit ends (this node as a circuit's last hop).
//!
//! A stream a client opens to service `name` goes to the registered [`StreamService`] of that
//! name (built-in services such as [`Echo`], later the ORDB), or, for a name the application
//! registered, to the application as `OnionEvent::ServiceStreamOpened` / `ServiceReadable`, which
//! then pulls bytes with `node.onion().service_read(..)`. Either way reads are pulled: a
//! service that stops reading stops the circuit's windows, so the far writer sees
//! backpressure and every hop's buffers stay bounded.

use onionmesh_bounded::{FlatMap, FlatSet};
use onionmesh_onion::ExitStream;
use onionmesh_wire::Time;

/// Most bytes the echo service holds per stream between reading and writing back.
pub const ECHO_BUFFER: usize = 64 * 1024;

/// The stream operations a service may use on one of its streams (the router's exit side).
pub trait StreamIo {
    /// Take up to `max` received bytes (empty when nothing waits or the stream is gone).
    fn read(&mut self, max: usize) -> Vec<u8>;
    /// Queue bytes towards the client; returns how many were taken (a short count is
    /// backpressure; the service hears `ready` again when there is room). `None`: the stream
    /// is gone.
    fn write(&mut self, data: &[u8]) -> Option<usize>;
    /// End the stream once its queued bytes are sent.
    fn close(&mut self);
}

/// A service run inside the node at circuit ends.
pub trait StreamService {
    /// A client opened `stream` to this service.
    fn opened(&mut self, now: Time, stream: ExitStream, io: &mut dyn StreamIo);
    /// `stream` may have bytes to read or room to write: do what can be done now.
    fn ready(&mut self, now: Time, stream: ExitStream, io: &mut dyn StreamIo);
    /// The client ended `stream` (or its circuit closed): forget it.
    fn ended(&mut self, stream: ExitStream, io: &mut dyn StreamIo);
}

/// The built-in echo service: every byte sent to it comes back. It holds at most
/// [`ECHO_BUFFER`] bytes per stream (it stops reading, so the client's windows close, rather
/// than buffer more).
#[derive(Debug, Default)]
pub struct Echo {
    pending: FlatMap<ExitStream, Vec<u8>>,
}

impl StreamService for Echo {
    fn opened(&mut self, now: Time, stream: ExitStream, io: &mut dyn StreamIo) {
        self.pending.insert(stream, Vec::new());
        self.ready(now, stream, io);
    }

    fn ready(&mut self, _now: Time, stream: ExitStream, io: &mut dyn StreamIo) {
        loop {
            let Some(pending) = self.pending.get_mut(&stream) else {
                return;
            };
            if !pending.is_empty() {
                match io.write(pending) {
                    Some(n) => {
                        pending.drain(..n);
                    }
                    None => {
                        self.pending.remove(&stream);
                        return;
                    }
                }
            }
            let room = ECHO_BUFFER - pending.len().min(ECHO_BUFFER);
            if room == 0 {
                return;
            }
            let data = io.read(room);
            if data.is_empty() {
                return;
            }
            pending.extend_from_slice(&data);
        }
    }

    fn ended(&mut self, stream: ExitStream, io: &mut dyn StreamIo) {
        self.pending.remove(&stream);
        io.close();
    }
}

/// Who handles a service name.
pub(crate) enum Handler {
    /// Run inside the node.
    Builtin(Box<dyn StreamService>),
    /// The application pulls it (events + `service_read` / `service_write`).
    App,
}

/// The registry of named services and of which service each open exit stream belongs to.
#[derive(Default)]
pub(crate) struct Services {
    handlers: FlatMap<String, Handler>,
    /// Streams owned by built-in services, and which one. Bounded by the router's stream
    /// limits: entries leave when their stream ends or its circuit closes.
    builtin_streams: FlatMap<ExitStream, String>,
    app_streams: FlatSet<ExitStream>,
}

impl Services {
    pub fn register(&mut self, name: &str, handler: Handler) {
        self.handlers.insert(name.to_owned(), handler);
    }

    pub fn is_registered(&self, name: &str) -> bool {
        self.handlers.contains_key(name)
    }

    /// A client opened `stream` to `name`. `true` when a built-in service took it (the
    /// application is not told).
    pub fn opened(
        &mut self,
        now: Time,
        stream: ExitStream,
        name: &str,
        io: &mut dyn StreamIo,
    ) -> bool {
        match self.handlers.get_mut(name) {
            Some(Handler::Builtin(svc)) => {
                self.builtin_streams.insert(stream, name.to_owned());
                svc.opened(now, stream, io);
                true
            }
            _ => {
                self.app_streams.insert(stream);
                false
            }
        }
    }

    /// `true` when a built-in service handled the readiness.
    pub fn ready(&mut self, now: Time, stream: ExitStream, io: &mut dyn StreamIo) -> bool {
        let Some(name) = self.builtin_streams.get(&stream) else {
            return false;
        };
        if let Some(Handler::Builtin(svc)) = self.handlers.get_mut(name) {
            svc.ready(now, stream, io);
        }
        true
    }

    /// `true` when a built-in service owned the stream.
    pub fn ended(&mut self, stream: ExitStream, io: &mut dyn StreamIo) -> bool {
        self.app_streams.remove(&stream);
        let Some(name) = self.builtin_streams.remove(&stream) else {
            return false;
        };
        if let Some(Handler::Builtin(svc)) = self.handlers.get_mut(&name) {
            svc.ended(stream, io);
        }
        true
    }

    /// Streams of `circuit` (it closed), for `ended` calls.
    pub fn streams_of(&self, circuit: u64) -> Vec<ExitStream> {
        self.builtin_streams
            .keys()
            .chain(self.app_streams.iter())
            .filter(|s| s.circuit == circuit)
            .copied()
            .collect()
    }
}
