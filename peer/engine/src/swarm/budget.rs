//! How many connections this process holds: in all and per remote IP, ours and theirs alike
//! (protocol.txt §2.4), so one host cannot take every slot, idle or not.
//!
//! A connection we accepted is *opening* until its HANDSHAKE arrives. When every slot is taken,
//! a new connection takes the slot of the oldest opening one, which is closed: connections that
//! say nothing cost their sender a socket each and us nothing, so however many hosts open them
//! they cannot keep a peer that speaks from getting in (the handshake deadline alone would
//! not: an attacker reopens what it closes).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Connections at once, when the user does not choose.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Connections with one IP at once, when the user does not choose.
pub const DEFAULT_MAX_PER_IP: usize = 32;

#[derive(Debug)]
pub struct ConnectionBudget {
    max_total: usize,
    max_per_ip: usize,
    slots: Mutex<Slots>,
}

/// The slots in use.
#[derive(Debug, Default)]
struct Slots {
    /// The IP of every slot held, by permit number.
    held: HashMap<u64, IpAddr>,
    per_ip: HashMap<IpAddr, usize>,
    /// Slots of connections still opening, oldest (smallest number) first, with what closes
    /// each when its slot is taken.
    opening: BTreeMap<u64, CancellationToken>,
    next: u64,
}

impl Slots {
    fn release(&mut self, seq: u64) {
        self.opening.remove(&seq);
        let Some(ip) = self.held.remove(&seq) else {
            return;
        };
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// Why a connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("too many connections ({0})")]
    Total(usize),
    #[error("too many connections from one address ({0})")]
    PerIp(usize),
}

/// One connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    budget: Arc<ConnectionBudget>,
    seq: u64,
}

/// The slot of an accepted connection that has not said who it is yet, and what tells it that
/// its slot went to a newer connection.
#[derive(Debug)]
pub struct OpeningPermit {
    pub permit: ConnectionPermit,
    /// Cancelled when the slot is taken: the connection must close.
    pub evicted: CancellationToken,
}

impl ConnectionBudget {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionBudget> {
        Arc::new(ConnectionBudget {
            max_total,
            max_per_ip,
            slots: Mutex::new(Slots::default()),
        })
    }

    /// A slot for a connection with `ip` that is past its opening (one we dial), if the limits
    /// allow one.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, BudgetError> {
        let mut slots = self.slots.lock();
        let seq = self.take(&mut slots, ip)?;
        Ok(ConnectionPermit {
            budget: self.clone(),
            seq,
        })
    }

    /// A slot for a connection with `ip` we accepted, opening until
    /// [`ConnectionPermit::established`].
    pub fn try_open(self: &Arc<Self>, ip: IpAddr) -> Result<OpeningPermit, BudgetError> {
        let mut slots = self.slots.lock();
        let seq = self.take(&mut slots, ip)?;
        let evicted = CancellationToken::new();
        slots.opening.insert(seq, evicted.clone());
        Ok(OpeningPermit {
            permit: ConnectionPermit {
                budget: self.clone(),
                seq,
            },
            evicted,
        })
    }

    /// Takes a slot for `ip`: a free one, else the oldest opening connection's.
    fn take(&self, slots: &mut Slots, ip: IpAddr) -> Result<u64, BudgetError> {
        let ip = ip.to_canonical();
        if slots.per_ip.get(&ip).is_some_and(|n| *n >= self.max_per_ip) {
            return Err(BudgetError::PerIp(self.max_per_ip));
        }
        if slots.held.len() >= self.max_total {
            let Some((oldest, evicted)) = slots.opening.pop_first() else {
                return Err(BudgetError::Total(self.max_total));
            };
            log::debug!("every connection slot is taken: closing the oldest opening one");
            evicted.cancel();
            slots.release(oldest);
        }
        let seq = slots.next;
        slots.next += 1;
        slots.held.insert(seq, ip);
        *slots.per_ip.entry(ip).or_default() += 1;
        Ok(seq)
    }

    /// Connections open now.
    pub fn in_use(&self) -> usize {
        self.slots.lock().held.len()
    }
}

impl ConnectionPermit {
    /// The connection said who it is (a HANDSHAKE): its slot is no longer taken by newcomers.
    pub fn established(&self) {
        self.budget.slots.lock().opening.remove(&self.seq);
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.budget.slots.lock().release(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ip_cannot_take_every_slot() {
        let budget = ConnectionBudget::new(4, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = budget.try_acquire(a).unwrap();
        let _a2 = budget.try_acquire(a).unwrap();
        assert_eq!(budget.try_acquire(a).unwrap_err(), BudgetError::PerIp(2));
        let _b1 = budget.try_acquire(b).unwrap();
        let _b2 = budget.try_acquire(b).unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        assert_eq!(budget.try_acquire(c).unwrap_err(), BudgetError::Total(4));
        drop(a1);
        let _c1 = budget.try_acquire(c).expect("a freed slot is reusable");
        assert_eq!(budget.in_use(), 4);
    }

    #[test]
    fn a_full_budget_gives_the_oldest_opening_slot_to_a_newcomer() {
        let budget = ConnectionBudget::new(3, 2);
        let ip = |n: u8| -> IpAddr { format!("10.0.0.{n}").parse().unwrap() };
        let dialled = budget.try_acquire(ip(1)).unwrap();
        let old = budget.try_open(ip(2)).unwrap();
        let young = budget.try_open(ip(2)).unwrap();
        // Full: the newcomer takes the oldest opening slot, never an established one.
        let newcomer = budget.try_open(ip(3)).unwrap();
        assert!(old.evicted.is_cancelled() && !young.evicted.is_cancelled());
        assert_eq!(budget.in_use(), 3);
        drop(old);
        assert_eq!(budget.in_use(), 3, "an evicted permit frees nothing twice");
        young.permit.established();
        newcomer.permit.established();
        assert_eq!(budget.try_open(ip(4)).unwrap_err(), BudgetError::Total(3));
        // The evicted connection's IP got its slot back.
        drop(dialled);
        let _again = budget.try_open(ip(2)).unwrap();
        assert_eq!(budget.try_open(ip(2)).unwrap_err(), BudgetError::PerIp(2));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4() {
        let budget = ConnectionBudget::new(8, 1);
        let _v4 = budget.try_acquire("10.0.0.1".parse().unwrap()).unwrap();
        assert!(budget
            .try_acquire("::ffff:10.0.0.1".parse().unwrap())
            .is_err());
    }
}
