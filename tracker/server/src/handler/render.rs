//! Rendering: the answer to each request of a batch from what the store did for it.

use std::time::Instant;

use tracker_proto::{
    Ack, ErrorCode, FileName, PageBody, PeersHeader, PunchNotice, RequestKind, ResponseKind,
};

use super::sinks::Body;
use super::{unavailable, Answer, AnswerResult, Parsed, Punch, Reply, Tracker};
use crate::host::Host;
use crate::rate_limit::Refusal;
use crate::store::{Done, StoreError, SwarmStore};

impl<S: SwarmStore> Tracker<S> {
    /// The answer to a request from what the store did for it.
    pub(super) fn render(
        &self,
        parsed: &Parsed,
        done: Result<Done, StoreError>,
        body: Body,
        now: Instant,
        punch: &mut Punch,
    ) -> AnswerResult {
        let (request, source) = (&parsed.request, parsed.source);
        let done = done.map_err(|e| {
            if let StoreError::Unavailable(why) = &e {
                // The store logs outages itself, rate-limited; this would be one line per request.
                log::debug!(
                    "answering flag {} with an error: {why}",
                    request.kind.flag()
                );
            }
            (e.code(), e.to_string())
        })?;
        let max = self.config.max_response_bytes;
        let tid = request.tid;
        Ok(Answer::Kind(match (&request.kind, done) {
            (RequestKind::Peers { .. } | RequestKind::Refresh { .. }, Done::Peers(page)) => {
                self.files_by_id.learn(&page.head.info);
                let body = match body {
                    Body::Text(body) => body,
                    Body::Typed(listing) => {
                        return Ok(Answer::Typed(Reply::Peers {
                            file: page.head,
                            peers: listing.peers,
                            next: page.next,
                        }))
                    }
                };
                let body = body.unwrap_or_else(|| {
                    let header = PeersHeader {
                        refresh: matches!(request.kind, RequestKind::Refresh { .. }),
                        file: &page.head,
                        intervals: Some(self.config.intervals),
                    };
                    PageBody::for_peers(max, header, tid)
                });
                return Ok(Answer::Text(body.finish_peers(page.next, tid)));
            }
            (RequestKind::ListFiles { .. }, Done::Files(page)) => {
                let body = match body {
                    Body::Text(body) => body,
                    Body::Typed(listing) => {
                        return Ok(Answer::Typed(Reply::Files {
                            total: page.head,
                            files: listing.files,
                            next: page.next,
                        }))
                    }
                };
                let body = body.unwrap_or_else(|| PageBody::for_files(max, tid));
                return Ok(Answer::Text(body.finish_files(page.head, page.next, tid)));
            }
            (RequestKind::Query { .. }, Done::File(summary)) => {
                self.files_by_id.learn(&summary.info);
                ResponseKind::File(summary)
            }
            (RequestKind::Chunks { .. }, Done::Ok) => ResponseKind::Ok(Ack::Chunks),
            (RequestKind::Share { info, .. }, Done::Ok) => {
                self.files_by_id.learn(info);
                ResponseKind::Ok(Ack::Share)
            }
            (RequestKind::Exit { .. }, Done::Ok) => ResponseKind::Ok(Ack::Exit),
            (RequestKind::Heartbeat { .. }, Done::Alive(files)) => {
                self.counters.connections(&request.conn_stats);
                ResponseKind::Alive { files }
            }
            (RequestKind::Punch { file, target, me }, Done::PunchTo(target_udp)) => {
                let me = self.punch_origin(*me, source)?;
                let allowed = self.punches.lock().allow(
                    Host::of(source.ip()),
                    Host::of(target.ip()),
                    self.config.punch_rate,
                    now,
                );
                match allowed {
                    Ok(()) => {}
                    Err(Refusal::Requester) => {
                        return Err((
                            ErrorCode::RateLimited,
                            "too many punch requests from your address".into(),
                        ))
                    }
                    Err(Refusal::Target) => {
                        return Err((
                            ErrorCode::RateLimited,
                            format!("too many punch requests for {target} right now"),
                        ))
                    }
                }
                let notice = PunchNotice {
                    file: FileName::clone(file),
                    from: me,
                };
                *punch = Some((target_udp, notice.to_string().into_bytes()));
                ResponseKind::Ok(Ack::Punch)
            }
            (_, done) => {
                return Err(unavailable(&format!(
                    "the store answered flag {} with {done:?}",
                    request.kind.flag()
                )))
            }
        }))
    }
}
