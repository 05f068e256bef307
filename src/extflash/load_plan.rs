//! The window part of a `load` as a pure plan: from the image's units, what
//! the chip already holds (per CRC block) and its erase kinds and page, to
//! the packed record stream, the ranges left to verify after it, and the
//! byte counts progress reports. No probe I/O: `load.rs` reads the chip's
//! block CRCs, asks for a [`LoadPlan`], then streams and verifies it.
//!
//! Window addresses in, window addresses out, except the packed stream,
//! which carries chip offsets (what the stub's records address).

use std::ops::Range;

use extflash_stub_abi::{self as abi, EraseKind, Timeouts};

use super::error::ExtFlashError;
use super::stream;
use crate::flash::plan::{self, Unit};
use crate::flash::{FlashEvent, FlashKind};

const EXT: FlashKind = FlashKind::External;

/// Bytes of a `load` whose blocks are read before anything else, to tell
/// a reload (they hold the image: the whole range is read, and unchanged
/// blocks are skipped) from a load of new data (nothing more is read
/// first). One 64 KiB block: 12.5 ms of SPI at 42 MHz.
pub(crate) const PROBE: u32 = 64 * 1024;

/// Whether a unit's blocks can be judged by the stub's block CRCs: it
/// starts and ends on `CRC_BLOCK` boundaries. Others are never skipped.
pub(crate) fn block_aligned(u: &Unit) -> bool {
    u.address % abi::CRC_BLOCK == 0 && u.data.len() as u32 % abi::CRC_BLOCK == 0
}

/// The block-aligned units cut after their first `max` bytes: (those, the
/// rest).
pub(crate) fn probe_units(units: &[Unit], max: u32) -> (Vec<Unit>, Vec<Unit>) {
    let block = abi::CRC_BLOCK as usize;
    let mut left = max as usize / block * block;
    let (mut probe, mut rest) = (Vec::new(), Vec::new());
    for u in units.iter().filter(|u| block_aligned(u)) {
        let n = u.data.len().min(left);
        let (a, b) = u.data.split_at(n);
        for (at, data, out) in [(0, a, &mut probe), (n, b, &mut rest)] {
            if !data.is_empty() {
                out.push(Unit {
                    address: u.address + at as u32,
                    data: data.to_vec(),
                });
            }
        }
        left -= n;
    }
    (probe, rest)
}

/// What the chip holds of the image, in window ranges of whole CRC
/// blocks: those that hold it already, and those erased (every word all
/// ones).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BlockState {
    pub unchanged: Vec<Range<u32>>,
    pub erased: Vec<Range<u32>>,
}

impl BlockState {
    /// Judge the blocks starting at `start` whose image bytes are `image`
    /// (whole blocks) by the stub's `CRC_BLOCKS` answer `words`: per block,
    /// its CRC32 and the AND of its words, little-endian.
    pub(crate) fn judge(&mut self, start: u32, image: &[u8], words: &[u8]) {
        let block = abi::CRC_BLOCK as usize;
        for (j, (w, data)) in words.chunks_exact(8).zip(image.chunks(block)).enumerate() {
            let at = start + (j * block) as u32;
            let on_chip = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let and = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
            if on_chip == abi::crc32_update(abi::CRC32_INIT, data) {
                self.unchanged.push(at..at + block as u32);
            }
            if and == u32::MAX {
                self.erased.push(at..at + block as u32);
            }
        }
    }

    /// Add `other`'s ranges.
    pub(crate) fn extend(&mut self, other: BlockState) {
        self.unchanged.extend(other.unchanged);
        self.erased.extend(other.erased);
    }

    /// Sort and merge both lists.
    pub(crate) fn merge(&mut self) {
        plan::merge_ranges(&mut self.unchanged);
        plan::merge_ranges(&mut self.erased);
    }
}

/// What [`LoadPlan::new`] plans from.
pub(crate) struct LoadInput<'a> {
    /// The request's units, window addresses.
    pub units: &'a [Unit],
    /// What the chip holds, as far as it was read.
    pub blocks: &'a BlockState,
    /// The chip's erase instructions, largest first.
    pub kinds: &'a [EraseKind],
    pub page: u32,
    pub timeouts: &'a Timeouts,
    /// The window's base: subtracted to get chip offsets.
    pub window: u32,
    /// Bytes of records per stream chunk (a slot less its trailer).
    pub capacity: u32,
    pub compress: bool,
    /// Part of the image was not read first: erases carry
    /// `ERASE_UNLESS_BLANK` and the stub skips blank sectors itself.
    pub unless_blank: bool,
}

