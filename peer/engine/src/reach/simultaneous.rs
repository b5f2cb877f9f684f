//! TCP simultaneous open from the serving port: what both the requester and the target of a
//! punch do (protocol.txt §4.3 step 3, §4.4 step 2).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::debug;
use stun::reusable_tcp_socket;
use tokio::net::TcpStream;

/// Timing of connection attempts. Every wait is bounded, so a NAT that drops everything costs
/// at most `direct_timeout + attempts * (attempt_timeout + retry_delay)`.
#[derive(Debug, Clone)]
pub struct PunchConfig {
    /// How long the first, plain connect may take before hole punching starts.
    pub direct_timeout: Duration,
    /// Simultaneous-open attempts per punch.
    pub attempts: u32,
    /// How long one attempt may wait. The kernel resends an unanswered SYN after 1 s and 3 s, so
    /// one attempt of 3.5 s lets the first SYN that the other router dropped be followed by
    /// retransmissions that arrive after the other side's SYN has opened that router.
    pub attempt_timeout: Duration,
    /// Pause between two attempts of one punch.
    pub retry_delay: Duration,
    /// Punch notices answered at once; more are dropped. A notice makes us send SYNs to an
    /// address a stranger chose, so this bounds what a flood of notices can make us do.
    pub max_concurrent_answers: usize,
}

impl Default for PunchConfig {
    fn default() -> Self {
        Self {
            direct_timeout: Duration::from_secs(3),
            attempts: 3,
            attempt_timeout: Duration::from_millis(3500),
            retry_delay: Duration::from_millis(300),
            max_concurrent_answers: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PunchError {
    #[error(
        "cannot bind local {local} for hole punching: {source} (the serving socket must be opened \
         with SO_REUSEPORT)"
    )]
    Bind {
        local: SocketAddr,
        source: io::Error,
    },
    #[error(
        "no TCP connection to {remote}: {attempts} simultaneous-open attempts from {local} failed \
         (last: {last})"
    )]
    Exhausted {
        local: SocketAddr,
        remote: SocketAddr,
        attempts: u32,
        last: String,
    },
}

/// One connect from `local` to `remote`, bounded by `limit`.
async fn connect_from(
    local: SocketAddr,
    remote: SocketAddr,
    limit: Duration,
) -> Result<TcpStream, AttemptError> {
    let socket = reusable_tcp_socket(local).map_err(AttemptError::Bind)?;
    match tokio::time::timeout(limit, socket.connect(remote)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(AttemptError::Connect(e.to_string())),
        Err(_) => Err(AttemptError::Connect(format!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

enum AttemptError {
    Bind(io::Error),
    Connect(String),
}

/// Connects from `local` (the serving address) to `remote` while `remote` does the same towards
/// us: a few bounded attempts, the first as soon as possible. Either side's SYN may be the one
/// that gets through; the kernel merges crossing SYNs into one connection.
pub async fn simultaneous_open(
    local: SocketAddr,
    remote: SocketAddr,
    config: &PunchConfig,
) -> Result<TcpStream, PunchError> {
    let mut last = String::from("no attempt made");
    for attempt in 1..=config.attempts.max(1) {
        match connect_from(local, remote, config.attempt_timeout).await {
            Ok(stream) => {
                debug!("punch: connected {local} -> {remote} on attempt {attempt}");
                return Ok(stream);
            }
            Err(AttemptError::Bind(source)) => return Err(PunchError::Bind { local, source }),
            Err(AttemptError::Connect(e)) => {
                debug!("punch: attempt {attempt} {local} -> {remote}: {e}");
                last = e;
            }
        }
        if attempt < config.attempts {
            tokio::time::sleep(config.retry_delay).await;
        }
    }
    Err(PunchError::Exhausted {
        local,
        remote,
        attempts: config.attempts.max(1),
        last,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{free_addr, quick};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    // Crossing SYNs cannot be staged on loopback (a SYN to a port nobody holds is refused at
    // once, never dropped); the NAT lab (scripts/nat-lab.sh) proves simultaneous open through
    // real NAT routers. Here: the retry loop and the port sharing it relies on.

    #[tokio::test]
    async fn attempts_continue_until_the_other_side_shows_up() {
        let (local, remote) = (free_addr(), free_addr());
        let mut cfg = quick();
        cfg.attempts = 40;
        cfg.retry_delay = Duration::from_millis(100);
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let listener = TcpListener::bind(remote).await.unwrap();
            let (mut conn, from) = listener.accept().await.unwrap();
            conn.write_all(b"late").await.unwrap();
            from
        });
        let mut stream = simultaneous_open(local, remote, &cfg)
            .await
            .expect("connects once the target listens");
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
        assert_eq!(
            late.await.unwrap(),
            local,
            "the connection comes from the fixed local port"
        );
    }

    #[tokio::test]
    async fn outgoing_socket_shares_the_port_of_a_live_listener() {
        let serving = reusable_tcp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let local = serving.local_addr().unwrap();
        let _listener: TcpListener = serving.listen(16).unwrap();
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let cfg = quick();
        let (out, accepted) =
            tokio::join!(simultaneous_open(local, target_addr, &cfg), target.accept());
        assert_eq!(
            out.expect("connect from serving port")
                .local_addr()
                .unwrap(),
            local
        );
        assert_eq!(
            accepted.unwrap().1,
            local,
            "the target sees the serving port as source"
        );
    }

    #[tokio::test]
    async fn unreachable_target_fails_after_the_configured_attempts() {
        // A bound but not listening socket refuses connections at once: every attempt fails.
        let closed = free_addr();
        let err = simultaneous_open(free_addr(), closed, &quick())
            .await
            .expect_err("nobody listens");
        let text = err.to_string();
        assert!(
            matches!(err, PunchError::Exhausted { attempts: 3, .. }),
            "{text}"
        );
        assert!(text.contains(&closed.to_string()), "{text}");
    }
}
