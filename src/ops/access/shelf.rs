//! Where open tunnels keep their pending access log lines: side by side in
//! a few large vectors, not each in allocations of its own.
//!
//! A tunnel's line is made when its request is answered, amid that
//! request's buffers; kept in its own heap blocks for the tunnel's life,
//! each line held on to pages the request had freed, and an idle tunnel
//! with an access log came to eight times the memory of one without
//! (2.5 KiB against 0.3). Here a line that fits (most do: one log, text up
//! to [`LONG`] bytes, up to [`HOLES`] end fields, no `%{end:…}t`) is
//! copied into a fixed-size record of one of two sizes, in a vector of
//! such records that is reused from its lowest free place and shortened
//! when its tail frees. Anything else is kept as before, boxed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use super::format::{fill, EndField, Hole, Opened, Pending, TunnelEnd};
use super::Sink;

/// Text bytes of the two record sizes (the records come to 256 and 512
/// bytes).
pub const SHORT: usize = 164;
pub const LONG: usize = 420;
/// End fields a record holds.
pub const HOLES: usize = 6;

struct Record<const N: usize> {
    sink: Arc<Sink>,
    opened: Opened,
    holes: [(u16, EndField); HOLES],
    n_holes: u8,
    len: u16,
    text: [u8; N],
}

impl<const N: usize> Record<N> {
    /// The line as a record, if it fits.
    fn of(sink: &Arc<Sink>, opened: &Opened, line: &Pending) -> Option<Record<N>> {
        if line.text.len() > N || line.holes.len() > HOLES {
            return None;
        }
        let mut holes = [(0u16, EndField::ConnStatus); HOLES];
        for (slot, (at, hole)) in holes.iter_mut().zip(&line.holes) {
            let Hole::Known(f) = hole else { return None };
            *slot = (u16::try_from(*at).ok()?, *f);
        }
        let mut text = [0u8; N];
        text[..line.text.len()].copy_from_slice(line.text.as_bytes());
        Some(Record {
            sink: sink.clone(),
            opened: *opened,
            holes,
            n_holes: line.holes.len() as u8,
            len: line.text.len() as u16,
            text,
        })
    }

    fn finish(self, end: &TunnelEnd) {
        // Made from a `String` cut at char boundaries: valid UTF-8.
        let text = std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or("");
        let line = fill(
            text,
            &self.holes[..usize::from(self.n_holes)],
            &self.opened,
            end,
        );
        self.sink.send(line);
    }
}

/// Records of one kind, reused lowest place first.
struct Rack<T> {
    slots: Vec<Option<T>>,
    free: BinaryHeap<Reverse<u32>>,
}

impl<T> Rack<T> {
    const fn new() -> Rack<T> {
        Rack {
            slots: Vec::new(),
            free: BinaryHeap::new(),
        }
    }

    fn put(&mut self, t: T) -> Option<u32> {
        while let Some(Reverse(i)) = self.free.pop() {
            // A place past a shortened end may have been pushed again.
            if let Some(slot @ None) = self.slots.get_mut(i as usize) {
                *slot = Some(t);
                return Some(i);
            }
        }
        let i = u32::try_from(self.slots.len())
            .ok()
            .filter(|i| *i < MAX_INDEX)?;
        self.slots.push(Some(t));
        Some(i)
    }

    fn take(&mut self, i: u32) -> Option<T> {
        let t = self.slots.get_mut(i as usize)?.take()?;
        self.free.push(Reverse(i));
        // A free tail goes, and with a quarter used the memory too.
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        if self.slots.len() < self.slots.capacity() / 4 {
            self.slots.shrink_to(self.slots.len() * 2);
            let len = self.slots.len() as u32;
            self.free.retain(|Reverse(i)| *i < len);
        }
        Some(t)
    }
}

/// Lines kept whole, when they do not fit a record (or are several).
struct Boxed {
    opened: Opened,
    lines: Vec<(Arc<Sink>, Pending)>,
}

