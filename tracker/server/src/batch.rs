//! Batched UDP I/O (Linux `recvmmsg`/`sendmmsg`) for the tracker's receive threads and its
//! load benchmark: when a socket is busy, one system call moves up to [`BATCH`] datagrams
//! instead of one, which is where most of a small request's cost goes on loopback. Datagrams
//! longer than the largest request are cut (and then refused as TOO_LONG by the tracker).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use tracker_proto::MAX_REQUEST_BYTES;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// One byte more than the largest request, so an oversized one is seen as such.
const BUF: usize = MAX_REQUEST_BYTES + 1;

/// Receive buffers and headers for one thread, reused across calls.
pub struct RecvBatch {
    bufs: Box<[[u8; BUF]; BATCH]>,
    addrs: Box<[libc::sockaddr_storage; BATCH]>,
    lens: [usize; BATCH],
    count: usize,
}

impl RecvBatch {
    pub fn new() -> Self {
        RecvBatch {
            bufs: Box::new([[0; BUF]; BATCH]),
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
            addrs: Box::new(unsafe { zeroed() }),
            lens: [0; BATCH],
            count: 0,
        }
    }

    /// Blocks until at least one datagram arrives, then takes every one already queued (up to
    /// BATCH). Returns how many were received.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        // SAFETY: the iovecs and headers point into `self.bufs` and `self.addrs`, which outlive
        // the call and are not otherwise accessed during it; lengths match the buffers.
        let received = unsafe {
            let mut iovecs: [libc::iovec; BATCH] = zeroed();
            let mut msgs: [libc::mmsghdr; BATCH] = zeroed();
            for i in 0..BATCH {
                iovecs[i] = libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: BUF,
                };
                msgs[i].msg_hdr.msg_name =
                    (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                msgs[i].msg_hdr.msg_namelen =
                    size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                msgs[i].msg_hdr.msg_iov = &mut iovecs[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            let n = libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            );
            if n < 0 {
                self.count = 0;
                return Err(io::Error::last_os_error());
            }
            for (len, msg) in self.lens.iter_mut().zip(&msgs).take(n as usize) {
                *len = (msg.msg_len as usize).min(BUF);
            }
            n as usize
        };
        self.count = received;
        Ok(received)
    }

    /// The i-th datagram of the last `recv` and its source (`None` for a non-IP source).
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if i >= self.count {
            return None;
        }
        let source = from_storage(&self.addrs[i])?;
        Some((&self.bufs[i][..self.lens[i]], source))
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

fn from_storage(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large
            // enough and aligned for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage; the casts below write a sockaddr_in(6),
    // which fits in and is aligned for sockaddr_storage.
    unsafe {
        let mut s: libc::sockaddr_storage = zeroed();
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(&mut s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                (s, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(a) => {
                let sin6 =
                    &mut *(&mut s as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                (s, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }
}

/// Sends every datagram of `out` (destination, payload), BATCH per system call. A datagram the
/// kernel refuses (say, an unreachable destination) stops a `sendmmsg` call; it is then tried
/// alone and the rest continue, so one bad destination never costs others their answers.
/// Returns the errors met, for logging.
pub fn send_all(socket: &UdpSocket, out: &[(SocketAddr, Vec<u8>)]) -> Vec<(SocketAddr, io::Error)> {
    let mut errors = Vec::new();
    let mut start = 0;
    while start < out.len() {
        let chunk = &out[start..out.len().min(start + BATCH)];
        let mut names: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
            chunk.iter().map(|(a, _)| to_storage(a)).collect();
        // SAFETY: headers point into `names` and the payloads of `chunk`, which live until
        // the call returns; the kernel only reads them.
        let sent = unsafe {
            let mut iovecs: Vec<libc::iovec> = chunk
                .iter()
                .map(|(_, p)| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            let mut msgs: Vec<libc::mmsghdr> = (0..chunk.len()).map(|_| zeroed()).collect();
            for (i, m) in msgs.iter_mut().enumerate() {
                m.msg_hdr.msg_name = (&mut names[i].0 as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_namelen = names[i].1;
                m.msg_hdr.msg_iov = &mut iovecs[i];
                m.msg_hdr.msg_iovlen = 1;
            }
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                0,
            )
        };
        let sent = if sent < 0 { 0 } else { sent as usize };
        start += sent;
        if sent < chunk.len() {
            // The datagram at `start` was refused: try it alone, then carry on after it.
            let (to, payload) = &out[start];
            if let Err(e) = socket.send_to(payload, to) {
                errors.push((*to, e));
            }
            start += 1;
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..40u8 {
            client.send_to(&[i; 3], to).unwrap();
        }
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = batch.recv(&server).unwrap();
            for i in 0..n {
                let (data, from) = batch.get(i).unwrap();
                assert_eq!(from, client.local_addr().unwrap());
                got.push(data.to_vec());
            }
        }
        assert_eq!(got, (0..40u8).map(|i| vec![i; 3]).collect::<Vec<_>>());
        let replies: Vec<(SocketAddr, Vec<u8>)> = (0..40u8)
            .map(|i| (client.local_addr().unwrap(), vec![i]))
            .collect();
        assert!(send_all(&server, &replies).is_empty());
        let mut buf = [0u8; 8];
        for i in 0..40u8 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i]);
        }
    }
}