/// A window `load` ready to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadPlan {
    /// Every erase and program in address order, chip offsets.
    pub stream: stream::Stream,
    /// Window ranges of the image no program writes and that are not all
    /// 0xFF, each with its image CRC: checked after the stream, which reads
    /// back every page it programs and verifies the 0xFF runs itself
    /// (`VERIFY_BLANK` records).
    pub verify: Vec<Verify>,
    /// Bytes of the request that already held the image.
    pub skipped: u64,
    /// Bytes the plan erases (before the stub skips blank sectors).
    pub erase_bytes: u64,
    pub program_bytes: u64,
    /// As [`LoadInput::unless_blank`].
    pub unless_blank: bool,
    /// The window's base, as [`LoadInput::window`].
    pub window: u32,
}

/// A window range to check by CRC after the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verify {
    pub address: u32,
    pub len: u32,
    pub crc: u32,
    /// Every byte is 0xFF: the stream checks it (`VERIFY_BLANK`).
    pub blank: bool,
}

impl LoadPlan {
    /// Skip unchanged blocks, plan erases (none over erased ones) and
    /// programs on the chip's sizes, and pack them as one stream: the data
    /// of an erased block flows into the slots while it erases.
    pub(crate) fn new(input: &LoadInput<'_>) -> Result<LoadPlan, ExtFlashError> {
        let sizes: Vec<u32> = input.kinds.iter().map(|k| k.size()).collect();
        let requested: u64 = input.units.iter().map(|u| u.data.len() as u64).sum();
        let changed = plan::without_unchanged(input.units.to_vec(), &input.blocks.unchanged);
        let mut p = plan::plan(&changed, &sizes, input.page, "external flash")?;
        p.erases = plan::skip_erased(
            p.erases,
            &input.blocks.erased,
            &sizes,
            &super::chip::typical_erase_ms,
        );
        let skipped = requested - changed.iter().map(|u| u.data.len() as u64).sum::<u64>();
        let (erase_bytes, program_bytes) = (p.erase_bytes(), p.program_bytes());
        let mut steps = plan::steps(p);
        // The 0xFF runs left erased the stream verifies itself, once
        // their erases are in it; the rest by a CRC call each after it.
        let (blank, verify): (Vec<Verify>, Vec<Verify>) = unprogrammed(&changed, &steps)
            .into_iter()
            .partition(|v| v.blank);
        let blank: Vec<(u32, u32)> = blank
            .iter()
            .map(|v| (v.address - input.window, v.len))
            .collect();
        for step in &mut steps {
            match step {
                plan::Step::Erase(e, first) => {
                    e.address -= input.window;
                    if let Some(p) = first {
                        p.address -= input.window;
                    }
                }
                plan::Step::Program(p) => p.address -= input.window,
            }
        }
        let packing = stream::Packing {
            capacity: input.capacity,
            page: input.page,
            kinds: input.kinds,
            timeouts: input.timeouts,
            compress: input.compress,
            unless_blank: input.unless_blank,
            blank: &blank,
        };
        let stream = stream::pack(&steps, &packing).map_err(ExtFlashError::Stream)?;
        Ok(LoadPlan {
            stream,
            verify,
            skipped,
            erase_bytes,
            program_bytes,
            unless_blank: input.unless_blank,
            window: input.window,
        })
    }

    /// Progress before the stream: the skipped bytes (if any), then the
    /// erase and program totals.
    pub(crate) fn start_events(&self) -> Vec<FlashEvent> {
        let skipped = (self.skipped > 0).then_some(FlashEvent::Skipped {
            flash: EXT,
            bytes: self.skipped,
        });
        let started = FlashEvent::Started {
            flash: EXT,
            erase_bytes: self.erase_bytes,
            program_bytes: self.program_bytes,
        };
        skipped.into_iter().chain([started]).collect()
    }

    /// Progress once the stub consumed chunk `k`, in window addresses.
    /// Erases are not reported when the stub may skip them as blank: that
    /// is known only at the end.
    pub(crate) fn chunk_events(&self, k: usize) -> impl Iterator<Item = FlashEvent> + '_ {
        self.stream.chunks[k]
            .done
            .iter()
            .filter_map(move |d| match *d {
                stream::Done::Erase { .. } if self.unless_blank => None,
                stream::Done::Erase { addr, size } => Some(FlashEvent::Erasing {
                    flash: EXT,
                    address: addr + self.window,
                    size,
                }),
                stream::Done::Program { addr, bytes } => Some(FlashEvent::Programmed {
                    flash: EXT,
                    address: addr + self.window,
                    bytes,
                }),
            })
    }

    /// The window range a stream that failed after releasing chunks up to
    /// `next` may have left differing from the image: the stub releases a
    /// chunk before its last operation's busy wait, so the last one
    /// released may have failed too.
    pub(crate) fn incomplete_span(&self, next: usize) -> Option<Range<u32>> {
        self.stream
            .span_from(next.saturating_sub(1))
            .map(|s| s.start + self.window..s.end + self.window)
    }

    /// Bytes erased, given the sectors the stub found blank and skipped.
    pub(crate) fn erased(&self, blank_sectors: u64) -> u64 {
        self.erase_bytes
            .saturating_sub(blank_sectors * u64::from(abi::CRC_BLOCK))
    }
}

