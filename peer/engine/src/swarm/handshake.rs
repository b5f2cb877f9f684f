//! The opening of a connection (protocol.txt §2.4): the initiator names the file, the acceptor
//! answers with its own HANDSHAKE and BITFIELD, the initiator sends its BITFIELD; from then on
//! both sides are alike.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::connection::Connection;
use crate::manifest::FileId;
use crate::name::ShareName;
use crate::wire::{ErrorCode, Frame, PeerId, VERSION};

use super::peer::PeerError;

/// Our side of a HANDSHAKE.
#[derive(Debug, Clone)]
pub struct Hello {
    pub peer_id: PeerId,
    pub name: ShareName,
    pub id: FileId,
    /// The address we announce, if we serve anywhere.
    pub listen: Option<SocketAddr>,
}

impl Hello {
    pub fn frame(&self) -> Frame {
        Frame::Handshake {
            version: VERSION,
            peer_id: self.peer_id,
            file_id: self.id,
            name: self.name.file_name().clone(),
            listen: self.listen,
        }
    }
}

/// What the other side said of itself in its HANDSHAKE (and, for the acceptor, its BITFIELD).
#[derive(Debug, Clone)]
pub struct Remote {
    pub peer_id: PeerId,
    pub listen: Option<SocketAddr>,
    /// The acceptor's BITFIELD, as sent (its length is checked against the file by the swarm);
    /// `None` for a connection we accepted, whose initiator sends its BITFIELD next.
    pub bitfield: Option<Bytes>,
}

/// Opens a connection as initiator: sends our HANDSHAKE, checks the acceptor's (same file, same
/// id, our version) and takes its BITFIELD. Our BITFIELD is sent by the connection's task.
pub async fn initiate(
    mut conn: Connection,
    hello: &Hello,
    limit: Duration,
) -> Result<(Connection, Remote), PeerError> {
    conn.queue(&hello.frame());
    conn.flush().await?;
    let (peer_id, listen) = match conn
        .read_opening_within(limit)
        .await
        .map_err(PeerError::hostile_if_garbage)?
    {
        Frame::Handshake {
            version,
            peer_id,
            file_id,
            name,
            listen,
        } => {
            if version != VERSION {
                return Err(PeerError::Remote(
                    ErrorCode::UnsupportedVersion,
                    format!("it speaks version {version}, we speak {VERSION}"),
                ));
            }
            if file_id != hello.id || name != *hello.name.file_name() {
                return Err(PeerError::Hostile(format!(
                    "handshake for {name} {file_id}, asked for {} {}",
                    hello.name, hello.id
                )));
            }
            (peer_id, listen)
        }
        Frame::Error { code, message } => return Err(PeerError::Remote(code, message)),
        _ => return Err(PeerError::Hostile("expected HANDSHAKE".into())),
    };
    match conn
        .read_frame_within(limit)
        .await
        .map_err(PeerError::hostile_if_garbage)?
    {
        Frame::Bitfield(bits) => Ok((
            conn,
            Remote {
                peer_id,
                listen,
                bitfield: Some(bits),
            },
        )),
        Frame::Error { code, message } => Err(PeerError::Remote(code, message)),
        other => Err(PeerError::Hostile(format!(
            "expected BITFIELD, got {}",
            other.name()
        ))),
    }
}
