//! The socket loop around [`Tracker`]: one receive thread per SO_REUSEPORT socket, with batched
//! system calls on Linux, and an async task that expires silent peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
#[cfg(not(target_os = "linux"))]
use tracker_proto::MAX_REQUEST_BYTES;

use crate::handler::Tracker;
use crate::store::SwarmStore;

/// Receive buffer asked for each tracker socket.
const RECV_BUFFER_BYTES: usize = 4 << 20;

/// Binds `workers` UDP sockets to one address with SO_REUSEPORT (the first may pick the port
/// when `addr` has port 0), so the kernel spreads datagrams over them by source address and each
/// receive thread waits on its own socket: threads sharing one socket are all woken for each
/// datagram and all but one go back to sleep.
pub fn bind_sockets(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.port() != 0 {
        // SO_REUSEPORT would let a second tracker of the same user share the port and half the
        // traffic; a plain bind first makes that case the usual "address in use" error.
        drop(std::net::UdpSocket::bind(addr)?);
    }
    let mut sockets: Vec<std::net::UdpSocket> = Vec::with_capacity(workers.max(1));
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_port(true)?;
        // Room for bursts while a thread is descheduled (the kernel caps it at rmem_max).
        if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER_BYTES) {
            debug!("cannot enlarge the receive buffer: {e}");
        }
        socket.bind(&addr.into())?;
        let socket: std::net::UdpSocket = socket.into();
        if addr.port() == 0 {
            addr = socket.local_addr()?;
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Serves `tracker` on `sockets` (from [`bind_sockets`]), one receive thread per socket, until
/// a receive loop fails. Blocking threads with batched system calls answer markedly more
/// requests per second on loopback than async tasks, whose readiness wake-ups cost more than the
/// request itself. Expiry runs as an async task.
pub async fn serve<S: SwarmStore + 'static>(
    sockets: Vec<std::net::UdpSocket>,
    tracker: Arc<Tracker<S>>,
) -> std::io::Result<()> {
    let sweep = (tracker.config().ttl / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let sweeper = {
        let tracker = Arc::clone(&tracker);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep);
            loop {
                tick.tick().await;
                // A sweep may wait on a store behind the network: off the async workers.
                let tracker = Arc::clone(&tracker);
                let swept = tokio::task::spawn_blocking(move || tracker.expire(Instant::now()));
                if let Err(e) = swept.await {
                    log::error!("expiry sweep failed: {e}");
                }
            }
        })
    };
    let _stop_sweeper = AbortOnDrop(sweeper.abort_handle());
    let (failed_tx, mut failed_rx) = tokio::sync::mpsc::channel(sockets.len().max(1));
    for (n, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(false)?;
        let tracker = Arc::clone(&tracker);
        let failed_tx = failed_tx.clone();
        std::thread::Builder::new()
            .name(format!("tracker-udp-{n}"))
            .spawn(move || {
                let e = worker(&socket, &tracker);
                let _ = failed_tx.blocking_send(e);
            })?;
    }
    drop(failed_tx);
    match failed_rx.recv().await {
        Some(e) => Err(e),
        None => Err(std::io::Error::other("tracker workers stopped")),
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One receive loop; returns only on a socket error that will not go away.
#[cfg(target_os = "linux")]
fn worker<S: SwarmStore>(socket: &std::net::UdpSocket, tracker: &Tracker<S>) -> std::io::Error {
    use crate::batch::{send_all, RecvBatch};
    let mut batch = RecvBatch::new();
    let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(2 * crate::batch::BATCH);
    let mut errors = ErrorStreak::default();
    loop {
        let n = match batch.recv(socket) {
            Ok(n) => n,
            Err(e) => match errors.note(e) {
                Some(fatal) => return fatal,
                None => continue,
            },
        };
        errors.reset();
        out.clear();
        tracker.handle_batch(
            (0..n).filter_map(|i| batch.get(i)),
            Instant::now(),
            &mut out,
        );
        for (to, e) in send_all(socket, &out) {
            debug!("cannot send to {to}: {e}");
        }
    }
}

/// One receive loop; returns only on a socket error that will not go away.
#[cfg(not(target_os = "linux"))]
fn worker<S: SwarmStore>(socket: &std::net::UdpSocket, tracker: &Tracker<S>) -> std::io::Error {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES + 1];
    let mut errors = ErrorStreak::default();
    loop {
        let (len, source) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => match errors.note(e) {
                Some(fatal) => return fatal,
                None => continue,
            },
        };
        errors.reset();
        let outcome = tracker.handle(&buf[..len], source, Instant::now());
        for (to, datagram) in outcome
            .reply
            .map(|r| (source, r))
            .into_iter()
            .chain(outcome.punch)
        {
            if let Err(e) = socket.send_to(&datagram, to) {
                debug!("cannot send to {to}: {e}");
            }
        }
    }
}

/// Receive errors in a row. ICMP errors from earlier sends surface as receive errors and are
/// per-datagram; a socket that fails every time is broken.
#[derive(Default)]
struct ErrorStreak(u32);

impl ErrorStreak {
    fn note(&mut self, e: std::io::Error) -> Option<std::io::Error> {
        debug!("receive error: {e}");
        self.0 += 1;
        (self.0 > 1000).then_some(e)
    }

    fn reset(&mut self) {
        self.0 = 0;
    }
}
