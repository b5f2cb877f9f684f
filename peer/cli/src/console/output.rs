//! Where the console writes, so that background downloads never garble the line being typed.
//!
//! On a terminal, rustyline's external printer clears the prompt, prints the message and redraws
//! the prompt with whatever the user had typed so far. Its channel holds a single message, so a
//! print may block until the editor takes it; a dedicated thread owns the printer so that async
//! tasks (progress, the daemon) only ever push into an unbounded queue and never block. Without
//! a terminal (pipes, scripts, tests) lines go to stdout in the same order through the same
//! thread.

use std::io::{self, Write};
use std::sync::{mpsc, OnceLock};
use std::thread;

use rustyline::ExternalPrinter;

enum Message {
    Text(String),
    /// Answered once every message queued before it has been written.
    Flush(mpsc::Sender<()>),
}

/// A cloneable handle for printing whole lines above the prompt.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::Sender<Message>,
}

impl Output {
    /// Prints through `printer` when there is one (a terminal), to stdout otherwise.
    pub fn new(printer: Option<Box<dyn ExternalPrinter + Send>>) -> Self {
        let (tx, rx) = mpsc::channel::<Message>();
        thread::Builder::new()
            .name("console-output".into())
            .spawn(move || {
                let mut printer = printer;
                for message in rx {
                    match message {
                        Message::Text(text) => write_text(&mut printer, text),
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| log::error!("cannot start the console output thread: {e}"));
        Self { tx }
    }

    /// Queues `text` (one or more lines) for printing; never blocks.
    pub fn print(&self, text: impl Into<String>) {
        let mut text = text.into();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if self.tx.send(Message::Text(text.clone())).is_err() {
            // The output thread could not start or is gone: stdout is still better than nothing.
            print!("{text}");
        }
    }

    /// Waits until everything queued so far is on the screen, so a command's answer appears
    /// before the next prompt.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }
}

fn write_text(printer: &mut Option<Box<dyn ExternalPrinter + Send>>, text: String) {
    if let Some(p) = printer {
        match p.print(text.clone()) {
            Ok(()) => return,
            Err(e) => {
                log::debug!("external printer failed ({e}); falling back to stdout");
                *printer = None;
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Where log records go once the console is open.
static LOG_OUTPUT: OnceLock<Output> = OnceLock::new();

/// Sends log records through `output` from now on, so warnings (an unreachable STUN server, a
/// failed heartbeat) appear above the prompt instead of through it.
pub fn route_logs(output: &Output) {
    let _ = LOG_OUTPUT.set(output.clone());
}

/// The `env_logger` target of the console: stderr until [`route_logs`], the console after.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match LOG_OUTPUT.get() {
            Some(output) => output.print(String::from_utf8_lossy(buf).trim_end().to_owned()),
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
