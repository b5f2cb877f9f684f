//! The Redis-backed store (`tracker --store redis://HOST:PORT[/DB]`, Redis 7 or Valkey): every
//! swarm lives in Redis, so many trackers serve the same swarms and a tracker restart loses
//! nothing.
//!
//! The store logic is one Lua script (`store.lua`, whose first lines list the keys), loaded once
//! as a Redis function library (a call then runs only its entry function), so each
//! operation is atomic on the server whichever tracker sends it, and a receive batch is one
//! pipeline of FCALL calls: one round trip per batch, where a store driving Redis command by
//! command pays one per command. Times are Redis's own clock, so trackers whose clocks differ
//! agree on who expired; whichever tracker sweeps first frees them.
//!
//! Receive threads are blocking OS threads, so the client is redis's blocking one: each batch
//! borrows a connection from a small pool (one per thread in practice). Redis down, slow or
//! holding data the script cannot read: the batch is answered 1204 UNAVAILABLE after at most the
//! timeout (nothing waits longer, nothing queues beyond the batch in hand); after a failure,
//! batches fail at once for [`RETRY_PAUSE`] instead of each waiting out the timeout again, and
//! one log line marks the outage's start, one every [`OUTAGE_LOG_EVERY`] while it lasts, one its
//! end. Connections are made again as needed, and the function is loaded again when Redis lost
//! it.

mod decode;

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use redis::{Cmd, Connection, Pipeline, Value};
use tracker_proto::{ChunkRanges, PeerKey, Transfer};

use super::{Announcer, Done, Limits, Op, Quotas, StoreError, SwarmStore, Task};

/// The store logic run inside Redis, as the body of a function library (see [`library`]).
const SCRIPT: &str = include_str!("store.lua");

/// Every key this store writes starts with it.
const KEY_PREFIX: &str = "p2pt:";

/// Expired peers freed per script call; the sweep calls again while a call frees this many, so
/// no single call holds Redis (single-threaded) for long.
const EXPIRE_PER_CALL: usize = 256;

/// Most connections open at once; a caller finding all of them busy waits at most the timeout.
const MAX_CONNECTIONS: usize = 64;

/// After a failure, how long batches are refused at once before one tries Redis again.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// While Redis stays unavailable, how often the outage is logged again.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The oldest Redis the store runs on (functions, and BITCOUNT by bit, came with 7.0).
const MIN_REDIS_MAJOR: u32 = 7;

/// How a tracker reaches its Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[USER:PASSWORD@]HOST:PORT[/DB]` (or `redis+unix:///PATH`), as the `redis` crate
    /// reads it.
    pub url: String,
    /// Longest wait for connecting, and for one batch's answers, before answering errors.
    pub timeout: Duration,
    /// The largest answer (`max_response_bytes`): listings read no more than can fit one.
    pub page_bytes: usize,
}

/// Connections not in use, how many are open, and the state of an outage.
struct Pool {
    idle: Vec<Connection>,
    open: usize,
    /// Set while Redis fails: when it started, the error, when it was last logged, and when
    /// the next attempt may be made.
    outage: Option<Outage>,
}

struct Outage {
    since: Instant,
    error: StoreError,
    logged: Instant,
    retry_at: Instant,
}

