//! What peers tell the tracker about their transfers, and the per-swarm figures it answers with
//! (protocol.txt §1.2, §1.3): BitTorrent's announce `event` with its byte counters on the
//! announcements of one file, seed 003's connection figures on the heartbeat, and per swarm the
//! completed downloads and the bytes peers moved.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::token::{parse_u32, parse_u64, truncated, Line};

/// Largest byte counter a peer may report, and where the tracker's sums stop: 2^53 - 1 (8 PiB),
/// the largest integer a JSON number (the HTTP API's) and a Lua number (the Redis store's) hold
/// exactly.
pub const MAX_COUNTER: u64 = (1 << 53) - 1;

/// BitTorrent's announce `event=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceEvent {
    /// The peer begins a session with this file (a download joins, or a seeder starts): its
    /// counters start from zero here.
    Started,
    /// The download just finished (sent once, before the peer seeds it).
    Completed,
    /// The peer leaves the swarm (only with flag 5).
    Stopped,
}

impl AnnounceEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnounceEvent::Started => "started",
            AnnounceEvent::Completed => "completed",
            AnnounceEvent::Stopped => "stopped",
        }
    }
}

impl FromStr for AnnounceEvent {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match s {
            "started" => Ok(AnnounceEvent::Started),
            "completed" => Ok(AnnounceEvent::Completed),
            "stopped" => Ok(AnnounceEvent::Stopped),
            other => Err(ParseError::BadField {
                field: "event",
                reason: format!(
                    "{:?} is not started, completed or stopped",
                    truncated(other)
                ),
            }),
        }
    }
}

impl fmt::Display for AnnounceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The optional `event=`, `up=`, `down=` and `left=` of an announcement of one file: what the
/// peer did with it since its `started`, in bytes. Each field may be left out (a person typing a
/// request adds what they like); the default sends none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Transfer {
    pub event: Option<AnnounceEvent>,
    /// Bytes of the file this peer served to others since `started`.
    pub up: Option<u64>,
    /// Bytes of the file this peer fetched from others since `started`.
    pub down: Option<u64>,
    /// Bytes it still lacks (0 for a seeder).
    pub left: Option<u64>,
}

impl Transfer {
    pub fn is_empty(&self) -> bool {
        *self == Transfer::default()
    }

    /// Whether there are byte counters to add to the swarm's figures.
    pub fn has_counters(&self) -> bool {
        self.up.is_some() || self.down.is_some()
    }

    /// Takes the fields from a request line; what is left for [`Line::finish`] is not ours.
    pub(crate) fn take(line: &mut Line<'_>) -> Result<Self, ParseError> {
        let counter =
            |line: &mut Line<'_>, field: &'static str| -> Result<Option<u64>, ParseError> {
                line.take(field)
                    .map(|v| {
                        let n = parse_u64(field, v)?;
                        if n > MAX_COUNTER {
                            return Err(ParseError::BadNumber {
                                field,
                                value: truncated(v),
                            });
                        }
                        Ok(n)
                    })
                    .transpose()
            };
        let event = line.take("event").map(str::parse).transpose()?;
        let transfer = Transfer {
            event,
            up: counter(line, "up")?,
            down: counter(line, "down")?,
            left: counter(line, "left")?,
        };
        if transfer.event == Some(AnnounceEvent::Completed) && transfer.left.is_some_and(|l| l > 0)
        {
            return Err(ParseError::BadField {
                field: "left",
                reason: "event=completed with bytes left".into(),
            });
        }
        Ok(transfer)
    }
}

impl fmt::Display for Transfer {
    /// The fields, each with a leading space (nothing for an empty report).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(event) = self.event {
            write!(f, " event={event}")?;
        }
        for (name, value) in [("up", self.up), ("down", self.down), ("left", self.left)] {
            if let Some(value) = value {
                write!(f, " {name}={value}")?;
            }
        }
        Ok(())
    }
}

/// Seed 003's connection figures on a heartbeat (flag 9): `conns=` connections open now and
/// `failed=` connection attempts that failed since the previous heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ConnStats {
    pub conns: Option<u32>,
    pub failed: Option<u32>,
}

