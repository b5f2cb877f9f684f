//! How a user stops `peer`: SIGINT (Ctrl-C) or SIGTERM, both of which leave the swarm cleanly; a
//! second one quits at once.
//!
//! The handlers are installed once, before the process prints anything a supervisor (or a
//! test) may answer with a signal: a signal arriving while a command is still starting is then
//! neither fatal (the default action) nor lost, and ends the command as soon as it waits.

use std::future::Future;
use std::io;
use std::sync::OnceLock;

use nix::sys::termios;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

static STOP: OnceLock<CancellationToken> = OnceLock::new();

fn stop_token() -> CancellationToken {
    STOP.get_or_init(CancellationToken::new).clone()
}

/// Catches SIGINT and SIGTERM from now on. Call inside the runtime, first thing.
///
/// The first signal stops the command, which then tells the tracker it leaves: with the
/// tracker down that takes seconds of retries, so a second signal quits at once, as in
/// transmission-cli. Nothing is lost by it: downloads resume from their verified chunks and
/// the tracker drops rows nobody heartbeats. The terminal gets back the mode it had here, in
/// case the console's line editor holds it in raw mode.
pub fn install() -> io::Result<()> {
    let terminal = termios::tcgetattr(io::stdin()).ok();
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let stop = stop_token();
    tokio::spawn(async move {
        let first = next_signal(&mut interrupt, &mut terminate).await;
        log::info!(
            "{} received: leaving the swarm (send it again to quit at once)",
            first.name()
        );
        stop.cancel();
        let second = next_signal(&mut interrupt, &mut terminate).await;
        log::warn!(
            "{} received again: quitting without telling the tracker",
            second.name()
        );
        if let Some(mode) = terminal {
            let _ = termios::tcsetattr(io::stdin(), termios::SetArg::TCSANOW, &mode);
        }
        std::process::exit(128 + second.number());
    });
    Ok(())
}

#[derive(Clone, Copy)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    fn number(self) -> i32 {
        match self {
            StopSignal::Interrupt => libc::SIGINT,
            StopSignal::Terminate => libc::SIGTERM,
        }
    }
}

async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> StopSignal {
    tokio::select! {
        _ = interrupt.recv() => StopSignal::Interrupt,
        _ = terminate.recv() => StopSignal::Terminate,
    }
}

/// Resolves once the process has been asked to stop, even if that was before this call.
pub fn stop_signal() -> impl Future<Output = ()> {
    stop_token().cancelled_owned()
}
