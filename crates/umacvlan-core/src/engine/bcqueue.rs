//! The port's broadcast queue (`port->bc_queue`): a bounded FIFO whose capacity is the port's
//! `usedbcqueuelen` at the moment of each enqueue. The data plane owns the locking and the
//! worker; this type owns the rule.

use std::collections::VecDeque;

/// A bounded FIFO with the kernel's overflow rule: a frame arriving when `len >= capacity` is
/// refused (and the caller counts it on the lower's rx_dropped).
#[derive(Debug)]
pub struct BcQueue<T> {
    items: VecDeque<T>,
}

impl<T> Default for BcQueue<T> {
    fn default() -> Self {
        BcQueue {
            items: VecDeque::new(),
        }
    }
}

impl<T> BcQueue<T> {
    /// `macvlan_broadcast_enqueue`: queue `item` if fewer than `capacity` are waiting.
    pub fn push(&mut self, item: T, capacity: u32) -> Result<(), T> {
        if self.items.len() < capacity as usize {
            self.items.push_back(item);
            Ok(())
        } else {
            Err(item)
        }
    }

    /// `macvlan_process_broadcast`: takes everything queued so far, oldest first.
    pub fn take_all(&mut self) -> VecDeque<T> {
        std::mem::take(&mut self.items)
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_zero_refuses_everything() {
        let mut q = BcQueue::default();
        assert_eq!(q.push(1, 0), Err(1));
        assert!(q.is_empty());
    }

    #[test]
    fn overflow_refused_and_fifo_order_kept() {
        let mut q = BcQueue::default();
        assert!(q.push(1, 2).is_ok());
        assert!(q.push(2, 2).is_ok());
        assert_eq!(q.push(3, 2), Err(3));
        // Capacity grows when a device asks for more.
        assert!(q.push(3, 3).is_ok());
        assert_eq!(q.take_all().into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(q.len(), 0);
    }
}
