//! Buffered frame I/O over one TCP stream: the only place that turns bytes from a socket into
//! [`Frame`]s and back.
//!
//! Reads go into one growing buffer and frames are cut out of it without copying chunk data;
//! writes gather small frames encoded here and runs of CHUNK frames read straight from the file
//! into one vectored write, because 2048-byte chunks sent one `write` each waste most of
//! loopback's bandwidth.
//!
//! [`Connection`] reads and writes in turn (the handshake, a manifest fetch). A swarm connection
//! does both at once: [`Connection::into_split`] gives a [`FrameReader`] and a [`FrameWriter`]
//! whose `fill` and `write_some` are cancel-safe, so one task can wait on both in a `select!`.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::wire::{ErrorCode, Frame, WireError};

/// How many bytes to ask the kernel for per read.
const READ_CHUNK: usize = 256 * 1024;

/// Receive buffers a connection keeps for reuse. Chunks cut out of a buffer keep it alive
/// until they are verified and written, so a downloading connection moves on to another
/// buffer every read; reusing the few it cycles through spares a fresh allocation per read,
/// whose pages the kernel had to fault in and clear (7-8 % of a leecher's CPU). Four cover
/// what a connection holds unverified; they stay with it (1 MiB) until it closes.
const SPARE_BUFFERS: usize = 4;

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
    #[error("peer took none of our bytes for {0:?}")]
    WriteStalled(Duration),
}

/// One peer connection with its read and write buffers, used one direction at a time.
#[derive(Debug)]
pub struct Connection {
    reader: FrameReader,
    writer: FrameWriter,
}

impl Connection {
    pub fn new(stream: TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        Connection {
            reader: FrameReader {
                half: read,
                buf: BytesMut::with_capacity(READ_CHUNK),
                spares: Vec::new(),
            },
            writer: FrameWriter::new(write),
        }
    }

    /// The two halves, for a task that reads and writes at once.
    pub fn into_split(self) -> (FrameReader, FrameWriter) {
        (self.reader, self.writer)
    }

    /// A frame already in the read buffer, without touching the socket.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        self.reader.next_frame()
    }

    /// The next frame, reading from the socket as needed; `Closed` on end of stream.
    pub async fn read_frame(&mut self) -> Result<Frame, ConnError> {
        loop {
            if let Some(f) = self.reader.next_frame()? {
                return Ok(f);
            }
            self.reader.fill().await?;
        }
    }

    /// Like [`Connection::read_frame`] but gives up after `limit` without a whole frame.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Frame, ConnError> {
        tokio::time::timeout(limit, self.read_frame())
            .await
            .map_err(|_| ConnError::Timeout(limit))?
    }

    /// The first frame of a connection, which must be a HANDSHAKE (or an ERROR), within
    /// `limit`: nothing larger than a HANDSHAKE is buffered before it.
    pub async fn read_opening_within(&mut self, limit: Duration) -> Result<Frame, ConnError> {
        let opening = async {
            loop {
                if let Some(n) = Frame::check_opening(&self.reader.buf)? {
                    return Ok(Frame::parse(self.reader.buf.split_to(n).freeze())?);
                }
                self.reader.fill().await?;
            }
        };
        tokio::time::timeout(limit, opening)
            .await
            .map_err(|_| ConnError::Timeout(limit))?
    }

    /// Encodes a frame into the output buffer; nothing is sent until [`Connection::flush`].
    pub fn queue(&mut self, frame: &Frame) {
        self.writer.queue(frame);
    }

    /// Queues bytes already encoded as frames, without copying them.
    pub fn queue_encoded(&mut self, frames: Bytes) {
        self.writer.queue_encoded(frames);
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        self.writer.flush().await
    }

    /// Queues a fatal ERROR and sends it, ignoring failures: the connection is ending anyway.
    pub async fn send_error(&mut self, code: ErrorCode, message: &str) {
        self.writer.send_error(code, message).await;
    }
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct FrameReader {
    half: OwnedReadHalf,
    buf: BytesMut,
    /// Buffers left behind, emptied, while frames cut from them were still alive: reused once
    /// those are gone.
    spares: Vec<BytesMut>,
}

impl FrameReader {
    /// Reads whatever the socket has (at least one byte); `Closed` at end of stream. Cancel-safe:
    /// bytes are only ever appended to the buffer by a completed read.
    pub async fn fill(&mut self) -> Result<usize, ConnError> {
        self.make_room();
        match self.half.read_buf(&mut self.buf).await? {
            0 => Err(ConnError::Closed),
            n => Ok(n),
        }
    }

    /// Leaves room for [`READ_CHUNK`] more bytes after those buffered: in the buffer itself if
    /// nothing cut from it is alive any more, else in a spare whose frames are all gone (the
    /// unparsed bytes move there), else in a new buffer.
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() >= READ_CHUNK || self.buf.try_reclaim(READ_CHUNK) {
            return;
        }
        let need = self.buf.len() + READ_CHUNK;
        let mut next = match self.spares.iter_mut().position(|s| s.try_reclaim(need)) {
            Some(i) => self.spares.swap_remove(i),
            None => BytesMut::with_capacity(need),
        };
        next.extend_from_slice(&self.buf);
        let mut old = std::mem::replace(&mut self.buf, next);
        old.clear();
        if self.spares.len() < SPARE_BUFFERS {
            self.spares.push(old);
        }
    }

    /// Whether bytes read from the socket wait in the buffer, not yet taken as frames.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole frame in the buffer, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ConnError> {
        match Frame::check(&self.buf)? {
            Some(n) => Ok(Some(Frame::parse(self.buf.split_to(n).freeze())?)),
            None => Ok(None),
        }
    }
}

