//! How many connections this process holds: in all and per remote IP, ours and theirs alike
//! (protocol.txt §2.4), so one host cannot take every slot, idle or not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections at once, when the user does not choose.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Connections with one IP at once, when the user does not choose.
pub const DEFAULT_MAX_PER_IP: usize = 32;

#[derive(Debug)]
pub struct ConnectionBudget {
    total: Arc<Semaphore>,
    max_total: usize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
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
    ip: IpAddr,
    _slot: OwnedSemaphorePermit,
}

impl ConnectionBudget {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionBudget> {
        Arc::new(ConnectionBudget {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    /// A slot for a connection with `ip`, if the limits allow one.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, BudgetError> {
        let ip = ip.to_canonical();
        let mut per_ip = self.per_ip.lock();
        if per_ip.get(&ip).is_some_and(|n| *n >= self.max_per_ip) {
            return Err(BudgetError::PerIp(self.max_per_ip));
        }
        let slot = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| BudgetError::Total(self.max_total))?;
        *per_ip.entry(ip).or_default() += 1;
        Ok(ConnectionPermit {
            budget: self.clone(),
            ip,
            _slot: slot,
        })
    }

    /// Connections open now.
    pub fn in_use(&self) -> usize {
        self.max_total - self.total.available_permits()
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = self.budget.per_ip.lock();
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
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
    fn ipv4_mapped_addresses_count_as_their_ipv4() {
        let budget = ConnectionBudget::new(8, 1);
        let _v4 = budget.try_acquire("10.0.0.1".parse().unwrap()).unwrap();
        assert!(budget
            .try_acquire("::ffff:10.0.0.1".parse().unwrap())
            .is_err());
    }
}
