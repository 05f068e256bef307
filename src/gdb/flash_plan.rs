//! Flash planning: turns GDB's `vFlashErase`/`vFlashWrite` requests into a
//! flash image, with no I/O.
//!
//! Relies on GDB's `load` sequence: every `vFlashErase` (rounded by GDB to
//! the memory map's blocksize) comes before any `vFlashWrite`, writes come in
//! increasing address order without overlap, and one `vFlashDone` ends the
//! batch. We accumulate the whole batch and only commit at `vFlashDone`, so
//! each sector is erased and programmed once.

use std::ops::Range;

use crate::board::{Board, Region};

/// Value of erased NOR flash.
pub const ERASED: u8 = 0xFF;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlashPlanError {
    #[error("erase of {len:#x} bytes at {address:#010x} is not inside internal flash")]
    EraseOutsideFlash { address: u32, len: u32 },
    #[error(
        "erase of {len:#x} bytes at {address:#010x} does not start and end on sector boundaries"
    )]
    EraseNotSectorAligned { address: u32, len: u32 },
    #[error(
        "erase at {address:#010x} arrived after writes had started (GDB sends all erases first)"
    )]
    EraseAfterWrite { address: u32 },
    #[error("write of {len} bytes at {address:#010x} is outside the erased sectors")]
    WriteNotErased { address: u32, len: usize },
    #[error(
        "write at {address:#010x} is below the end of the previous write ({previous_end:#010x})"
    )]
    WriteOutOfOrder { address: u32, previous_end: u64 },
}

/// A contiguous piece of the final image: erased sectors with GDB's data
/// laid over `0xFF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub address: u32,
    pub data: Vec<u8>,
}

/// Accumulated erase and write requests of one `load`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashPlan {
    /// Sector-aligned, sorted, merged.
    erased: Vec<Range<u64>>,
    writes: Vec<(u32, Vec<u8>)>,
}

impl FlashPlan {
    pub fn is_empty(&self) -> bool {
        self.erased.is_empty() && self.writes.is_empty()
    }

    /// Record a `vFlashErase`. It must lie in one flash region of `board`
    /// and start and end on that region's sector boundaries.
    pub fn erase(&mut self, board: &Board, address: u32, len: u32) -> Result<(), FlashPlanError> {
        if !self.writes.is_empty() {
            return Err(FlashPlanError::EraseAfterWrite { address });
        }
        let range = u64::from(address)..u64::from(address) + u64::from(len);
        let region = board
            .flash_region_at(range.start)
            .filter(|r| len > 0 && range.end <= r.range().end)
            .ok_or(FlashPlanError::EraseOutsideFlash { address, len })?;
        if !on_sector_boundary(region, range.start) || !on_sector_boundary(region, range.end) {
            return Err(FlashPlanError::EraseNotSectorAligned { address, len });
        }
        self.erased.push(range);
        merge_ranges(&mut self.erased);
        Ok(())
    }

    /// Record a `vFlashWrite`: it must fall in erased sectors and come after
    /// the previous write.
    pub fn write(&mut self, address: u32, data: &[u8]) -> Result<(), FlashPlanError> {
        let range = u64::from(address)..u64::from(address) + data.len() as u64;
        if let Some((prev, prev_data)) = self.writes.last() {
            let previous_end = u64::from(*prev) + prev_data.len() as u64;
            if range.start < previous_end {
                return Err(FlashPlanError::WriteOutOfOrder {
                    address,
                    previous_end,
                });
            }
        }
        let inside = self
            .erased
            .iter()
            .any(|e| e.start <= range.start && range.end <= e.end);
        if !inside {
            return Err(FlashPlanError::WriteNotErased {
                address,
                len: data.len(),
            });
        }
        if !data.is_empty() {
            self.writes.push((address, data.to_vec()));
        }
        Ok(())
    }

    /// The image to program: one segment per erased range, `0xFF` where GDB
    /// wrote nothing (erased sectors must read back erased).
    pub fn segments(&self) -> Vec<Segment> {
        self.erased
            .iter()
            .map(|e| {
                let mut data = vec![ERASED; (e.end - e.start) as usize];
                for (addr, bytes) in &self.writes {
                    let a = u64::from(*addr);
                    if e.start <= a && a < e.end {
                        let off = (a - e.start) as usize;
                        data[off..off + bytes.len()].copy_from_slice(bytes);
                    }
                }
                Segment {
                    address: e.start as u32,
                    data,
                }
            })
            .collect()
    }

    /// Bytes GDB asked to write.
    pub fn written_bytes(&self) -> usize {
        self.writes.iter().map(|(_, d)| d.len()).sum()
    }
}

fn on_sector_boundary(region: &Region, addr: u64) -> bool {
    addr == region.range().end || region.sectors().any(|s| u64::from(s.start) == addr)
}

