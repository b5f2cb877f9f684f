//! The requests of [`TrackerClient`] that report what a peer did (protocol.txt §1.2): the
//! announce events and byte counters of one file, and the connection figures of a heartbeat.
//! Built on the client's one request path, which drops the report for a tracker older than it.

use std::net::SocketAddr;

use crate::client::{unexpected, ClientError, Swarm, TrackerClient};
use crate::transfer::{AnnounceEvent, ConnStats, Transfer};
use crate::{FileInfo, FileName, RequestKind, ResponseKind};

impl TrackerClient {
    /// Flag 1 or 2 (`refresh`) with an address and what this peer did with `file` since it
    /// started: `event=started` when a download joins, its byte counters on each refresh.
    pub async fn join_reporting(
        &self,
        file: &FileName,
        announce: SocketAddr,
        refresh: bool,
        transfer: Transfer,
    ) -> Result<Swarm, ClientError> {
        self.swarm(file, refresh, Some(announce), transfer).await
    }

    /// Flag 4 with what this peer did with the file: `event=started` when a seeder begins,
    /// `event=completed` with its counters when a download just finished.
    pub async fn share_reporting(
        &self,
        info: &FileInfo,
        announce: SocketAddr,
        transfer: Transfer,
    ) -> Result<(), ClientError> {
        let kind = RequestKind::Share {
            info: info.clone(),
            announce,
        };
        match self
            .request_reporting(kind, transfer, ConnStats::default())
            .await?
        {
            ResponseKind::Ok(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Flag 5 (one file, or every swarm for `None`) with `event=stopped` and, for one file,
    /// the byte counters of `transfer`.
    pub async fn leave_reporting(
        &self,
        file: Option<&FileName>,
        announce: SocketAddr,
        transfer: Transfer,
    ) -> Result<(), ClientError> {
        let kind = RequestKind::Exit {
            file: file.cloned(),
            announce,
        };
        let transfer = Transfer {
            event: Some(AnnounceEvent::Stopped),
            ..transfer
        };
        match self
            .request_reporting(kind, transfer, ConnStats::default())
            .await?
        {
            ResponseKind::Ok(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Flag 9 with this peer's connection figures (seed 003's stats).
    pub async fn heartbeat_reporting(
        &self,
        announce: SocketAddr,
        stats: ConnStats,
    ) -> Result<u32, ClientError> {
        let kind = RequestKind::Heartbeat { announce };
        match self
            .request_reporting(kind, Transfer::default(), stats)
            .await?
        {
            ResponseKind::Alive { files } => Ok(files),
            other => Err(unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod old_tracker {
    use super::*;
    use std::sync::atomic::Ordering;
    use tokio::net::UdpSocket;

    use crate::ClientConfig;

    /// A tracker from before the events: any `event=`, `up=`... is an unknown field.
    async fn old_tracker(socket: UdpSocket) {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let tid = text
                .split(' ')
                .find_map(|t| t.strip_prefix("tid="))
                .unwrap_or("0");
            let answer = if text.contains(" event=") || text.contains(" conns=") {
                format!("ERROR 1103 EXTRA_FIELD unknown field tid={tid}")
            } else if text.starts_with("REQUEST 9 ") {
                format!("RESPONSE 9 OK files=1 tid={tid}")
            } else {
                format!("RESPONSE 5 OK tid={tid}")
            };
            let _ = socket.send_to(answer.as_bytes(), from).await;
        }
    }

    #[test]
    fn a_tracker_without_events_gets_the_requests_without_them() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(talk_to_an_old_tracker());
    }

    async fn talk_to_an_old_tracker() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let at = socket.local_addr().unwrap();
        tokio::spawn(old_tracker(socket));
        let client = TrackerClient::bind(at, ClientConfig::default())
            .await
            .unwrap();
        let me: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        client
            .leave_reporting(None, me, Transfer::default())
            .await
            .expect("flag 5 goes through without event=stopped");
        assert!(client.shared.plain_only.load(Ordering::Relaxed));
        let stats = ConnStats {
            conns: Some(1),
            failed: Some(0),
        };
        assert_eq!(client.heartbeat_reporting(me, stats).await.unwrap(), 1);
    }
}