/// The parts of `changed` (window addresses) that no program in `steps`
/// writes, each with the CRC its image bytes give and whether they are
/// all 0xFF.
fn unprogrammed(changed: &[Unit], steps: &[plan::Step]) -> Vec<Verify> {
    let mut programmed: Vec<Range<u32>> = steps
        .iter()
        .filter_map(|s| match s {
            plan::Step::Erase(_, p) => p.as_ref(),
            plan::Step::Program(p) => Some(p),
        })
        .map(|p| p.address..p.address + p.data.len() as u32)
        .collect();
    plan::merge_ranges(&mut programmed);
    let mut out = Vec::new();
    for u in changed {
        let end = u.address + u.data.len() as u32;
        let mut gap = |r: Range<u32>| {
            let from = (r.start - u.address) as usize;
            let bytes = &u.data[from..from + r.len()];
            out.push(Verify {
                address: r.start,
                len: r.len() as u32,
                crc: abi::crc32_update(abi::CRC32_INIT, bytes),
                blank: bytes.iter().all(|&b| b == 0xFF),
            });
        };
        let mut at = u.address;
        for p in programmed
            .iter()
            .filter(|p| p.end > u.address && p.start < end)
        {
            if p.start > at {
                gap(at..p.start);
            }
            at = at.max(p.end);
        }
        if at < end {
            gap(at..end);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    const W: u32 = 0x9000_0000;
    const KINDS: [EraseKind; 3] = [
        EraseKind::Block64K,
        EraseKind::Block32K,
        EraseKind::Sector4K,
    ];

    fn unit(address: u32, data: Vec<u8>) -> Unit {
        Unit { address, data }
    }

    fn plan_of(units: &[Unit], blocks: &BlockState, unless_blank: bool) -> LoadPlan {
        LoadPlan::new(&LoadInput {
            units,
            blocks,
            kinds: &KINDS,
            page: 256,
            timeouts: &Timeouts::W25Q64JV,
            window: W,
            capacity: 4096,
            compress: false,
            unless_blank,
        })
        .unwrap()
    }

    /// The stub's `CRC_BLOCKS` answer for `blocks` as the chip holds them.
    fn answer(blocks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in blocks {
            let and = b.chunks(4).fold(u32::MAX, |a, w| {
                a & u32::from_le_bytes([w[0], w[1], w[2], w[3]])
            });
            out.extend(abi::crc32_update(abi::CRC32_INIT, b).to_le_bytes());
            out.extend(and.to_le_bytes());
        }
        out
    }

    #[test]
    fn only_bytes_no_program_writes_are_left_to_verify_after_the_stream() {
        let prog = |address, data: Vec<u8>| plan::Step::Program(plan::ProgramOp { address, data });
        // A unit with a 0xFF run in the middle programmed around, and one
        // nothing programs at all.
        let mut a = vec![1u8; 0x100];
        a.extend([0xFF; 0x200]);
        a.extend([2u8; 0x100]);
        let changed = [unit(W, a.clone()), unit(W + 0x1_0000, vec![0xFF; 0x40])];
        let steps = [
            prog(W, a[..0x100].to_vec()),
            prog(W + 0x300, a[0x300..].to_vec()),
        ];
        let ff = |n| abi::crc32_update(abi::CRC32_INIT, &vec![0xFF; n]);
        let v = |address, len, crc| Verify {
            address,
            len,
            crc,
            blank: true,
        };
        assert_eq!(
            unprogrammed(&changed, &steps),
            vec![
                v(W + 0x100, 0x200, ff(0x200)),
                v(W + 0x1_0000, 0x40, ff(0x40))
            ]
        );
        // Everything programmed: nothing left.
        assert_eq!(unprogrammed(&changed[..1], &[prog(W, a)]), vec![]);
    }

    #[test]
    fn the_probe_takes_the_first_aligned_blocks_only() {
        let units = [
            unit(W + 3, vec![7; 0x1000]),
            unit(W + 0x1_0000, vec![7; 0x3000]),
            unit(W + 0x2_0000, vec![7; 0x2000]),
        ];
        let spans = |v: &[Unit]| -> Vec<(u32, usize)> {
            v.iter().map(|u| (u.address, u.data.len())).collect()
        };
        let (p, rest) = probe_units(&units, 0x4000);
        assert_eq!(spans(&p), [(W + 0x1_0000, 0x3000), (W + 0x2_0000, 0x1000)]);
        assert_eq!(
            spans(&rest),
            [(W + 0x2_1000, 0x1000)],
            "half of the last unit"
        );
        let (p, rest) = probe_units(&units, 0x5000);
        assert_eq!(p.len(), 2);
        assert!(rest.is_empty(), "everything a scan would read");
    }

    #[test]
    fn blocks_are_judged_by_their_crc_and_their_and() {
        let image = [vec![1u8; 4096], vec![2u8; 4096], vec![3u8; 4096]].concat();
        let erased = vec![0xFF; 4096];
        let other = vec![9u8; 4096];
        // Block 0 holds the image, block 1 is erased, block 2 differs.
        let words = answer(&[&image[..4096], &erased, &other]);
        let mut state = BlockState::default();
        state.judge(W + 0x2000, &image, &words);
        assert_eq!(state.unchanged, [W + 0x2000..W + 0x3000]);
        assert_eq!(state.erased, [W + 0x3000..W + 0x4000]);
        // A second scan adjoining the first merges into one range.
        let mut more = BlockState::default();
        more.judge(W + 0x1000, &image[..4096], &answer(&[&image[..4096]]));
        state.extend(more);
        state.merge();
        assert_eq!(state.unchanged, [W + 0x1000..W + 0x3000]);
    }

    #[test]
    fn unchanged_blocks_are_skipped_and_erased_ones_only_programmed() {
        // 64 KiB of data; the chip holds its first 4 KiB already and the
        // rest erased.
        let data: Vec<u8> = (0..0x1_0000u32).map(|i| (i % 251) as u8).collect();
        let units = [unit(W, data.clone())];
        let blocks = BlockState {
            unchanged: vec![W..W + 0x1000],
            erased: vec![W + 0x1000..W + 0x1_0000],
        };
        let p = plan_of(&units, &blocks, false);
        assert_eq!(p.skipped, 0x1000);
        assert_eq!(p.erase_bytes, 0, "every block left is erased already");
        assert_eq!(p.program_bytes, 0xF000);
        assert!(p.verify.is_empty(), "no 0xFF runs in the image");
        assert_eq!(p.stream.program_bytes, 0xF000);
        // The stream addresses the chip; its progress the window.
        assert_eq!(p.incomplete_span(0), Some(W + 0x1000..W + 0x1_0000));
        assert_eq!(p.stream.span_from(0), Some(0x1000..0x1_0000));
        let first: Vec<FlashEvent> = p.chunk_events(0).collect();
        assert!(matches!(
            first[0],
            FlashEvent::Programmed { address, .. } if address == W + 0x1000
        ));
        let start = p.start_events();
        assert!(matches!(
            start[0],
            FlashEvent::Skipped { bytes: 0x1000, .. }
        ));
        assert!(matches!(
            start[1],
            FlashEvent::Started {
                erase_bytes: 0,
                program_bytes: 0xF000,
                ..
            }
        ));
    }

    #[test]
    fn unread_blocks_are_erased_whole_and_their_erases_reported_only_when_certain() {
        let data = vec![0x5Au8; 0x1_0000];
        let units = [unit(W + 0x1_0000, data)];
        let blocks = BlockState::default();
        let erasing = |p: &LoadPlan| -> Vec<(u32, u32)> {
            (0..p.stream.chunks.len())
                .flat_map(|k| p.chunk_events(k).collect::<Vec<_>>())
                .filter_map(|e| match e {
                    FlashEvent::Erasing { address, size, .. } => Some((address, size)),
                    _ => None,
                })
                .collect()
        };
        let known = plan_of(&units, &blocks, false);
        assert_eq!(known.erase_bytes, 0x1_0000);
        assert_eq!(erasing(&known), [(W + 0x1_0000, 0x1_0000)]);
        assert_eq!(known.start_events().len(), 1, "nothing skipped");
        // The stub may skip a blank erase: reported at the end, by count.
        let unless = plan_of(&units, &blocks, true);
        assert!(erasing(&unless).is_empty());
        assert_eq!(unless.erased(3), 0x1_0000 - 3 * 0x1000);
        assert_ne!(known.stream, unless.stream, "erase records carry the flag");
    }
}
