//! Buffered frame I/O over one TCP stream: the only place that turns bytes from a socket into
//! [`Frame`]s and back.
//!
//! Reads go into one growing buffer and frames are cut out of it without copying chunk data;
//! writes are encoded into an output buffer and sent with one syscall for many frames, because
//! 2048-byte chunks sent one `write` each waste most of loopback's bandwidth.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::{Frame, WireError};

/// How many bytes to ask the kernel for per read.
const READ_CHUNK: usize = 256 * 1024;

/// Output beyond this many buffered bytes is written before more is encoded.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

/// Why a connection ended or must end.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("peer sent a bad frame: {0}")]
    Wire(#[from] WireError),
    #[error("peer closed the connection")]
    Closed,
    #[error("peer sent nothing for {0:?}")]
    Timeout(Duration),
}

/// One peer connection with its read and write buffers.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(FLUSH_THRESHOLD + 64 * 1024),
        }
    }

    /// A frame already in the read buffer, without touching the socket.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        match Frame::check(&self.rbuf)? {
            Some(n) => Ok(Some(Frame::parse(self.rbuf.split_to(n).freeze())?)),
            None => Ok(None),
        }
    }

    /// The next frame, reading from the socket as needed; `Closed` on end of stream.
    pub async fn read_frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            if let Some(f) = self.buffered_frame()? {
                return Ok(f);
            }
            self.rbuf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// Like [`Connection::read_frame`] but gives up after `limit` without a whole frame.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Frame, ConnError> {
        tokio::time::timeout(limit, self.read_frame())
            .await
            .map_err(|_| ConnError::Timeout(limit))?
    }

    /// Encodes a frame into the output buffer; nothing is sent until [`Connection::flush`].
    pub fn queue(&mut self, frame: &Frame) {
        frame.encode(&mut self.wbuf);
    }

    /// The output buffer, for encoders that write straight into it (chunks).
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.wbuf
    }

    /// Bytes waiting in the output buffer.
    pub fn pending_out(&self) -> usize {
        self.wbuf.len()
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Queues a fatal ERROR and sends it, ignoring failures: the connection is ending anyway.
    pub async fn send_error(&mut self, code: crate::wire::ErrorCode, message: &str) {
        self.queue(&Frame::Error {
            code,
            message: message.to_owned(),
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
    }
}
