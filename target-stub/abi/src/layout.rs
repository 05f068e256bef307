//! Where the host puts the stub and its blocks in the board's work area, and
//! the smallest work area that holds them: the stub finds its config at its
//! initial `sp` and the mailbox and slots right after it, so this layout is
//! part of the contract. Pure arithmetic; the board file's validation and
//! the host's stub runner both use it.

use core::ops::Range;

use crate::{lz, Config, Mailbox, Slots, Words};

/// Stack the stub gets, right below the config block.
pub const STACK_SIZE: u32 = 1024;

/// The smallest data buffer a layout accepts (reads, SFDP, block CRCs,
/// the stream's page buffer and two slots).
pub const MIN_BUF: u32 = 1024;

/// Most bytes of stub code and read-only data: `target-stub/stub.x` stops
/// the link above it, so a work area sized for it holds any stub build.
pub const STUB_BUDGET: u32 = 5120;

/// Bytes before the stream's slots in the buffer: where `PROGRAM_LZ`
/// pages are decoded.
pub const STREAM_PAGE_BUF: u32 = lz::PAGE as u32;

/// The config block, mailbox and slots header at the top of the work area.
const TOP: u32 = (Config::SIZE + Mailbox::SIZE + Slots::SIZE) as u32;

/// Where things go in the work area: the stub at the bottom, then the data
/// buffer, the stack, and at the top the config block followed by the
/// mailbox and the slots header (`stub_serve` starts with sp = config), so
/// one read polls the mailbox's `done`/`status`/`value` with the stream's
/// `rp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub load: u32,
    /// The [`Slots`] header of `Command::Stream`.
    pub slots: u32,
    /// Data buffer (reads, SFDP, block CRCs; for a stream the page buffer,
    /// then the slots).
    pub buf: u32,
    pub buf_len: u32,
    /// Lowest stack word.
    pub canary: u32,
    /// Initial sp of `stub_serve`, also where the config block starts.
    pub config: u32,
    pub mailbox: u32,
    /// End of what the stub uses.
    pub end: u32,
}

const fn align8(v: u32) -> Option<u32> {
    match v.checked_add(7) {
        Some(v) => Some(v & !7),
        None => None,
    }
}

/// Plan the work area for a stub of `image_len` bytes; `None` when the
/// stub, its blocks, a [`MIN_BUF`] buffer and the stack do not fit.
pub fn layout(work_area: &Range<u32>, image_len: u32) -> Option<Layout> {
    layout_with_stack(work_area, image_len, STACK_SIZE)
}

/// [`layout`] with a stack of `stack` bytes instead of [`STACK_SIZE`]
/// (tests give the stub too small a stack to see the canary catch it).
pub fn layout_with_stack(work_area: &Range<u32>, image_len: u32, stack: u32) -> Option<Layout> {
    let load = work_area.start;
    let buf = align8(load.checked_add(image_len)?)?;
    let config = work_area.end.checked_sub(TOP)? & !7;
    let mailbox = config + Config::SIZE as u32;
    let slots = mailbox + Mailbox::SIZE as u32;
    let canary = config.checked_sub(stack)?;
    let buf_len = canary.checked_sub(buf)? & !0xFF;
    (buf_len >= MIN_BUF).then_some(Layout {
        load,
        slots,
        buf,
        buf_len,
        canary,
        config,
        mailbox,
        end: config + TOP,
    })
}

/// The smallest size of a work area at `start` that [`layout`] accepts for
/// a stub of `image_len` bytes (`None` past the address space): the stub
/// rounded up to 8 bytes, the buffer, the stack and the top blocks. The
/// config's 8-byte alignment costs nothing more, as the stub's end is
/// 8-byte aligned already.
pub const fn min_work_area(start: u32, image_len: u32) -> Option<u32> {
    let Some(stub_end) = start.checked_add(image_len) else {
        return None;
    };
    let Some(buf) = align8(stub_end) else {
        return None;
    };
    (buf - start).checked_add(MIN_BUF + STACK_SIZE + TOP)
}

