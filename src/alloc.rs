//! The process's allocator: glibc's, with over-aligned blocks taken from
//! its fast path.
//!
//! tokio asks for 128-byte alignment for every task and every socket
//! registration (it pads them to a cache line pair). glibc answers such a
//! request from `posix_memalign`, which never uses its per-thread cache: it
//! carves an aligned piece out of a larger free chunk and gives the
//! remainder back, several hundred instructions per call and a fragment
//! left behind. A WebSocket handshake takes five such blocks (two tasks,
//! three registrations), which came to 5% of the proxy's instructions per
//! connection.
//!
//! [`Allocator`] takes a block of alignment up to [`MAX_OVER_ALIGN`] as an
//! ordinary `malloc` of `size + align` bytes, aligns within it and keeps the
//! address `malloc` gave just before the aligned one, where `free` finds it.
//! Everything else goes to the system allocator unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// The most alignment glibc's `malloc` already guarantees on the platforms
/// we build for (x86_64, aarch64): anything up to it goes straight through.
const MALLOC_ALIGN: usize = 16;

/// The most alignment served from `malloc` with padding: beyond it the
/// padding would cost more than `posix_memalign`'s slow path.
pub const MAX_OVER_ALIGN: usize = 256;

/// The word kept just before an over-aligned block: the address `malloc`
/// returned for it.
const HEADER: usize = std::mem::size_of::<usize>();

pub struct Allocator;

fn padded(layout: Layout) -> bool {
    layout.align() > MALLOC_ALIGN && layout.align() <= MAX_OVER_ALIGN
}

impl Allocator {
    /// # Safety
    /// As [`GlobalAlloc::alloc`], for a layout that [`padded`] accepts.
    unsafe fn alloc_padded(layout: Layout) -> *mut u8 {
        let Some(total) = layout.size().checked_add(layout.align()) else {
            return ptr::null_mut();
        };
        // SAFETY: plain malloc of a non-zero size.
        let base = unsafe { libc::malloc(total) }.cast::<u8>();
        if base.is_null() {
            return base;
        }
        // `base` is at least HEADER-aligned, so rounding `base + 1` up to
        // `align` leaves between HEADER and `align` bytes before the block
        // and `size` bytes after it within the `size + align` allocated.
        let offset = layout.align() - (base as usize & (layout.align() - 1));
        debug_assert!(offset >= HEADER && offset <= layout.align());
        // SAFETY: offset <= align, so the block and its header lie within
        // the allocation; the header is HEADER-aligned because the block is.
        unsafe {
            let block = base.add(offset);
            block.sub(HEADER).cast::<usize>().write(base as usize);
            block
        }
    }

    /// # Safety
    /// `block` came from [`Allocator::alloc_padded`].
    unsafe fn free_padded(block: *mut u8) {
        // SAFETY: alloc_padded wrote the malloc'd address just before the block.
        unsafe {
            let base = block.sub(HEADER).cast::<usize>().read() as *mut libc::c_void;
            libc::free(base);
        }
    }
}

// SAFETY: every block comes from either System or malloc with its layout
// honoured, and each is freed by the path that made it, chosen by the same
// layout test.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if padded(layout) {
            // SAFETY: the layout is one alloc_padded serves.
            unsafe { Self::alloc_padded(layout) }
        } else {
            // SAFETY: forwarded as given.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if padded(layout) {
            // SAFETY: the layout is one alloc_padded serves; the block has
            // `size` writable bytes.
            unsafe {
                let block = Self::alloc_padded(layout);
                if !block.is_null() {
                    ptr::write_bytes(block, 0, layout.size());
                }
                block
            }
        } else {
            // SAFETY: forwarded as given.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if padded(layout) {
            // SAFETY: the same layout test chose alloc_padded for it.
            unsafe { Self::free_padded(block) }
        } else {
            // SAFETY: forwarded as given.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !padded(layout) {
            // SAFETY: forwarded as given.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        // SAFETY: the caller guarantees new_size, rounded to the alignment,
        // does not overflow; the old block holds layout.size() bytes.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let moved = Self::alloc_padded(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                Self::free_padded(block);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alignment_is_honoured_and_the_bytes_survive_realloc() {
        let a = Allocator;
        for align in [1, 8, 16, 32, 64, 128, 256, 512, 4096] {
            for size in [1, 7, 64, 100, 1000, 5000] {
                let layout = Layout::from_size_align(size, align).expect("a valid layout");
                // SAFETY: non-zero sizes; every block is freed with its layout.
                unsafe {
                    let block = a.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "align {align} size {size}");
                    for i in 0..size {
                        block.add(i).write(i as u8);
                    }
                    let grown = a.realloc(block, layout, size * 3);
                    assert_eq!(grown as usize % align, 0);
                    for i in 0..size {
                        assert_eq!(grown.add(i).read(), i as u8);
                    }
                    let grown_layout = Layout::from_size_align(size * 3, align).expect("valid");
                    a.dealloc(grown, grown_layout);

                    let zeroed = a.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!((0..size).all(|i| zeroed.add(i).read() == 0));
                    a.dealloc(zeroed, layout);
                }
            }
        }
    }

    #[test]
    fn only_tokio_sized_alignments_take_the_padded_path() {
        let layout = |align| Layout::from_size_align(64, align).expect("valid");
        assert!(!padded(layout(16)));
        assert!(padded(layout(32)));
        assert!(padded(layout(128)));
        assert!(padded(layout(MAX_OVER_ALIGN)));
        assert!(!padded(layout(512)));
    }
}
