//! How a user stops `peer`: SIGINT (Ctrl-C) or SIGTERM, both of which leave the swarm cleanly.
//!
//! The handlers are installed once, before the process prints anything a supervisor (or a
//! test) may answer with a signal: a signal arriving while a command is still starting is then
//! neither fatal (the default action) nor lost, and ends the command as soon as it waits.

use std::future::Future;
use std::io;
use std::sync::OnceLock;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

static STOP: OnceLock<CancellationToken> = OnceLock::new();

fn stop_token() -> CancellationToken {
    STOP.get_or_init(CancellationToken::new).clone()
}

/// Catches SIGINT and SIGTERM from now on. Call inside the runtime, first thing.
pub fn install() -> io::Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = stop_token();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => log::info!("SIGINT received"),
            _ = terminate.recv() => log::info!("SIGTERM received"),
        }
        stop.cancel();
    });
    Ok(())
}

/// Resolves once the process has been asked to stop, even if that was before this call.
pub fn stop_signal() -> impl Future<Output = ()> {
    stop_token().cancelled_owned()
}
