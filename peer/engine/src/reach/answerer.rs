//! The target's side (protocol.txt §4.4): PUNCH notices from the tracker for files we share
//! make us connect back from the serving port, within bounds a flood of notices cannot break.

use std::net::SocketAddr;
use std::sync::Arc;

use log::{debug, info, warn};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, Semaphore};
use tracker_proto::{FileName, PunchNotice};

use super::relay::RelayState;
use super::rendezvous::{Outlet, Rendezvous};
use super::simultaneous::{simultaneous_open, PunchConfig};

/// Answers the tracker's PUNCH notices for files `shares` says this peer serves, handing each
/// punched connection to `serve`. Returns when the tracker client is gone.
pub async fn answer_notices<S, F>(
    mut notices: broadcast::Receiver<PunchNotice>,
    answerer: PunchAnswerer,
    shares: S,
    serve: F,
) where
    S: Fn(&FileName) -> bool,
    F: Fn(TcpStream) + Clone + Send + 'static,
{
    loop {
        match notices.recv().await {
            Ok(notice) if shares(&notice.file) => {
                let serve = serve.clone();
                answerer.answer(notice.file.as_str(), notice.from, move |stream| {
                    serve(stream)
                });
            }
            Ok(notice) => debug!(
                "punch: ignoring notice for {} (not shared here) from {}",
                notice.file, notice.from
            ),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!("punch: {n} notices dropped (too many at once)")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The target side: answers punch notices by connecting back from the serving port and handing
/// each connection to `serve` (the same handler accepted connections get). Answers run
/// concurrently up to [`PunchConfig::max_concurrent_answers`].
///
/// While this peer holds a relay (protocol.txt §5) a notice is answered differently: the
/// requester connects to the relayed address, so we only permit its IP on the allocation, and
/// do not punch (our connection back would reach its listener as a stranger's).
#[derive(Clone)]
pub struct PunchAnswerer {
    local: SocketAddr,
    config: PunchConfig,
    slots: Arc<Semaphore>,
    relay: Arc<RelayState>,
    rendezvous: Arc<Rendezvous>,
}

impl PunchAnswerer {
    /// `local` is the address the serving listener is bound to.
    pub fn new(local: SocketAddr, config: PunchConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_answers.max(1)));
        Self {
            local,
            config,
            slots,
            relay: Arc::default(),
            rendezvous: Arc::default(),
        }
    }

    /// Answers as the server of `outlet` does: with its relay (see above) and its rendezvous,
    /// which tells whether a failed answer was a failure at all (the requester's connection
    /// may have reached the listener instead).
    pub fn with_outlet(mut self, outlet: &Outlet) -> Self {
        self.relay = outlet.relay.clone();
        self.rendezvous = outlet.rendezvous.clone();
        self
    }

    /// Starts connecting to `from` in the background; `serve` gets the stream when the punch
    /// succeeds. A notice beyond the concurrency limit is dropped with a warning rather than
    /// queued (the requester sends a new flag 8 if it still wants us); returns whether the
    /// notice was taken.
    pub fn answer<F>(&self, file: &str, from: SocketAddr, serve: F) -> bool
    where
        F: FnOnce(TcpStream) + Send + 'static,
    {
        if self.relay.active().is_some() {
            let relay = self.relay.clone();
            info!("punch: {from} asks for {file}; permitting it on our relay");
            tokio::spawn(async move { relay.permit(from.ip()).await });
            return true;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            warn!(
                "punch: ignoring notice for {file} from {from}: {} answers already running",
                self.config.max_concurrent_answers
            );
            return false;
        };
        let local = self.local;
        let config = self.config.clone();
        let file = file.to_owned();
        let (relay, rendezvous) = (self.relay.clone(), self.rendezvous.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let started = tokio::time::Instant::now();
            info!("punch: {from} asks for {file}; connecting from {local}");
            match simultaneous_open(local, from, &config).await {
                Ok(stream) => {
                    info!("punch: connected to {from} for {file}");
                    relay.punch_succeeded();
                    serve(stream)
                }
                // The requester's SYN may already have reached our listener, which then owns the
                // one connection this 4-tuple can carry; our own attempts fail and that is fine.
                Err(_) if rendezvous.arrived_since(from.ip(), started) => {
                    info!("punch: {from} reached our listener itself for {file}");
                    relay.punch_succeeded();
                }
                Err(e) => {
                    info!("punch: answer to {from} for {file} ended without a connection: {e}");
                    relay.punch_failed();
                }
            }
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{free_addr, quick};
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn answerer_hands_the_punched_connection_to_the_serve_handler() {
        let requester = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let requester_addr = requester.local_addr().unwrap();
        let answerer = PunchAnswerer::new(free_addr(), quick());
        let (tx, rx) = tokio::sync::oneshot::channel();
        answerer.answer("f.bin", requester_addr, move |mut stream| {
            tokio::spawn(async move {
                stream.write_all(b"served").await.unwrap();
                let _ = tx.send(());
            });
        });
        let (mut conn, _) = requester.accept().await.unwrap();
        let mut buf = [0u8; 6];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"served");
        rx.await.unwrap();
    }

    #[tokio::test]
    async fn answers_beyond_the_limit_are_dropped_not_queued() {
        // Refused targets with many attempts keep both slots busy for seconds.
        let mut cfg = quick();
        cfg.attempts = 50;
        cfg.retry_delay = Duration::from_millis(100);
        let answerer = PunchAnswerer::new(free_addr(), cfg);
        assert!(answerer.answer("f.bin", free_addr(), |_| {}));
        assert!(answerer.answer("f.bin", free_addr(), |_| {}));
        assert!(
            !answerer.answer("f.bin", free_addr(), |_| {}),
            "third notice must be dropped"
        );
    }
}
