//! A minimal STUN Binding responder, embedded in the tracker (`tracker --stun`).

use std::net::SocketAddr;

/// STUN magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Whether a datagram looks like a STUN message: the first two bits are zero and bytes 4..8 hold
/// the magic cookie. Text-protocol datagrams start with ASCII letters, so they never match.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] & 0xC0 == 0 && datagram[4..8] == MAGIC_COOKIE
}

/// The Binding success response to `request` received from `source`, or `None` when `request`
/// is not a well-formed Binding request (such input is never answered).
pub fn answer_binding(request: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    let _ = (request, source);
    None
}

/// Serves STUN Binding over TCP (RFC 5389 §7.2.2 framing) on `listener` until the task is dropped.
pub async fn serve_tcp(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        drop(stream);
    }
}