/// The Redis-backed store.
pub struct RedisStore {
    client: redis::Client,
    /// The URL without its password, for log lines and errors.
    url: String,
    /// The name the library and its function are loaded under (`p2pt_` and a hash of the
    /// script, so trackers of different versions on one Redis each call their own).
    function: String,
    /// The arguments every call starts with after the operation: prefix, TTL and caps.
    head: Vec<String>,
    timeout: Duration,
    page_bytes: usize,
    cookie_secret: [u8; 32],
    pool: Mutex<Pool>,
    returned: Condvar,
    /// When an answer of Redis that the store could not use was last logged, and how many
    /// since were not: one bad key hit by every request must not flood the log.
    bad_data: Mutex<(Option<Instant>, u64)>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// `url` as logs may show it: a password in it is replaced by `***`.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme + 3 => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split_once(':').map_or("", |(user, _)| user);
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The major version in `INFO server` text (`redis_version:7.0.15`).
fn major_version(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?
        .split('.')
        .next()?
        .trim()
        .parse()
        .ok()
}

impl RedisStore {
    /// Connects, checks the server's version, loads the function and reads (or, first on this
    /// store, makes) the cookie secret all trackers on it share.
    pub fn connect(
        config: &RedisConfig,
        ttl: Duration,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let url = redacted(&config.url);
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| unavailable(format!("bad Redis URL {url:?}: {e}")))?;
        let mut conn = open(&client, config.timeout)
            .map_err(|e| unavailable(format!("cannot connect to {url}: {e}")))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| unavailable(format!("{url} does not answer INFO: {e}")))?;
        match major_version(&info) {
            Some(major) if major >= MIN_REDIS_MAJOR => {}
            found => {
                return Err(unavailable(format!(
                    "{url} runs Redis {found:?}; this store needs {MIN_REDIS_MAJOR}.0 or later"
                )))
            }
        }
        let function = function_name();
        load_library(&mut conn, &function).map_err(|e| {
            unavailable(format!("cannot load the store's function into Redis: {e}"))
        })?;
        let secret_key = secret_key();
        let fresh = hex::encode(rand::random::<[u8; 32]>());
        let (_, secret): (Value, String) = redis::pipe()
            .cmd("SET")
            .arg(&secret_key)
            .arg(&fresh)
            .arg("NX")
            .cmd("GET")
            .arg(&secret_key)
            .query(&mut conn)
            .map_err(|e| unavailable(format!("cannot read the shared cookie secret: {e}")))?;
        let cookie_secret = hex::decode(&secret)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                unavailable(format!(
                    "{secret_key} holds something other than 64 hex digits (delete it to make \
                     a new one)"
                ))
            })?;
        let quotas = Quotas::new(&limits);
        let head = [
            KEY_PREFIX.to_string(),
            ttl.as_millis().to_string(),
            limits.max_files.to_string(),
            limits.max_peers.to_string(),
            limits.max_peers_per_file.to_string(),
            limits.max_rows.to_string(),
            limits.max_bitfield_bytes.to_string(),
            quotas.files.to_string(),
            quotas.rows.to_string(),
            quotas.ports.to_string(),
            quotas.peers_per_file.to_string(),
            quotas.bitfield_bytes.to_string(),
        ]
        .into();
        Ok(RedisStore {
            client,
            url,
            function,
            head,
            timeout: config.timeout,
            page_bytes: config.page_bytes,
            cookie_secret,
            pool: Mutex::new(Pool {
                idle: vec![conn],
                open: 1,
                outage: None,
            }),
            returned: Condvar::new(),
            bad_data: Mutex::new((None, 0)),
        })
    }

    fn call(&self, op: &str) -> Cmd {
        self.call_reporting(op, &Transfer::default())
    }

    /// A call whose request reports `transfer` (empty texts for what it leaves out).
    fn call_reporting(&self, op: &str, transfer: &Transfer) -> Cmd {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(&self.function).arg(0).arg(op).arg(&self.head);
        let text = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        cmd.arg(transfer.event.map_or("", |e| e.as_str()))
            .arg(text(transfer.up))
            .arg(text(transfer.down))
            .arg(text(transfer.left));
        cmd
    }

    fn who(cmd: &mut Cmd, who: &Announcer) {
        cmd.arg(who.addr.to_string())
            .arg(who.key.map(|k| k.to_string()).unwrap_or_default())
            .arg(who.host().ip().to_string())
            .arg(who.udp.map(|u| u.to_string()).unwrap_or_default());
    }

    fn command(&self, op: &Op<'_>) -> Cmd {
        match op {
            Op::Share {
                who,
                info,
                transfer,
            } => {
                let mut cmd = self.call_reporting("share", transfer);
                Self::who(&mut cmd, who);
                cmd.arg(info.name().as_str())
                    .arg(info.size())
                    .arg(info.chunk_size())
                    .arg(info.id().to_string())
                    .arg(info.chunks());
                cmd
            }
            Op::Report {
                who,
                file,
                chunks,
                transfer,
            } => {
                let mut cmd = self.call_reporting("report", transfer);
                Self::who(&mut cmd, who);
                cmd.arg(file.as_str())
                    .arg(ranges_arg(chunks))
                    .arg(chunks.max());
                cmd
            }
            Op::Exit {
                who,
                file,
                transfer,
            } => {
                let mut cmd = self.call_reporting("exit", transfer);
                Self::who(&mut cmd, who);
                cmd.arg(file.map_or("", |f| f.as_str()));
                cmd
            }
            Op::Heartbeat { who } => {
                let mut cmd = self.call("heartbeat");
                Self::who(&mut cmd, who);
                cmd
            }
            Op::Peers {
                file,
                offset,
                join,
                transfer,
                ..
            } => {
                let mut cmd = self.call_reporting("peers", transfer);
                cmd.arg(file.as_str()).arg(*offset).arg(self.page_bytes);
                match join {
                    Some(who) => Self::who(&mut cmd, who),
                    None => {
                        cmd.arg("");
                    }
                }
                cmd
            }
            Op::Files { offset, .. } => {
                let mut cmd = self.call("files");
                cmd.arg(*offset).arg(self.page_bytes);
                cmd
            }
            Op::Query { file } => {
                let mut cmd = self.call("query");
                cmd.arg(file.as_str());
                cmd
            }
            Op::PunchTarget { file, target } => {
                let mut cmd = self.call("punch");
                cmd.arg(file.as_str()).arg(target.to_string());
                cmd
            }
        }
    }

    fn touch(&self, key: &PeerKey) -> Cmd {
        let mut cmd = self.call("touch");
        cmd.arg(key.to_string());
        cmd
    }

    /// A connection to use now: an idle one, or a new one while fewer than MAX_CONNECTIONS are
    /// open (else waits, at most the timeout, for one to come back). Refuses at once while an
    /// outage's retry pause runs.
    fn checkout(&self) -> Result<Connection, StoreError> {
        let deadline = Instant::now() + self.timeout;
        let mut pool = self.pool.lock();
        loop {
            if let Some(outage) = &pool.outage {
                if Instant::now() < outage.retry_at {
                    return Err(outage.error.clone());
                }
            }
            if let Some(conn) = pool.idle.pop() {
                return Ok(conn);
            }
            if pool.open < MAX_CONNECTIONS {
                pool.open += 1;
                drop(pool);
                return open(&self.client, self.timeout).map_err(|e| {
                    let e = unavailable(format!("cannot connect to {}: {e}", self.url));
                    let mut pool = self.pool.lock();
                    pool.open -= 1;
                    self.note(&mut pool, Err(&e));
                    e
                });
            }
            if self.returned.wait_until(&mut pool, deadline).timed_out() {
                return Err(unavailable(format!(
                    "all {MAX_CONNECTIONS} connections to {} stayed busy for {:?}",
                    self.url, self.timeout
                )));
            }
        }
    }

    /// Keeps the outage bookkeeping and its log lines: the start, a reminder now and then, the
    /// end.
    fn note(&self, pool: &mut Pool, result: Result<(), &StoreError>) {
        let now = Instant::now();
        match (result, &mut pool.outage) {
            (Ok(()), outage) => {
                if let Some(o) = outage.take() {
                    log::info!(
                        "Redis at {} answers again after {:.1} s of errors",
                        self.url,
                        now.duration_since(o.since).as_secs_f64()
                    );
                }
            }
            (Err(e), None) => {
                log::error!("{e}; answering 1204 UNAVAILABLE until Redis is back");
                pool.outage = Some(Outage {
                    since: now,
                    error: e.clone(),
                    logged: now,
                    retry_at: now + RETRY_PAUSE,
                });
            }
            (Err(e), Some(o)) => {
                if now.duration_since(o.logged) >= OUTAGE_LOG_EVERY {
                    log::error!(
                        "still unavailable after {:.0} s: {e}",
                        now.duration_since(o.since).as_secs_f64()
                    );
                    o.logged = now;
                }
                o.error = e.clone();
                o.retry_at = now + RETRY_PAUSE;
            }
        }
    }

    /// Sends `pipe` and returns every answer, waiting at most the timeout. A connection that
    /// failed is dropped (it may hold half an answer); one that worked goes back to the pool.
    /// An idle connection Redis closed meanwhile (a Redis restart) is replaced once at once, so
    /// the first batch after a restart is answered, not failed.
    fn execute(&self, pipe: &Pipeline) -> Result<Vec<Value>, StoreError> {
        let mut conn = self.checkout()?;
        let mut result = self.query_reloading(&mut conn, pipe);
        if matches!(&result, Err(e) if e.is_connection_dropped() && !e.is_timeout()) {
            match open(&self.client, self.timeout) {
                Ok(fresh) => {
                    conn = fresh;
                    result = self.query_reloading(&mut conn, pipe);
                }
                Err(e) => result = Err(e),
            }
        }
        let result = result.map_err(|e| self.io_error(e));
        let mut pool = self.pool.lock();
        match &result {
            Ok(_) => pool.idle.push(conn),
            Err(_) => pool.open -= 1,
        }
        self.returned.notify_one();
        self.note(&mut pool, result.as_ref().map(|_| ()));
        result
    }

    fn query_reloading(
        &self,
        conn: &mut Connection,
        pipe: &Pipeline,
    ) -> redis::RedisResult<Vec<Value>> {
        let replies: Vec<Value> = pipe.query(conn)?;
        let lost_function = replies.iter().any(|v| {
            matches!(v, Value::ServerError(e)
                if e.details().is_some_and(|d| d.contains("Function not found")))
        });
        if !lost_function {
            return Ok(replies);
        }
        log::warn!(
            "Redis at {} lost the store's function (restarted without persistence, or flushed): \
             loading it again",
            self.url
        );
        load_library(conn, &self.function)?;
        // A Redis that lost the function may have lost the cookie secret too: ours goes back,
        // unless another tracker put one there first (then cookies one of us issued fail at
        // the other until it restarts: a client only pays one more round trip).
        let (_, secret): (Value, String) = redis::pipe()
            .cmd("SET")
            .arg(secret_key())
            .arg(hex::encode(self.cookie_secret))
            .arg("NX")
            .cmd("GET")
            .arg(secret_key())
            .query(conn)?;
        if secret != hex::encode(self.cookie_secret) {
            log::warn!(
                "another tracker set a new cookie secret in Redis; restart this one to share it"
            );
        }
        pipe.query(conn)
    }

    /// One more catalogue call, from index `from` with `factor` times a page's budget (a page
    /// a front end's filter thinned out).
    fn catalogue_from(&self, from: u32, factor: usize) -> Result<Value, StoreError> {
        let mut cmd = self.call("files");
        cmd.arg(from).arg(self.page_bytes.saturating_mul(factor));
        let mut pipe = redis::pipe();
        pipe.ignore_errors().add_command(cmd);
        self.execute(&pipe)?
            .pop()
            .ok_or_else(|| unavailable("Redis gave no answer to a catalogue call"))
    }

    /// Logs an answer the store could not use, at most once per [`OUTAGE_LOG_EVERY`].
    fn log_bad_data(&self, why: &str) {
        let mut last = self.bad_data.lock();
        let now = Instant::now();
        match last.0 {
            Some(at) if now.duration_since(at) < OUTAGE_LOG_EVERY => last.1 += 1,
            _ => {
                let more = std::mem::take(&mut last.1);
                let since = if more > 0 {
                    format!(" ({more} more such answers since the last line)")
                } else {
                    String::new()
                };
                log::error!("{why}{since}");
                last.0 = Some(now);
            }
        }
    }

    fn io_error(&self, e: redis::RedisError) -> StoreError {
        if e.is_timeout() {
            unavailable(format!(
                "Redis at {} did not answer in {:?}",
                self.url, self.timeout
            ))
        } else {
            unavailable(format!("Redis at {}: {e}", self.url))
        }
    }
}

