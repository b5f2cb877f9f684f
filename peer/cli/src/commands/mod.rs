//! The subcommands of `peer`, one module per family, each returning or printing what the user
//! sees. The console calls the same functions for its menu choices.

pub mod catalog;
pub mod get;
pub mod serve;
pub mod show;
pub mod status;
pub mod target;

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context as _;
use peer_engine::share::ShareDir;
use tracker_proto::client::{ClientConfig, Resolver, TrackerSpec};
use tracker_proto::TrackerClient;

/// How an answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl Format {
    pub fn json_if(json: bool) -> Format {
        if json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// The text form, or the JSON one built only when asked for.
pub fn render(format: Format, text: String, json: impl FnOnce() -> serde_json::Value) -> String {
    match format {
        Format::Text => text,
        Format::Json => json().to_string(),
    }
}

/// Prints a whole answer and flushes, so scripts reading our stdout see it at once.
pub fn print(text: &str) {
    println!("{text}");
    flush();
}

pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// A client of the tracker tiers with this directory's persistent key, so every command on
/// the directory is the same peer to every tracker. Names are resolved by `dns_server` when
/// given, else by the system's resolver. Beside a running daemon the client announces with
/// `punch=keep`: PUNCH notices keep going to the daemon's socket, which listens for them,
/// never to this command's, which is about to close.
pub fn connect_tracker(
    tiers: Vec<Vec<TrackerSpec>>,
    dns_server: Option<SocketAddr>,
    dir: &ShareDir,
) -> anyhow::Result<TrackerClient> {
    let config = ClientConfig {
        key: dir.peer_key()?,
        keep_punch_path: peer_engine::node::lock::running_daemon(dir).is_some(),
        ..ClientConfig::default()
    };
    let resolver = match dns_server {
        Some(server) => Resolver::with_server(server),
        None => Resolver::system(),
    };
    TrackerClient::with_tiers(tiers, config, resolver).context("no tracker to use")
}
