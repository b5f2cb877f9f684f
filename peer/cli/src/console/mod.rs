//! The interactive console: a numbered menu mirroring the tracker protocol's flags, with line
//! editing and history, over a peer whose daemon (serving, STUN refresh, heartbeats) and
//! downloads run in the background.
//!
//! The console only reads lines and shows answers. What each choice does is behind
//! [`Actions`], the same calls the non-interactive subcommands make, so `peer list` and choice 6
//! cannot drift apart. The line editor blocks, so the console runs on its own thread and hands
//! each choice to the async runtime; background output goes through [`output::Output`], which
//! prints above the prompt instead of through it.

pub mod menu;
pub mod output;
pub mod session;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use peer_engine::download::{Context, DownloadConfig};
use peer_engine::name::ShareName;
use peer_engine::node::{daemon, Node};
use peer_engine::reach::{Dialer, OwnNat, Presence, PunchConfig};

use crate::commands::target::Target;
use crate::output::table::FileStats;
use crate::output::ticker::ProgressTicker;
use crate::signals::stop_signal;
use menu::{parse_choice, Choice, MENU};
use output::Output;

/// What the menu choices do. Every method returns the text to show, or an error whose message
/// (with its causes) is shown instead; none of them may end the console.
pub trait Actions: Send + Sync + 'static {
    /// 1: starts a background download of `target` (a name, a `.p2p` file or a magnet link);
    /// the text says it started.
    fn download(&self, target: &Target) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// 2: a fresh peer list of `name` from the tracker.
    fn refresh(&self, name: &ShareName) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// 3: chunk reports and progress of local files.
    fn progress(&self) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// 4: shares the file at `path` (copied or linked into the share directory).
    fn share(&self, path: &str) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// 5: tells the tracker this peer leaves and stops serving.
    fn exit(&self) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// 6: the files the tracker knows.
    fn list(&self) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// 7: one file's details and peers.
    fn query(&self, name: &ShareName) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// `s`: addresses, tracker, directory, files.
    fn status(&self) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// `t`: session totals.
    fn statistics(&self) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// Figures of every local file, sampled once a second for live progress.
    fn snapshot(&self) -> impl Future<Output = Vec<FileStats>> + Send;
}

/// How often live progress samples the engine.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Runs the console until the user quits (5, q, Ctrl-D); flag 5 is sent on every way out.
/// Blocks the calling thread, which must not be a runtime worker: the console sits in the line
/// editor and passes each choice to `runtime`.
pub fn run<A: Actions>(
    actions: Arc<A>,
    runtime: Handle,
    banner: &str,
    history: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = Config::builder()
        .auto_add_history(true)
        .max_history_size(1000)?
        .build();
    let mut editor = DefaultEditor::with_config(config)?;
    if let Some(path) = &history {
        // A missing history file is the normal first run.
        let _ = editor.load_history(path);
    }
    let printer = editor
        .create_external_printer()
        .ok()
        .map(|p| Box::new(p) as Box<dyn rustyline::ExternalPrinter + Send>);
    let output = Output::new(printer);
    output::route_logs(&output);
    output.print(format!("{banner}\n{MENU}"));
    output.flush();

    let progress = runtime.spawn(report_progress(actions.clone(), output.clone()));
    let result = read_loop(&mut editor, actions.as_ref(), &runtime, &output);
    progress.abort();
    if let Some(path) = &history {
        if let Err(e) = editor.save_history(path) {
            log::warn!("cannot save the console history to {}: {e}", path.display());
        }
    }
    result
}