/// Where the cookie secret shared by every tracker on the store is kept.
fn secret_key() -> String {
    format!("{KEY_PREFIX}cookie-secret")
}

/// A connection whose connect, reads and writes each give up after `timeout`.
fn open(client: &redis::Client, timeout: Duration) -> redis::RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// `p2pt_` and the first 16 hex digits of the script's SHA-256.
fn function_name() -> String {
    use sha2::{Digest, Sha256};
    format!("p2pt_{}", &hex::encode(Sha256::digest(SCRIPT))[..16])
}

/// The function library FUNCTION LOAD takes: the script between the name line and the
/// registration of its entry point. Loaded once, a call then runs only the entry function, where
/// EVAL would run the whole script (defining every helper) on each call.
fn library(function: &str) -> String {
    format!("#!lua name={function}\n{SCRIPT}\nredis.register_function('{function}', entry)\n")
}

/// Loads (or replaces with the same) the store's function library.
fn load_library(conn: &mut Connection, function: &str) -> redis::RedisResult<()> {
    redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(library(function))
        .query::<String>(conn)
        .map(drop)
}

/// What an operation was about, for a log line an operator can act on (which keys to look at).
fn describe(op: &Op<'_>) -> String {
    match op {
        Op::Share { info, .. } => format!("a share of {}", info.name()),
        Op::Report { file, .. } => format!("a chunk report for {file}"),
        Op::Exit { who, .. } => format!("an exit of {}", who.addr),
        Op::Heartbeat { who } => format!("a heartbeat of {}", who.addr),
        Op::Peers { file, .. } => format!("a peer list of {file}"),
        Op::Files { .. } => "a catalogue page".to_string(),
        Op::Query { file } => format!("a query for {file}"),
        Op::PunchTarget { file, .. } => format!("a punch in {file}"),
    }
}

