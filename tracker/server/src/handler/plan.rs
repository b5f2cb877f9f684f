//! Planning: what the store does for each request of a batch, once the trust rules let it
//! through (who may be announced, which offsets and page sizes hold).

use std::net::SocketAddr;

use tracker_proto::{ErrorCode, RequestKind};

use super::sinks::{Body, FileEntries, FileText, PeerEntries, PeerText};
use super::{Parsed, Tracker};
use crate::store::{Announcer, FileSink, Op, PeerSink, SwarmStore, Task};

impl<S: SwarmStore> Tracker<S> {
    /// The store's part of a request, after the trust rules; `None` for a request the store
    /// has no part in.
    pub(super) fn plan<'a>(
        &self,
        parsed: &'a Parsed,
        body: &'a mut Body,
    ) -> Result<Option<Task<'a>>, (ErrorCode, String)> {
        let (request, source, reply_to) = (&parsed.request, parsed.source, parsed.reply_to);
        let who = |addr: SocketAddr| -> Result<Announcer, (ErrorCode, String)> {
            Ok(Announcer {
                addr: self.announced(addr, source)?,
                key: request.key,
                source: reply_to,
                udp: (!request.keep_punch_path).then_some(reply_to),
            })
        };
        let touch = if request.kind.announce().is_none() && parsed.verified {
            request.key
        } else {
            None
        };
        let max = self.config.max_response_bytes;
        let tid = request.tid;
        let op = match &request.kind {
            RequestKind::Peers {
                file,
                announce,
                offset,
            }
            | RequestKind::Refresh {
                file,
                announce,
                offset,
            } => {
                let refresh = matches!(request.kind, RequestKind::Refresh { .. });
                Self::check_offset(*offset, self.config.limits.max_peers_per_file)?;
                let join = announce.map(who).transpose()?;
                let intervals = Some(self.config.intervals);
                let sink: Box<dyn PeerSink + 'a> = match body {
                    Body::Text(slot) => Box::new(PeerText {
                        slot,
                        max,
                        refresh,
                        intervals,
                        tid,
                    }),
                    Body::Typed(listing) => Box::new(PeerEntries(listing)),
                };
                Op::Peers {
                    file,
                    offset: *offset,
                    join,
                    transfer: &request.transfer,
                    sink,
                }
            }
            RequestKind::ListFiles { offset, pattern } => {
                Self::check_offset(*offset, self.config.limits.max_files)?;
                let pattern = pattern.as_ref();
                let sink: Box<dyn FileSink + 'a> = match body {
                    Body::Text(slot) => Box::new(FileText {
                        slot,
                        max,
                        tid,
                        pattern,
                    }),
                    Body::Typed(listing) => Box::new(FileEntries { listing, pattern }),
                };
                Op::Files {
                    offset: *offset,
                    sink,
                }
            }
            RequestKind::Query { file } => Op::Query { file },
            RequestKind::Chunks {
                file,
                chunks,
                announce,
            } => Op::Report {
                who: who(*announce)?,
                file,
                chunks,
                transfer: &request.transfer,
            },
            RequestKind::Share { info, announce } => Op::Share {
                who: who(*announce)?,
                info,
                transfer: &request.transfer,
            },
            RequestKind::Exit { file, announce } => Op::Exit {
                who: who(*announce)?,
                file: file.as_ref(),
                transfer: &request.transfer,
            },
            RequestKind::Heartbeat { announce } => Op::Heartbeat {
                who: who(*announce)?,
            },
            RequestKind::Punch { file, target, me } => {
                self.punch_origin(*me, source)?;
                Op::PunchTarget {
                    file,
                    target: *target,
                }
            }
            RequestKind::RelayOffer => return Ok(None),
        };
        Ok(Some(Task { touch, op }))
    }
}
