//! Received bytes not yet consumed by a streaming splitter. Consuming advances a cursor instead
//! of moving the remaining bytes to the front (which made every element cost a copy of the whole
//! buffer); the buffer is compacted only when a push finds the consumed part at least half of it.

use std::ops::Deref;

#[derive(Debug, Default)]
pub struct Unread {
    bytes: Vec<u8>,
    start: usize,
}

impl Unread {
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.bytes.len() {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// Drops the first `n` unread bytes (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes.len());
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
    }
}

impl Deref for Unread {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn behaves_like_a_queue_of_bytes(ops in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..50), 0usize..60), 1..40)) {
            let mut unread = Unread::default();
            let mut model: Vec<u8> = Vec::new();
            for (data, take) in ops {
                unread.push(&data);
                model.extend_from_slice(&data);
                let take = take.min(model.len());
                unread.consume(take);
                model.drain(..take);
                prop_assert_eq!(&*unread, model.as_slice());
            }
        }
    }
}