/// A range list as the script reads it: `s-e,s-e`.
fn ranges_arg(chunks: &ChunkRanges) -> String {
    chunks
        .ranges()
        .iter()
        .map(|(s, e)| format!("{s}-{e}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl SwarmStore for RedisStore {
    fn run(&self, tasks: &mut [Task<'_>], _now: Instant) -> Vec<Result<Done, StoreError>> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut slots = Vec::with_capacity(tasks.len());
        let mut commands = 0;
        for task in tasks.iter() {
            if let Some(key) = &task.touch {
                pipe.add_command(self.touch(key));
                commands += 1;
            }
            pipe.add_command(self.command(&task.op));
            slots.push(commands);
            commands += 1;
        }
        let replies = match self.execute(&pipe) {
            Ok(replies) if replies.len() == commands => replies,
            Ok(replies) => {
                let e = unavailable(format!(
                    "Redis answered {} of {commands} commands",
                    replies.len()
                ));
                return tasks.iter().map(|_| Err(e.clone())).collect();
            }
            Err(e) => return tasks.iter().map(|_| Err(e.clone())).collect(),
        };
        tasks
            .iter_mut()
            .zip(slots)
            .map(|(task, slot)| {
                let done = decode::done(&mut task.op, &replies[slot], &mut |from, factor| {
                    self.catalogue_from(from, factor)
                });
                if let Err(StoreError::Unavailable(why)) = &done {
                    self.log_bad_data(&format!(
                        "answering 1204 UNAVAILABLE to {}: {why}",
                        describe(&task.op)
                    ));
                }
                done
            })
            .collect()
    }

    fn expire(&self, _now: Instant) {
        loop {
            let mut pipe = redis::pipe();
            let mut cmd = self.call("expire");
            cmd.arg(EXPIRE_PER_CALL);
            pipe.add_command(cmd);
            pipe.ignore_errors();
            let freed = match self.execute(&pipe) {
                Ok(replies) => match replies.first() {
                    Some(reply) => decode::expired(reply),
                    None => Err(unavailable("Redis gave no answer to the expiry call")),
                },
                // Logged by the outage bookkeeping.
                Err(_) => return,
            };
            match freed {
                Ok(n) if n >= EXPIRE_PER_CALL => continue,
                Ok(_) => return,
                Err(e) => {
                    self.log_bad_data(&format!("expiry in Redis failed: {e}"));
                    return;
                }
            }
        }
    }

    fn cookie_secret(&self) -> Option<[u8; 32]> {
        Some(self.cookie_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redacted("redis://app:s3cret@db.example:6379/2"),
            "redis://app:***@db.example:6379/2"
        );
        assert_eq!(redacted("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn versions_are_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(major_version(info), Some(7));
        assert_eq!(major_version("redis_version:6.2.1"), Some(6));
        assert_eq!(major_version("nothing here"), None);
        assert_eq!(major_version("redis_version:x"), None);
    }

    #[test]
    fn ranges_go_to_the_script_as_pairs() {
        let r: ChunkRanges = "0-9,12,20-21".parse().unwrap();
        assert_eq!(ranges_arg(&r), "0-9,12-12,20-21");
    }
}