/// Sort `ranges` and merge those that overlap or touch: GDB may send erase
/// requests in any order and with repeats.
pub fn merge_ranges<T: Ord + Copy>(ranges: &mut Vec<Range<T>>) {
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<T>> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod tests {
    use super::*;

    type Op<'a> = (&'a str, u32, u32);
    /// Requests and the (address, length) of each resulting segment.
    type Case<'a> = (&'a [Op<'a>], &'a [(u32, usize)]);

    /// Apply ("erase", addr, len) / ("write", addr, len) requests; writes
    /// carry `len` bytes of `addr as u8`.
    fn run(ops: &[Op]) -> Result<FlashPlan, FlashPlanError> {
        let board = Board::builtin();
        let mut plan = FlashPlan::default();
        for (op, addr, len) in ops {
            match *op {
                "erase" => plan.erase(&board, *addr, *len)?,
                "write" => plan.write(*addr, &vec![*addr as u8; *len as usize])?,
                _ => unreachable!(),
            }
        }
        Ok(plan)
    }

    #[test]
    fn merge_ranges_joins_overlapping_and_touching_ranges() {
        let mut r = vec![10u32..20, 0..5, 5..8, 15..30, 40..41];
        merge_ranges(&mut r);
        assert_eq!(r, vec![0..8, 10..30, 40..41]);
    }

    #[test]
    fn valid_requests_build_sector_segments() {
        let cases: &[Case] = &[
            // one 16K sector, partly written
            (
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0000, 0x100),
                ],
                &[(0x0800_0000, 0x4000)],
            ),
            // two adjacent erases merge
            (
                &[
                    ("erase", 0x0800_4000, 0x4000),
                    ("erase", 0x0800_0000, 0x4000),
                ],
                &[(0x0800_0000, 0x8000)],
            ),
            // erase spanning the 16K/64K/128K runs
            (
                &[("erase", 0x0800_C000, 0x14000)],
                &[(0x0800_C000, 0x14000)],
            ),
            // disjoint erases stay apart
            (
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("erase", 0x0802_0000, 0x20000),
                ],
                &[(0x0800_0000, 0x4000), (0x0802_0000, 0x20000)],
            ),
            // whole chip
            (
                &[("erase", 0x0800_0000, 0x80000)],
                &[(0x0800_0000, 0x80000)],
            ),
        ];
        for (ops, want) in cases {
            let plan = run(ops).unwrap_or_else(|e| panic!("{ops:?}: {e}"));
            let got: Vec<_> = plan
                .segments()
                .iter()
                .map(|s| (s.address, s.data.len()))
                .collect();
            assert_eq!(got, *want, "{ops:?}");
        }
    }

    #[test]
    fn invalid_requests_are_rejected_with_their_address() {
        use FlashPlanError::*;
        let cases: &[(&[Op], FlashPlanError)] = &[
            (
                &[("erase", 0x2000_0000, 0x4000)],
                EraseOutsideFlash {
                    address: 0x2000_0000,
                    len: 0x4000,
                },
            ),
            (
                &[("erase", 0x0807_0000, 0x10000)],
                EraseNotSectorAligned {
                    address: 0x0807_0000,
                    len: 0x10000,
                },
            ),
            (
                &[("erase", 0x0806_0000, 0x40000)],
                EraseOutsideFlash {
                    address: 0x0806_0000,
                    len: 0x40000,
                },
            ),
            (
                &[("erase", 0x0800_1000, 0x3000)],
                EraseNotSectorAligned {
                    address: 0x0800_1000,
                    len: 0x3000,
                },
            ),
            (
                &[("erase", 0x0801_0000, 0x4000)],
                EraseNotSectorAligned {
                    address: 0x0801_0000,
                    len: 0x4000,
                },
            ),
            (
                &[("erase", 0x0800_0000, 0)],
                EraseOutsideFlash {
                    address: 0x0800_0000,
                    len: 0,
                },
            ),
            (
                &[("write", 0x0800_0000, 4)],
                WriteNotErased {
                    address: 0x0800_0000,
                    len: 4,
                },
            ),
            (
                &[("erase", 0x0800_0000, 0x4000), ("write", 0x0800_3FFC, 8)],
                WriteNotErased {
                    address: 0x0800_3FFC,
                    len: 8,
                },
            ),
            (
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0100, 4),
                    ("write", 0x0800_0000, 4),
                ],
                WriteOutOfOrder {
                    address: 0x0800_0000,
                    previous_end: 0x0800_0104,
                },
            ),
            (
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0100, 4),
                    ("write", 0x0800_0102, 4),
                ],
                WriteOutOfOrder {
                    address: 0x0800_0102,
                    previous_end: 0x0800_0104,
                },
            ),
            (
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0000, 4),
                    ("erase", 0x0800_4000, 0x4000),
                ],
                EraseAfterWrite {
                    address: 0x0800_4000,
                },
            ),
            (
                &[("erase", 0x9000_0000, 0x1000)],
                EraseOutsideFlash {
                    address: 0x9000_0000,
                    len: 0x1000,
                },
            ),
        ];
        for (ops, want) in cases {
            assert_eq!(run(ops).unwrap_err(), *want, "{ops:?}");
        }
    }

    #[test]
    fn segments_overlay_writes_on_erased_value() {
        let plan = run(&[
            ("erase", 0x0800_0000, 0x8000),
            ("write", 0x0800_0010, 4),
            ("write", 0x0800_4000, 2),
        ])
        .unwrap();
        let seg = &plan.segments()[0];
        assert_eq!(seg.data[0x0F], ERASED);
        assert_eq!(&seg.data[0x10..0x14], &[0x10; 4]);
        assert_eq!(seg.data[0x14], ERASED);
        assert_eq!(&seg.data[0x4000..0x4002], &[0x00; 2]);
        assert_eq!(seg.data[0x4002], ERASED);
        assert_eq!(plan.written_bytes(), 6);
    }

    #[test]
    fn erased_sector_without_writes_is_programmed_erased() {
        let plan = run(&[("erase", 0x0802_0000, 0x20000)]).unwrap();
        let segs = plan.segments();
        assert_eq!(segs.len(), 1);
        assert!(segs[0].data.iter().all(|b| *b == ERASED));
    }
}