impl Layout {
    /// The stream's slots in the data buffer, after the page buffer
    /// ([`STREAM_PAGE_BUF`]): (count, size). When eight slots still hold
    /// 3 KiB of records each, 8 to 12 slots of at least 2 KiB, the count
    /// that holds the most pages in all (the fewest slots on a tie: the
    /// area's remainder below a slot is lost, and what the slots hold is
    /// what the link sends ahead while the chip erases); else four of
    /// 4 KiB, else two: while the chip erases, the stub holds none of them
    /// (an erase ends its chunk), so the whole area fills; smaller slots
    /// are released sooner once it programs again, and adjacent free ones
    /// still go out in one memory call. A slot is a record header, whole
    /// pages and the trailer, so a chunk of raw pages fills it exactly.
    pub fn stream_slots(&self) -> (u32, u32) {
        const PAGE: u32 = lz::PAGE as u32;
        let overhead = crate::stream::HEADER + 4;
        let area = self.buf_len - STREAM_PAGE_BUF;
        let pages = |n: u32| ((area / n).saturating_sub(overhead) / PAGE).min(255);
        let count = match [(8, 3072), (4, 4096)]
            .into_iter()
            .find(|&(n, least)| area / n >= least + overhead)
        {
            Some((8, _)) => (8..=12)
                .filter(|&n| pages(n) >= 8)
                .max_by_key(|&n| (n * pages(n), u32::MAX - n))
                .unwrap_or(8),
            Some((n, _)) => n,
            None => 2,
        };
        (count, overhead + pages(count) * PAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_the_builtin_work_area() {
        let l = layout(&(0x2001_C000..0x2002_0000), 0x6A2).unwrap();
        assert_eq!(l.load, 0x2001_C000);
        assert_eq!(l.buf, 0x2001_C6A8, "after the stub, 8-byte aligned");
        assert!(
            l.end <= 0x2002_0000 && l.end > 0x2002_0000 - 8,
            "config, mailbox and slots header at the top"
        );
        assert_eq!(l.mailbox, l.config + Config::SIZE as u32);
        assert_eq!(
            l.slots,
            l.mailbox + Mailbox::SIZE as u32,
            "one read polls both"
        );
        assert_eq!(l.slots + Slots::SIZE as u32, l.end);
        assert_eq!(l.config % 8, 0, "the stub's initial sp");
        assert_eq!(l.canary, l.config - STACK_SIZE);
        assert!(l.buf + l.buf_len <= l.canary);
        assert_eq!(l.buf_len % 256, 0);
        assert!(l.buf_len >= 8 * 1024);
    }

    #[test]
    fn stream_slots_hold_a_header_whole_pages_and_the_trailer() {
        // The board files' 32 KiB work area and a stub of 4.25 KiB.
        let l = layout(&(0x2001_8000..0x2002_0000), 0x1100).unwrap();
        let (count, slot) = l.stream_slots();
        assert_eq!((slot - 16) % 256, 0);
        assert!(STREAM_PAGE_BUF + count * slot <= l.buf_len);
        assert_eq!((count, slot), (8, 16 + 13 * 256), "{}", l.buf_len);
        // The built-in stub's 4.8 KiB: ten slots of ten pages hold more
        // than eight of twelve (100 pages against 96).
        let l = layout(&(0x2001_8000..0x2002_0000), 0x1340).unwrap();
        assert_eq!(l.stream_slots(), (10, 16 + 10 * 256), "{}", l.buf_len);
        // No other count of 8 to 12 slots of 2 KiB or more holds more.
        for (stub, most) in [(0x1100, 104), (0x1340, 100)] {
            let l = layout(&(0x2001_8000..0x2002_0000), stub).unwrap();
            for n in 8..=12 {
                let pages = ((l.buf_len - STREAM_PAGE_BUF) / n - 16) / 256;
                assert!(n * pages <= most, "{n} slots of {pages} pages");
            }
        }
        // 24 KiB: four slots.
        let l = layout(&(0x2001_A000..0x2002_0000), 0x1100).unwrap();
        let (count, slot) = l.stream_slots();
        assert_eq!(count, 4);
        assert!(slot >= 4 * 1024 && STREAM_PAGE_BUF + count * slot <= l.buf_len);
        // The smallest work area still gets two slots of a page each.
        let l = layout(&(0x2001_F000..0x2002_0000), 0x400).unwrap();
        let (count, slot) = l.stream_slots();
        assert_eq!(count, 2);
        assert!(slot >= 16 + 256 && STREAM_PAGE_BUF + count * slot <= l.buf_len);
    }

    #[test]
    fn invalid_layout_when_the_stub_fills_the_work_area() {
        assert_eq!(layout(&(0x2001_F000..0x2002_0000), 0xC00), None);
        assert_eq!(
            layout(&(0x2001_F000..0x2001_F010), 0),
            None,
            "no room for the blocks"
        );
        assert_eq!(layout(&(0xFFFF_FF00..0xFFFF_FFFF), 0x200), None);
    }

    /// The closed form is exactly the threshold of `layout`: the minimum
    /// fits, one byte less does not, for every start alignment and stub
    /// lengths around the budget.
    #[test]
    fn min_work_area_is_the_smallest_size_layout_accepts() {
        for start in [
            0x2000_0000u32,
            0x2000_0001,
            0x2000_0003,
            0x2001_0004,
            0x2001_C107,
        ] {
            for len in (0..64).chain(STUB_BUDGET - 40..STUB_BUDGET + 40) {
                let min = min_work_area(start, len).unwrap();
                assert!(
                    layout(&(start..start + min), len).is_some(),
                    "{start:#x} len {len:#x} min {min:#x}"
                );
                assert!(
                    layout(&(start..start + min - 1), len).is_none(),
                    "{start:#x} len {len:#x}: {:#x} also fits",
                    min - 1
                );
            }
        }
        assert_eq!(min_work_area(u32::MAX - 4, 16), None);
    }
}
