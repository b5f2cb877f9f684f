//! Keeps a mapped address fresh: NATs drop idle mappings and routers reboot, so the public
//! address a peer announced can silently change. The refresher re-asks STUN every period and
//! reports what changed, and the peer daemon re-announces to the tracker when it does.
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) {
//! use stun::refresher::{MappingEvent, Refresher, RefresherConfig, Transport};
//! let local = "0.0.0.0:6881".parse().unwrap();
//! let mut refresher = Refresher::spawn(Transport::Tcp(local), server, RefresherConfig::default());
//! while let Some(event) = refresher.next_event().await {
//!     match event {
//!         MappingEvent::Mapped(addr) | MappingEvent::Changed { new: addr, .. } => { /* announce addr */ }
//!         MappingEvent::Unreachable { error, .. } => log::warn!("{error}"),
//!         MappingEvent::Back(_) => {}
//!     }
//! }
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info, warn};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::binding::{binding_tcp, binding_udp, BindingConfig, BindingError};

/// Where the Binding requests leave from: the mapping being watched is that of this socket.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A UDP socket shared with the caller. The refresher reads from it during each transaction
    /// (see [`binding_udp`]), so it should not be the socket the caller reads at the same time.
    Udp(Arc<UdpSocket>),
    /// TCP connections from this local address, sharing its port with a listener there.
    Tcp(SocketAddr),
}

/// Timing of the refresher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefresherConfig {
    /// Pause between the end of one transaction and the start of the next. 30 s keeps UDP NAT
    /// mappings (commonly dropped after 30-120 s idle) alive and notices a change quickly.
    pub period: Duration,
    pub binding: BindingConfig,
}

impl Default for RefresherConfig {
    fn default() -> Self {
        RefresherConfig {
            period: Duration::from_secs(30),
            binding: BindingConfig::default(),
        }
    }
}

/// What the refresher noticed.
#[derive(Debug)]
pub enum MappingEvent {
    /// The first mapped address learned.
    Mapped(SocketAddr),
    /// The mapped address moved: announce `new`, `old` is no longer ours.
    Changed { old: SocketAddr, new: SocketAddr },
    /// The server stopped answering (reported once per outage; retries go on every period).
    Unreachable {
        last_known: Option<SocketAddr>,
        error: BindingError,
    },
    /// The server answers again, at this mapped address. When it differs from the last known
    /// one, a `Changed` event follows (or a `Mapped` one if none was known).
    Back(SocketAddr),
}

/// The pure state machine behind the refresher: one observation in, the events it causes out.
#[derive(Debug, Default)]
pub struct MappingState {
    last_known: Option<SocketAddr>,
    unreachable: bool,
}

impl MappingState {
    /// The mapped address of the last successful transaction.
    pub fn last_known(&self) -> Option<SocketAddr> {
        self.last_known
    }

    pub fn observe(&mut self, outcome: Result<SocketAddr, BindingError>) -> Vec<MappingEvent> {
        let mut events = Vec::new();
        match outcome {
            Ok(mapped) => {
                if std::mem::take(&mut self.unreachable) {
                    events.push(MappingEvent::Back(mapped));
                }
                match self.last_known.replace(mapped) {
                    None => events.push(MappingEvent::Mapped(mapped)),
                    Some(old) if old != mapped => {
                        events.push(MappingEvent::Changed { old, new: mapped })
                    }
                    Some(_) => {}
                }
            }
            Err(error) if !self.unreachable => {
                self.unreachable = true;
                events.push(MappingEvent::Unreachable {
                    last_known: self.last_known,
                    error,
                });
            }
            Err(error) => debug!("STUN server still unreachable: {error}"),
        }
        events
    }
}

