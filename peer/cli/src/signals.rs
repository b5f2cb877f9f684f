//! How a user stops `peer`: SIGINT (Ctrl-C) or SIGTERM, both of which leave the swarm cleanly.

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// Resolves when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM.
pub fn stop_signal() -> io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => log::info!("SIGINT received"),
            _ = terminate.recv() => log::info!("SIGTERM received"),
        }
    })
}
