//! Connections RustBalance answers itself instead of the target.
//!
//! The cluster's join endpoint lives on the master address's own port: a new node reaches
//! it through Tor exactly like a client reaches the service. An [`Intercept`] looks at the
//! first bytes a client sends and either takes the connection (it then owns the stream) or
//! lets it through to the target untouched — so anything it does not recognise gets the
//! target's own answer and learns nothing about RustBalance.
//!
//! ```text
//! client bytes ─▶ classify ─┬─ Undecided: read more (bounded by MAX_INSPECT and idle_timeout)
//!                           ├─ Pass: forward everything read so far, then splice as usual
//!                           └─ Take: Intercept::serve(stream, bytes read so far)
//! ```
//!
//! In Tcp mode the target is connected first and inspection stops as soon as the target
//! speaks (server-first protocols such as SMTP are never delayed).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Most client bytes inspected before a connection is passed through regardless.
pub const MAX_INSPECT: usize = 4096;

/// What [`Intercept::classify`] decided about the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough bytes to tell: read more.
    Undecided,
    /// An ordinary connection: forward it to the target.
    Pass,
    /// Ours: hand the stream to [`Intercept::serve`].
    Take,
}

/// Picks connections out of the stream of clients (see the module doc).
pub trait Intercept: Send + Sync + 'static {
    /// Decide from the client's first bytes (called again as more arrive).
    fn classify(&self, first: &[u8]) -> Verdict;
    /// Serve a connection that [`classify`](Self::classify) took. `first` holds every byte
    /// read from the client so far; `circuit` is tor's circuit id when the PROXY header is
    /// expected.
    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        first: Vec<u8>,
        circuit: Option<u32>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