/// A background task re-asking STUN every period. Dropping the `Refresher` stops it.
#[derive(Debug)]
pub struct Refresher {
    events: mpsc::Receiver<MappingEvent>,
    current: watch::Receiver<Option<SocketAddr>>,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Refresher {
    /// Starts asking `server` at once, then every `config.period`. Must be called inside a tokio
    /// runtime.
    pub fn spawn(transport: Transport, server: SocketAddr, config: RefresherConfig) -> Refresher {
        let (event_tx, events) = mpsc::channel(16);
        let (current_tx, current) = watch::channel(None);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            transport,
            server,
            config,
            event_tx,
            current_tx,
            wake.clone(),
        ));
        Refresher {
            events,
            current,
            wake,
            task,
        }
    }

    /// The next event; `None` only if the task ended, which it does not while `self` lives.
    pub async fn next_event(&mut self) -> Option<MappingEvent> {
        self.events.recv().await
    }

    /// The mapped address of the last successful transaction, `None` before the first one.
    pub fn current(&self) -> Option<SocketAddr> {
        *self.current.borrow()
    }

    /// A receiver that sees every new last-known mapped address, for tasks that only want the
    /// latest value.
    pub fn watch(&self) -> watch::Receiver<Option<SocketAddr>> {
        self.current.clone()
    }

    /// Asks again now instead of at the end of the current pause (e.g. after the network came
    /// back); has no effect on a transaction in progress.
    pub fn refresh_now(&self) {
        self.wake.notify_one();
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    transport: Transport,
    server: SocketAddr,
    config: RefresherConfig,
    events: mpsc::Sender<MappingEvent>,
    current: watch::Sender<Option<SocketAddr>>,
    wake: Arc<Notify>,
) {
    let mut state = MappingState::default();
    loop {
        let outcome = match &transport {
            Transport::Udp(socket) => binding_udp(socket, server, &config.binding).await,
            Transport::Tcp(local) => binding_tcp(*local, server, &config.binding).await,
        };
        let observed = state.observe(outcome.map(|binding| binding.mapped()));
        // Updated before the events go out, so `current()` agrees with an event just received.
        current.send_replace(state.last_known());
        for event in observed {
            match &event {
                MappingEvent::Mapped(addr) => info!("STUN: mapped address {addr}"),
                MappingEvent::Changed { old, new } => info!("STUN: mapping moved {old} -> {new}"),
                MappingEvent::Unreachable { error, .. } => warn!("STUN: {error}"),
                MappingEvent::Back(addr) => info!("STUN: {server} answers again ({addr})"),
            }
            if events.send(event).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.period) => {}
            _ = wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Protocol;

    fn timeout() -> BindingError {
        BindingError::Timeout {
            server: "127.0.0.1:3478".parse().unwrap(),
            protocol: Protocol::Udp,
            requests: 7,
            waited: Duration::from_millis(39_500),
        }
    }

    #[test]
    fn reports_first_mapping_changes_outages_and_recovery() {
        let a: SocketAddr = "203.0.113.1:1000".parse().unwrap();
        let b: SocketAddr = "203.0.113.1:2000".parse().unwrap();
        let mut state = MappingState::default();
        assert!(matches!(state.observe(Ok(a))[..], [MappingEvent::Mapped(x)] if x == a));
        assert!(state.observe(Ok(a)).is_empty());
        assert!(matches!(
            state.observe(Ok(b))[..],
            [MappingEvent::Changed { old, new }] if old == a && new == b
        ));
        assert!(matches!(
            state.observe(Err(timeout()))[..],
            [MappingEvent::Unreachable { last_known: Some(x), .. }] if x == b
        ));
        assert!(
            state.observe(Err(timeout())).is_empty(),
            "one event per outage"
        );
        assert_eq!(state.last_known(), Some(b));
        assert!(matches!(state.observe(Ok(b))[..], [MappingEvent::Back(x)] if x == b));
        state.observe(Err(timeout()));
        assert!(matches!(
            state.observe(Ok(a))[..],
            [MappingEvent::Back(x), MappingEvent::Changed { old, new }] if x == a && old == b && new == a
        ));
    }

    #[test]
    fn outage_before_any_mapping_then_first_mapping() {
        let a: SocketAddr = "203.0.113.1:1000".parse().unwrap();
        let mut state = MappingState::default();
        assert!(matches!(
            state.observe(Err(timeout()))[..],
            [MappingEvent::Unreachable {
                last_known: None,
                ..
            }]
        ));
        assert!(matches!(
            state.observe(Ok(a))[..],
            [MappingEvent::Back(x), MappingEvent::Mapped(y)] if x == a && y == a
        ));
    }
}
