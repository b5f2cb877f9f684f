//! `peer`: the command line of the p2p file-sharing peer. Parses arguments, sets up logging and
//! the runtime, and hands over to a subcommand or the console; the engine (`peer_engine`) does
//! the work, so the console and scripts drive the same code.

mod args;
mod commands;
mod console;
mod http;
mod output;
mod signals;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use peer_engine::download::DownloadConfig;
use peer_engine::name::ShareName;
use peer_engine::node::{daemon, lock};
use peer_engine::share::ShareDir;

use args::{Cli, Command};
use commands::get::GetOptions;
use commands::target::Target;
use commands::{print, serve, Format};

/// Caps glibc's malloc arenas at two. glibc gives each new thread its own arena, up to eight
/// per core, and the blocking pool's threads free receive buffers that runtime threads
/// allocated: memory freed into many arenas is rarely given back, so a download's resident
/// memory grew with the file (about 20 MiB more at 4 GiB from four seeders than with two
/// arenas, which run at the same speed).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Raises the soft limit of open files to the hard one: a directory share keeps every one of
/// its files open while its swarm serves or downloads it, and the usual soft limit (1024) is
/// less than one directory of a thousand files beside the connections.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    raise_open_file_limit();
    let cli = Cli::parse();
    let bars = matches!(cli.command, Some(Command::Get { .. })) && output::live::bars_wanted();
    // The console, and `peer get` under its progress bars, show only what deserves attention
    // (RUST_LOG still rules).
    let default_level = if cli.command.is_none() || bars {
        "warn"
    } else {
        "info"
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    // Transfers take fractions of a second: log lines a person compares need milliseconds.
    logger.format_timestamp_millis();
    if cli.command.is_none() {
        logger.target(env_logger::Target::Pipe(Box::new(
            console::output::LogWriter,
        )));
    }
    // `peer share` on a terminal may draw a hashing bar (output::hashing): logs go around it.
    let shares = matches!(cli.command, Some(Command::Share { .. })) && output::live::bars_wanted();
    if bars || shares {
        logger.target(env_logger::Target::Pipe(Box::new(output::live::LogWriter)));
    }
    logger.init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On a worker, not on this thread: a future that block_on polls here wakes this thread
    // for every event it waits on (thousands a second during a download).
    match runtime.block_on(runtime.spawn(run(cli))) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    signals::install().context("cannot catch SIGINT and SIGTERM")?;
    if let Some(Command::Show { file, json }) = &cli.command {
        print(&commands::show::show(file, Format::json_if(*json))?);
        return Ok(());
    }
    // What `peer get` is asked for decides the tracker when --tracker is not given.
    let targets: Vec<(String, anyhow::Result<Target>)> = match &cli.command {
        Some(Command::Get { names, .. }) => names
            .iter()
            .map(|n| (n.clone(), Target::parse(n)))
            .collect(),
        _ => Vec::new(),
    };
    let tiers = match cli.global.tracker_tiers()? {
        Some(tiers) => tiers,
        None => targets
            .iter()
            .filter_map(|(_, t)| t.as_ref().ok())
            .map(Target::tracker_specs)
            .find(|tiers| !tiers.is_empty())
            .unwrap_or_else(|| {
                vec![vec![args::DEFAULT_TRACKER
                    .parse()
                    .expect("a valid default")]]
            }),
    };
    let dir = Arc::new(ShareDir::open(&cli.global.dir)?);
    let tracker = Arc::new(commands::connect_tracker(
        tiers,
        cli.global.dns_server,
        &dir,
    )?);
    if cli.global.stun.is_empty() && cli.global.announce.is_none() {
        cli.global.tracker_stun = tracker
            .first_tier_addresses()
            .await
            .iter()
            .map(|a| a.ip())
            .collect();
    }
    let global = &cli.global;
    let tracker_urls = commands::target::tracker_urls(&tracker.tiers());
    let Some(command) = &cli.command else {
        // Held until the console has left the swarm; a second server of --dir is refused.
        let serving = lock::hold(&dir)?;
        let node = serve::start_server(global, dir, tracker, &serving)?;
        let presence = Arc::new(serve::start_presence(global, &node).await);
        return console::open(console::Launch {
            node,
            presence,
            heartbeat: daemon::DEFAULT_HEARTBEAT,
            stun: global.stun_servers(),
            download: DownloadConfig::default(),
            tracker_urls,
        })
        .await;
    };
    match command {
        Command::List { json } => {
            print(&commands::catalog::list(&tracker, Format::json_if(*json)).await?)
        }
        Command::Query { name, json } => print(
            &commands::catalog::query(
                &tracker,
                &ShareName::new(name.trim())?,
                Format::json_if(*json),
            )
            .await?,
        ),
        Command::Peers { name, json } => print(
            &commands::catalog::refresh(
                &tracker,
                &ShareName::new(name.trim())?,
                Format::json_if(*json),
            )
            .await?,
        ),
        Command::Status { json } => print(&commands::status::status(
            &dir,
            lock::running_daemon(&dir),
            Format::json_if(*json),
        )),
        Command::Exit => serve::exit(global, &dir, &tracker).await?,
        Command::Share {
            file,
            heartbeat,
            chunk_size,
        } => {
            serve::share(
                global,
                dir,
                tracker,
                &tracker_urls,
                file,
                *chunk_size,
                *heartbeat,
            )
            .await?
        }
        Command::Daemon {
            heartbeat,
            http,
            http_public,
        } => {
            let http = http.map(|addr| serve::HttpOption {
                addr,
                public: *http_public,
            });
            serve::daemon(global, dir, tracker, *heartbeat, http).await?
        }
        // Printed above, before the share directory is opened (it needs none).
        Command::Show { .. } => {}
        Command::Get {
            names: _,
            give_up,
            stall_timeout,
            json,
            recheck,
        } => {
            let options = GetOptions {
                give_up: *give_up,
                stall_timeout: *stall_timeout,
                recheck: *recheck,
                format: Format::json_if(*json),
            };
            commands::get::get(global, dir, tracker, targets, &options).await?
        }
    }
    Ok(())
}