fn read_loop<A: Actions>(
    editor: &mut DefaultEditor,
    actions: &A,
    runtime: &Handle,
    output: &Output,
) -> anyhow::Result<()> {
    loop {
        let choice = match editor.readline("peer> ") {
            Ok(line) => match parse_choice(&line) {
                Ok(Some(choice)) => choice,
                Ok(None) => continue,
                Err(e) => {
                    output.print(format!("error: {e}"));
                    output.flush();
                    continue;
                }
            },
            Err(ReadlineError::Interrupted) => {
                output.print("(Ctrl-C) type q to leave the swarm and quit");
                output.flush();
                continue;
            }
            // Ctrl-D, or the end of piped input: leave as cleanly as q does.
            Err(ReadlineError::Eof) => Choice::Quit,
            Err(e) => return Err(e.into()),
        };
        let quitting = matches!(choice, Choice::Exit | Choice::Quit);
        let answer = match fill_in(editor, choice) {
            Ok(Some(action)) => runtime.block_on(perform(actions, action)),
            Ok(None) => {
                output.flush();
                continue;
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(text) => output.print(text),
            Err(e) => output.print(format!("error: {e:#}")),
        }
        output.flush();
        if quitting {
            return Ok(());
        }
    }
}

/// A choice with its argument, checked: what [`Actions`] is asked to do.
enum Action {
    Download(Target),
    Refresh(ShareName),
    Progress,
    Share(String),
    Exit,
    List,
    Query(ShareName),
    Status,
    Statistics,
    Help,
}

/// Asks for the argument a choice needs when the line did not carry it, and parses file names
/// once, here. `Ok(None)`: the user gave up (Ctrl-C at the sub-prompt) and nothing happens.
fn fill_in(editor: &mut DefaultEditor, choice: Choice) -> anyhow::Result<Option<Action>> {
    let ask = |editor: &mut DefaultEditor, prompt: &str| match editor.readline(prompt) {
        Ok(line) => Ok(Some(line)),
        Err(ReadlineError::Interrupted | ReadlineError::Eof) => Ok(None),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    let named =
        |editor: &mut DefaultEditor, given: Option<String>| -> anyhow::Result<Option<ShareName>> {
            let Some(name) = given
                .map(Ok)
                .or_else(|| ask(editor, "file name: ").transpose())
            else {
                return Ok(None);
            };
            Ok(Some(ShareName::new(name?.trim())?))
        };
    Ok(match choice {
        Choice::Download(given) => {
            let Some(text) = given
                .map(Ok)
                .or_else(|| ask(editor, "file name, .p2p file or magnet link: ").transpose())
            else {
                return Ok(None);
            };
            Some(Action::Download(Target::parse(&text?)?))
        }
        Choice::Refresh(name) => named(editor, name)?.map(Action::Refresh),
        Choice::Query(name) => named(editor, name)?.map(Action::Query),
        Choice::Share(Some(path)) => Some(Action::Share(path)),
        Choice::Share(None) => match ask(editor, "path of the file to share: ")? {
            Some(path) if path.trim().is_empty() => anyhow::bail!("the path must not be empty"),
            Some(path) => Some(Action::Share(path.trim().to_owned())),
            None => None,
        },
        Choice::Progress => Some(Action::Progress),
        Choice::Exit | Choice::Quit => Some(Action::Exit),
        Choice::List => Some(Action::List),
        Choice::Status => Some(Action::Status),
        Choice::Statistics => Some(Action::Statistics),
        Choice::Help => Some(Action::Help),
    })
}

async fn perform<A: Actions>(actions: &A, action: Action) -> anyhow::Result<String> {
    match action {
        Action::Download(target) => actions.download(&target).await,
        Action::Refresh(name) => actions.refresh(&name).await,
        Action::Progress => actions.progress().await,
        Action::Share(path) => actions.share(&path).await,
        Action::Exit => actions.exit().await,
        Action::List => actions.list().await,
        Action::Query(name) => actions.query(&name).await,
        Action::Status => actions.status().await,
        Action::Statistics => actions.statistics().await,
        Action::Help => Ok(MENU.trim_end().to_owned()),
    }
}

/// Samples the engine once a second and prints what [`ProgressTicker`] finds worth saying.
async fn report_progress<A: Actions>(actions: Arc<A>, output: Output) {
    let mut ticker = ProgressTicker::new();
    let mut ticks = tokio::time::interval(SAMPLE_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let files = actions.snapshot().await;
        for line in ticker.update(Instant::now(), &files) {
            output.print(line);
        }
    }
}

/// What `peer` without a subcommand starts the console with.
pub struct Launch {
    /// The started server; the console runs the daemon on it in the background.
    pub node: Node,
    /// What keeps the node reachable; its announce address follows STUN, port mapping and
    /// relay. Stopped after the node on every way out.
    pub presence: Arc<Presence>,
    pub heartbeat: Duration,
    /// STUN servers, for the status screen.
    pub stun: Vec<String>,
    pub download: DownloadConfig,
    /// The tracker tiers as metainfo files written for shares name them (`p2p://HOST:PORT`).
    pub tracker_urls: Vec<Vec<String>>,
}

/// Runs the daemon in the background and the console in front until the user quits or a
/// SIGINT/SIGTERM arrives; both ways out stop the downloads (their verified chunks stay on disk)
/// and send flag 5.
pub async fn open(launch: Launch) -> anyhow::Result<()> {
    let Launch {
        node,
        presence,
        heartbeat,
        stun,
        download,
        tracker_urls,
    } = launch;
    let address = presence.announce();
    let stop = CancellationToken::new();
    let banner = format!(
        "peer console: serving {} on {}, tracker {}. Pick a number (h shows the menu again).",
        node.dir.root().display(),
        node.listen,
        node.tracker.describe()
    );
    let history = Some(node.dir.state_dir().join("history"));
    let dialer = Arc::new(
        Dialer::new(
            node.tracker.clone(),
            node.listen,
            address.clone(),
            OwnNat::Unknown,
            PunchConfig::default(),
        )
        .with_rendezvous(node.rendezvous.clone())
        .with_relay(presence.relay())
        .with_stun(stun.clone()),
    );
    let parts = session::SessionParts {
        listen: node.listen,
        tracker_urls,
        stun,
        downloads: Context {
            dir: node.dir.clone(),
            tracker: node.tracker.clone(),
            local: node.local.clone(),
            swarms: Some(node.swarms.clone()),
            budget: node.budget.clone(),
            config: download,
            dialer: Some(dialer),
        },
        stop: stop.clone(),
        daemon: tokio::spawn(daemon::run_until(
            node,
            heartbeat,
            address,
            stop.cancelled_owned(),
        )),
    };
    let session = Arc::new(session::Session::new(parts));

    // A signal arrives while the line editor holds the terminal in raw mode and blocks its
    // thread: leave from here, put the terminal back as it was, and end the process.
    let terminal = nix::sys::termios::tcgetattr(std::io::stdin()).ok();
    let signalled = stop_signal();
    let on_signal = session.clone();
    let presence_on_signal = presence.clone();
    tokio::spawn(async move {
        signalled.await;
        on_signal.leave().await;
        presence_on_signal.stop().await;
        if let Some(mode) = terminal {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &mode,
            );
        }
        println!("\nleft the swarm (flag 5 sent to the tracker); verified chunks of unfinished downloads are kept");
        std::process::exit(0);
    });

    let runtime = Handle::current();
    let actions = session.clone();
    let result = tokio::task::spawn_blocking(move || run(actions, runtime, &banner, history)).await;
    // Every way out of the loop leaves the swarm; after 5 or q this finds nothing left to do.
    session.leave().await;
    presence.stop().await;
    result?
}