impl ConnStats {
    pub fn is_empty(&self) -> bool {
        *self == ConnStats::default()
    }

    pub(crate) fn take(line: &mut Line<'_>) -> Result<Self, ParseError> {
        Ok(ConnStats {
            conns: line
                .take("conns")
                .map(|v| parse_u32("conns", v))
                .transpose()?,
            failed: line
                .take("failed")
                .map(|v| parse_u32("failed", v))
                .transpose()?,
        })
    }
}

impl fmt::Display for ConnStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(conns) = self.conns {
            write!(f, " conns={conns}")?;
        }
        if let Some(failed) = self.failed {
            write!(f, " failed={failed}")?;
        }
        Ok(())
    }
}

/// A swarm's figures (RESPONSE 6 lines and RESPONSE 7): downloads completed (each peer once)
/// and the bytes its peers reported serving and fetching, summed over peers, saturating at
/// [`MAX_COUNTER`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SwarmStats {
    pub completed: u64,
    pub up: u64,
    pub down: u64,
}

impl SwarmStats {
    /// Adds counted bytes, stopping at [`MAX_COUNTER`].
    pub fn add(&mut self, up: u64, down: u64) {
        self.up = self.up.saturating_add(up).min(MAX_COUNTER);
        self.down = self.down.saturating_add(down).min(MAX_COUNTER);
    }

    /// `completed=`, `up=` and `down=`, all three or none (an older tracker).
    pub(crate) fn take(line: &mut Line<'_>) -> Result<Option<Self>, ParseError> {
        match (line.take("completed"), line.take("up"), line.take("down")) {
            (None, None, None) => Ok(None),
            (Some(completed), Some(up), Some(down)) => Ok(Some(SwarmStats {
                completed: parse_u64("completed", completed)?,
                up: parse_u64("up", up)?,
                down: parse_u64("down", down)?,
            })),
            (None, _, _) => Err(ParseError::MissingField("completed")),
            (_, None, _) => Err(ParseError::MissingField("up")),
            (_, _, None) => Err(ParseError::MissingField("down")),
        }
    }
}

impl fmt::Display for SwarmStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " completed={} up={} down={}",
            self.completed, self.up, self.down
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(fields: &str) -> Result<Transfer, ParseError> {
        let text = format!("X{fields}");
        let (_, mut line) = Line::split_any(&text)?;
        let t = Transfer::take(&mut line)?;
        line.finish()?;
        Ok(t)
    }

    #[test]
    fn transfer_fields_round_trip() {
        let t = transfer(" event=completed up=5 down=4096 left=0").unwrap();
        assert_eq!(t.event, Some(AnnounceEvent::Completed));
        assert_eq!((t.up, t.down, t.left), (Some(5), Some(4096), Some(0)));
        assert_eq!(t.to_string(), " event=completed up=5 down=4096 left=0");
        assert_eq!(transfer("").unwrap(), Transfer::default());
        assert_eq!(Transfer::default().to_string(), "");
    }

    #[test]
    fn bad_counters_are_refused_with_their_codes() {
        use crate::ErrorCode;
        let code = |f: &str| transfer(f).unwrap_err().code();
        assert_eq!(code(" event=bogus"), ErrorCode::BadField);
        assert_eq!(code(" event="), ErrorCode::BadField);
        assert_eq!(code(" up=-1"), ErrorCode::BadNumber);
        assert_eq!(code(" down=12x"), ErrorCode::BadNumber);
        assert_eq!(code(" left=99999999999999999999999"), ErrorCode::BadNumber);
        assert_eq!(
            code(&format!(" up={}", MAX_COUNTER + 1)),
            ErrorCode::BadNumber
        );
        assert!(transfer(&format!(" up={MAX_COUNTER}")).is_ok());
        assert_eq!(code(" event=completed left=1"), ErrorCode::BadField);
        assert_eq!(code(" up=1 up=2"), ErrorCode::ExtraField);
    }

    #[test]
    fn sums_saturate() {
        let mut s = SwarmStats::default();
        s.add(MAX_COUNTER, 1);
        s.add(MAX_COUNTER, u64::MAX);
        assert_eq!((s.up, s.down), (MAX_COUNTER, MAX_COUNTER));
    }
}