/// The sending half of a connection: small frames are encoded into a buffer, frames encoded
/// elsewhere (a run of CHUNK frames read from the file on the blocking pool) join the queue as
/// they are, and one vectored write sends many of both.
#[derive(Debug)]
pub struct FrameWriter {
    half: OwnedWriteHalf,
    /// Encoded frames waiting, in order, before `buf`.
    queued: VecDeque<Bytes>,
    queued_bytes: usize,
    buf: BytesMut,
}

/// Most buffers handed to one vectored write.
const MAX_WRITE_SLICES: usize = 64;

impl FrameWriter {
    fn new(half: OwnedWriteHalf) -> FrameWriter {
        FrameWriter {
            half,
            queued: VecDeque::new(),
            queued_bytes: 0,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Encodes a frame into the output buffer.
    pub fn queue(&mut self, frame: &Frame) {
        frame.encode(&mut self.buf);
    }

    /// Queues frames already encoded (whole frames only), without copying them.
    pub fn queue_encoded(&mut self, frames: Bytes) {
        if frames.is_empty() {
            return;
        }
        if !self.buf.is_empty() {
            let small = self.buf.split().freeze();
            self.queued_bytes += small.len();
            self.queued.push_back(small);
        }
        self.queued_bytes += frames.len();
        self.queued.push_back(frames);
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.queued_bytes + self.buf.len()
    }

    /// Sends some of the buffered bytes with one vectored write. Cancel-safe: a write that
    /// does not complete sends nothing, and what a completed one sent leaves the queue.
    pub async fn write_some(&mut self) -> Result<(), ConnError> {
        let mut slices: Vec<IoSlice<'_>> = self
            .queued
            .iter()
            .take(MAX_WRITE_SLICES)
            .map(|b| IoSlice::new(b))
            .collect();
        if slices.len() < MAX_WRITE_SLICES && !self.buf.is_empty() {
            slices.push(IoSlice::new(&self.buf));
        }
        let sent = self.half.write_vectored(&slices).await?;
        if sent == 0 && !slices.is_empty() {
            return Err(ConnError::Io(io::ErrorKind::WriteZero.into()));
        }
        self.consume(sent);
        Ok(())
    }

    /// Drops the first `sent` bytes of the output, which the socket took.
    fn consume(&mut self, mut sent: usize) {
        while sent > 0 {
            let Some(front) = self.queued.front_mut() else {
                self.buf.advance(sent);
                return;
            };
            let n = sent.min(front.len());
            front.advance(n);
            self.queued_bytes -= n;
            sent -= n;
            if front.is_empty() {
                self.queued.pop_front();
            }
        }
    }

    /// Sends everything buffered.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        while self.pending() > 0 {
            self.write_some().await?;
        }
        Ok(())
    }

    /// Queues a fatal ERROR and sends it with what is buffered, ignoring failures and giving
    /// up after 2 s: the connection is ending anyway.
    pub async fn send_error(&mut self, code: ErrorCode, message: &str) {
        self.queue(&Frame::Error {
            code,
            message: message.to_owned(),
        });
        let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::net::TcpListener;

    use super::*;
    use crate::wire::encode_chunk;

    fn pattern(index: u32) -> Vec<u8> {
        (0..2048u32).map(|i| (index * 7 + i) as u8).collect()
    }

    /// Chunks held across many reads (as deliveries waiting to be stored are) stay intact while
    /// the reader moves between receive buffers and reuses those whose chunks are gone, and
    /// frames cut across two reads arrive whole.
    #[tokio::test]
    async fn chunks_survive_the_reuse_of_receive_buffers() {
        const FRAMES: u32 = 3000;
        const HELD: usize = 300;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut frames = BytesMut::new();
            for index in 0..FRAMES {
                encode_chunk(&mut frames, index, &pattern(index));
            }
            // Odd-sized writes, so frames straddle the reader's reads.
            for piece in frames.chunks(100_003) {
                socket.write_all(piece).await.unwrap();
            }
        });
        let (mut reader, _writer) =
            Connection::new(TcpStream::connect(addr).await.unwrap()).into_split();
        let mut held: VecDeque<(u32, Bytes)> = VecDeque::new();
        let mut next = 0;
        while next < FRAMES {
            while let Some(frame) = reader.next_frame().unwrap() {
                let Frame::Chunk { index, data } = frame else {
                    panic!("not a CHUNK: {}", frame.name());
                };
                assert_eq!(index, next);
                held.push_back((index, data));
                next += 1;
                if held.len() > HELD {
                    let (index, data) = held.pop_front().unwrap();
                    assert_eq!(data, pattern(index), "chunk {index} changed while held");
                }
            }
            if next < FRAMES {
                reader.fill().await.unwrap();
            }
        }
        for (index, data) in held {
            assert_eq!(data, pattern(index), "chunk {index} changed while held");
        }
        assert!(!reader.spares.is_empty() && reader.spares.len() <= SPARE_BUFFERS);
        sender.await.unwrap();
    }
}
