//! Reaching peers behind NATs: the address we announce, TCP hole punching to reach a peer
//! whose NAT drops connections nobody inside asked for, router port mapping, and TURN relaying
//! when nothing else gets through.
//!
//! A home router lets in only packets of connections its inside opened. When both peers sit
//! behind such routers, neither can connect to the other's public address: the SYN is dropped.
//! But if both send a SYN to each other at about the same time, from the ports they announced,
//! each outgoing SYN opens its own router for the other's, and TCP's simultaneous open
//! (RFC 9293 §3.5) turns the two crossing SYNs into one connection. The tracker is the
//! rendezvous: it can reach the target's UDP socket because the target's heartbeats keep that
//! mapping open, so the requester sends flag 8 and the tracker forwards a `PUNCH` notice
//! (protocol.txt §4).
//!
//! The port matters: the target announced the public mapping of its *serving* port, so both
//! sides connect from their serving port. The listener and the outgoing sockets share it with
//! SO_REUSEADDR + SO_REUSEPORT ([`stun::reusable_tcp_socket`]).
//!
//! This works through endpoint-independent mappings (full and port-restricted cones). A
//! symmetric NAT gives every destination a new public port, so the port the other side was told
//! is not the one our SYN comes from. When the requester's side lets connections in, the
//! target's connection back still arrives, at the requester's listener: the [`Rendezvous`]
//! hands it to the waiting punch ("reverse connection"). Otherwise the attempts fail and the
//! error names our NAT type as STUN sees it ([`OwnNat`]).
//!
//! Pairs that punching cannot connect (a symmetric NAT against a filtering one) go through a
//! TURN relay: the unreachable side holds a TCP allocation and announces the relayed address
//! ([`relay`], protocol.txt §5); a router that forwards our port on request makes all of this
//! unnecessary ([`port_map`]).
//!
//! Who does what: [`Dialer`] (the requester; the download engine's way to every peer, racing
//! the paths, in [`dialer`]), [`PunchAnswerer`] + [`answer_notices`] (the target, run by every
//! serving node, in [`answerer`]), [`simultaneous_open`] (what both sides do, in
//! [`simultaneous`]), and [`Incoming`] / [`Outlet`] (the server's end: punched and relayed
//! connections to serve, accepted ones to offer to the rendezvous first, in [`rendezvous`]).
//! [`Presence`] starts what keeps a node reachable and composes the announced address:
//! [`address`] (STUN over TCP and UDP, following the NAT's mapping), [`port_map`] and
//! [`relay`]. [`own_nat`] explains a failure.

pub mod address;
pub mod answerer;
pub mod dialer;
pub mod own_nat;
pub mod port_map;
pub mod presence;
pub mod relay;
pub mod rendezvous;
pub mod simultaneous;
mod udp_probe;

pub use answerer::{answer_notices, PunchAnswerer};
pub use dialer::{DialError, Dialer};
pub use own_nat::OwnNat;
pub use presence::{Presence, ReachConfig};
pub use relay::{RelayState, TurnChoice};
pub use rendezvous::{server_hooks, Incoming, Outlet, Rendezvous};
pub use simultaneous::{simultaneous_open, PunchConfig, PunchError};
pub use stun::turn::Credentials;

#[cfg(test)]
mod test_support {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::PunchConfig;

    pub fn quick() -> PunchConfig {
        PunchConfig {
            direct_timeout: Duration::from_secs(2),
            attempts: 3,
            attempt_timeout: Duration::from_secs(2),
            retry_delay: Duration::from_millis(50),
            max_concurrent_answers: 2,
        }
    }

    /// A free loopback address (its socket is closed again).
    pub fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        l.local_addr().expect("local addr")
    }
}
