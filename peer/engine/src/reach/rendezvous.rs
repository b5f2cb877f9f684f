//! Where the server and our own punches meet: connections a punch waits for that arrive on the
//! listener, and connections punched for a notice that the server must serve.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use log::debug;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::relay::RelayState;

/// Connections a punch expects on our listener rather than on its own socket.
///
/// The target of a punch connects back from its serving port. Behind a symmetric NAT that
/// connection leaves from a public port nobody could predict, so it cannot match our socket that
/// connects to the port the target announced; if our NAT lets it in (no NAT, or the serving port
/// forwarded), it reaches our listener as an ordinary incoming connection. The same happens when
/// the target's SYN arrives between two of our attempts. The server offers every accepted
/// connection here first; one from the IP a punch is waiting for goes to that punch.
#[derive(Default)]
pub struct Rendezvous {
    waiting: Mutex<HashMap<IpAddr, Vec<oneshot::Sender<TcpStream>>>>,
    /// The last connections offered, newest last: lets a PUNCH answer whose own attempts
    /// failed tell "the requester's SYN got in first" (a success) from a real failure.
    recent: Mutex<VecDeque<(IpAddr, Instant)>>,
}

/// Connections remembered in [`Rendezvous::recent`].
const RECENT: usize = 64;

impl Rendezvous {
    /// Hands `stream` to a punch waiting for a connection from `from`'s IP; gives it back when
    /// none waits, for the server to serve.
    pub fn claim(&self, stream: TcpStream, from: SocketAddr) -> Option<TcpStream> {
        {
            let mut recent = self.recent.lock();
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back((from.ip(), Instant::now()));
        }
        let mut waiting = self.waiting.lock();
        let mut stream = stream;
        if let Some(list) = waiting.get_mut(&from.ip()) {
            while let Some(tx) = list.pop() {
                match tx.send(stream) {
                    Ok(()) => {
                        debug!("punch: connection from {from} taken by the punch waiting for it");
                        if list.is_empty() {
                            waiting.remove(&from.ip());
                        }
                        return None;
                    }
                    Err(back) => stream = back,
                }
            }
            waiting.remove(&from.ip());
        }
        Some(stream)
    }

    /// Whether a connection from `ip` arrived since `since`.
    pub(super) fn arrived_since(&self, ip: IpAddr, since: Instant) -> bool {
        self.recent
            .lock()
            .iter()
            .any(|(from, at)| *from == ip && *at >= since)
    }

    pub(super) fn expect(&self, ip: IpAddr) -> oneshot::Receiver<TcpStream> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.waiting.lock();
        let list = waiting.entry(ip).or_default();
        list.retain(|t| !t.is_closed());
        list.push(tx);
        rx
    }
}

/// The server's end of hole punching: connections punched on behalf of notices, to be served
/// like accepted ones, and the rendezvous accepted connections are offered to first.
pub struct Incoming {
    punched: mpsc::Receiver<TcpStream>,
    rendezvous: Arc<Rendezvous>,
}

impl Incoming {
    /// The next connection the answerer punched; `None` once no answerer is left.
    pub async fn punched(&mut self) -> Option<TcpStream> {
        self.punched.recv().await
    }

    /// See [`Rendezvous::claim`].
    pub fn claim(&self, stream: TcpStream, from: SocketAddr) -> Option<TcpStream> {
        self.rendezvous.claim(stream, from)
    }
}

/// The other end of [`Incoming`]: where punched and relayed connections go, the shared
/// rendezvous, and the relay this peer holds (if any), which decides how PUNCH notices are
/// answered.
#[derive(Clone)]
pub struct Outlet {
    pub punched: mpsc::Sender<TcpStream>,
    pub rendezvous: Arc<Rendezvous>,
    pub relay: Arc<RelayState>,
}

impl Outlet {
    /// Hands a connection that arrived other than through the listener (a relayed one) to the
    /// punch waiting for `from`'s IP, else to the server. A full queue drops it with a warning:
    /// the server is at its connection limit.
    pub fn deliver(&self, stream: TcpStream, from: SocketAddr) {
        if let Some(stream) = self.rendezvous.claim(stream, from) {
            if self.punched.try_send(stream).is_err() {
                log::warn!("server busy or stopped; dropping the connection of {from}");
            }
        }
    }
}

/// A connected [`Incoming`] / [`Outlet`] pair for one server.
pub fn server_hooks() -> (Incoming, Outlet) {
    let (tx, rx) = mpsc::channel(16);
    let rendezvous = Arc::new(Rendezvous::default());
    (
        Incoming {
            punched: rx,
            rendezvous: rendezvous.clone(),
        },
        Outlet {
            punched: tx,
            rendezvous,
            relay: Arc::default(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connections_nobody_waits_for_go_back_to_the_server() {
        let rendezvous = Rendezvous::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // A punch that gave up: its receiver is gone.
        drop(rendezvous.expect(addr.ip()));
        let (_client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (stream, from) = accepted.unwrap();
        assert!(rendezvous.claim(stream, from).is_some());
    }
}
