//! What the `peer` command prints: aligned text for people, JSON for scripts (`--json`). The
//! console and the subcommands print through the same functions, so they cannot drift apart.

pub mod hashing;
pub mod live;
pub mod metainfo;
pub mod show;
pub mod table;
pub mod ticker;
pub mod units;