/// Indices carry their rack in their top two bits.
const RACK_SHIFT: u32 = 30;
const MAX_INDEX: u32 = (1 << RACK_SHIFT) - 1;

struct Shelf {
    short: Mutex<Rack<Record<SHORT>>>,
    long: Mutex<Rack<Record<LONG>>>,
    boxed: Mutex<Rack<Boxed>>,
}

static SHELF: Shelf = Shelf {
    short: Mutex::new(Rack::new()),
    long: Mutex::new(Rack::new()),
    boxed: Mutex::new(Rack::new()),
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One pending line on the shelf; written by [`Shelved::finish`], or lost
/// (with a warning) if dropped unfinished.
#[derive(Debug)]
pub struct Shelved(NonZeroU32);

impl Shelved {
    /// Puts a tunnel's lines, each for its log, on the shelf.
    pub fn keep(opened: &Opened, lines: Vec<(Arc<Sink>, Pending)>) -> Option<Shelved> {
        let one = match lines.as_slice() {
            [(sink, line)] => Some((sink, line)),
            _ => None,
        };
        let (rack, index) =
            if let Some(r) = one.and_then(|(s, l)| Record::<SHORT>::of(s, opened, l)) {
                (1, lock(&SHELF.short).put(r)?)
            } else if let Some(r) = one.and_then(|(s, l)| Record::<LONG>::of(s, opened, l)) {
                (2, lock(&SHELF.long).put(r)?)
            } else {
                let boxed = Boxed {
                    opened: *opened,
                    lines,
                };
                (3, lock(&SHELF.boxed).put(boxed)?)
            };
        NonZeroU32::new((rack << RACK_SHIFT) | index).map(Shelved)
    }

    fn parts(&self) -> (u32, u32) {
        (self.0.get() >> RACK_SHIFT, self.0.get() & MAX_INDEX)
    }

    /// Writes the line with how the tunnel ended.
    pub fn finish(self, end: &TunnelEnd) {
        let (rack, i) = self.parts();
        std::mem::forget(self);
        match rack {
            1 => {
                let r = lock(&SHELF.short).take(i);
                if let Some(r) = r {
                    r.finish(end);
                }
            }
            2 => {
                let r = lock(&SHELF.long).take(i);
                if let Some(r) = r {
                    r.finish(end);
                }
            }
            _ => {
                let b = lock(&SHELF.boxed).take(i);
                if let Some(b) = b {
                    for (sink, line) in b.lines {
                        sink.send(line.finish(&b.opened, end));
                    }
                }
            }
        }
    }
}

impl Drop for Shelved {
    fn drop(&mut self) {
        tracing::warn!("a tunnel's access log line was lost: the tunnel went without being logged");
        let (rack, i) = self.parts();
        match rack {
            1 => drop(lock(&SHELF.short).take(i)),
            2 => drop(lock(&SHELF.long).take(i)),
            _ => drop(lock(&SHELF.boxed).take(i)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_the_sizes_the_racks_are_named_for() {
        assert_eq!(std::mem::size_of::<Option<Record<SHORT>>>(), 256);
        assert_eq!(std::mem::size_of::<Option<Record<LONG>>>(), 512);
    }

    #[test]
    fn a_rack_reuses_its_lowest_place_and_gives_back_its_tail() {
        let mut rack = Rack::new();
        let ids: Vec<u32> = (0..100).map(|i| rack.put(i).unwrap()).collect();
        assert_eq!(ids, (0..100).collect::<Vec<_>>());
        assert_eq!(rack.take(10), Some(10));
        assert_eq!(rack.take(20), Some(20));
        assert_eq!(rack.put(7), Some(10), "the lowest free place");
        for i in (1..100).rev() {
            if i != 10 && i != 20 {
                rack.take(i);
            }
        }
        assert_eq!(rack.slots.len(), 11, "the free tail is gone");
        assert!(rack.slots.capacity() <= 22 + 11, "and its memory");
        assert_eq!(rack.put(9), Some(1));
    }
}
