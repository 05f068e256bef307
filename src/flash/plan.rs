//! One flash planner for both flashes: GDB's `vFlashErase`/`vFlashWrite`
//! requests become an image per erase range ([`FlashRequest::units`]), and
//! a unit becomes erase and program operations ([`plan`]). Pure: no I/O.
//!
//! Generic over the erase geometry ([`EraseGeometry`]): the board file's
//! sectors for internal flash, the chip's uniform erase size for the window.
//!
//! Relies only on what every client's `load` guarantees (GDB manual,
//! "Packets": "the stub may delay erase operations until vFlashDone"):
//! `vFlashErase` ranges are erase-aligned (rounded to the memory map's
//! blocksize), every `vFlashWrite` falls in a range erased earlier in the
//! same request, and one `vFlashDone` ends it. Not on the order: GDB sends
//! every erase first and then the writes in address order, LLDB's
//! `target modules load --load` erases a block, writes it, erases the next,
//! section by section. Both describe one image, so the request records the
//! erased ranges and the written bytes in any order, and refuses only what
//! has no single meaning: a write over bytes already written, or an erase
//! over bytes already written (executed in turn it would wipe them). A
//! request is complete at `vFlashDone`, and each erase unit is erased at
//! most once.

use std::ops::Range;

/// Value of erased NOR flash.
pub const ERASED: u8 = 0xFF;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("erase of {len:#x} bytes at {address:#010x} is not inside {flash}")]
    EraseOutside {
        address: u32,
        len: u32,
        flash: &'static str,
    },
    #[error(
        "erase of {len:#x} bytes at {address:#010x} does not start and end on {flash} erase boundaries"
    )]
    EraseNotAligned {
        address: u32,
        len: u32,
        flash: &'static str,
    },
    #[error(
        "erase of {len:#x} bytes at {address:#010x} would wipe {written_len} bytes written at \
         {written:#010x} earlier in this load"
    )]
    EraseOverWrite {
        address: u32,
        len: u32,
        written: u32,
        written_len: usize,
    },
    #[error("write of {len} bytes at {address:#010x} is outside the erased sectors")]
    WriteNotErased { address: u32, len: usize },
    #[error(
        "write of {len} bytes at {address:#010x} overlaps {written_len} bytes written at \
         {written:#010x} earlier in this load"
    )]
    WriteOverWrite {
        address: u32,
        len: usize,
        written: u32,
        written_len: usize,
    },
    #[error("{flash} offers no erase size")]
    NoEraseSize { flash: &'static str },
}

/// Where erases of one flash may start and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseGeometry {
    /// The flash, for messages ("internal flash", "external flash").
    pub flash: &'static str,
    /// Addresses the flash covers.
    pub range: Range<u64>,
    pub boundaries: Boundaries,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boundaries {
    /// Sector start addresses, ascending; the last sector ends at the
    /// range's end (internal flash: 16/64/128 KiB sectors).
    Sectors(Vec<u64>),
    /// Every multiple of this size from the range's start (SPI NOR: the
    /// smallest erase).
    Uniform(u32),
}

impl EraseGeometry {
    /// Whether an erase may start or end at `addr`.
    pub fn is_boundary(&self, addr: u64) -> bool {
        if addr == self.range.end {
            return true;
        }
        match &self.boundaries {
            Boundaries::Sectors(starts) => starts.binary_search(&addr).is_ok(),
            Boundaries::Uniform(size) => {
                addr >= self.range.start && (addr - self.range.start) % u64::from(*size) == 0
            }
        }
    }

    /// The erase unit containing `addr` (for skip-unchanged checks).
    pub fn unit_at(&self, addr: u64) -> Option<Range<u64>> {
        if !self.range.contains(&addr) {
            return None;
        }
        match &self.boundaries {
            Boundaries::Sectors(starts) => {
                let i = starts.partition_point(|s| *s <= addr).checked_sub(1)?;
                let end = starts.get(i + 1).copied().unwrap_or(self.range.end);
                Some(starts[i]..end)
            }
            Boundaries::Uniform(size) => {
                let size = u64::from(*size);
                let start = self.range.start + (addr - self.range.start) / size * size;
                Some(start..(start + size).min(self.range.end))
            }
        }
    }
}

/// What GDB asked for in one `load`, for one flash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashRequest {
    /// Sorted, merged, on erase boundaries.
    erased: Vec<Range<u64>>,
    /// In address order, non-overlapping, whatever order they came in;
    /// contiguous writes are joined.
    writes: Vec<(u32, Vec<u8>)>,
}

/// One erased range with the bytes it must hold afterwards (0xFF where GDB
/// wrote nothing: erased sectors must read back erased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub address: u32,
    pub data: Vec<u8>,
}

impl FlashRequest {
    pub fn is_empty(&self) -> bool {
        self.erased.is_empty() && self.writes.is_empty()
    }

    /// Record a `vFlashErase`: it must lie in one of `flashes`, start and
    /// end on its erase boundaries, and not cover bytes already written.
    /// Erasing a range again is harmless (merged).
    pub fn erase(
        &mut self,
        flashes: &[EraseGeometry],
        address: u32,
        len: u32,
    ) -> Result<(), PlanError> {
        let range = u64::from(address)..u64::from(address) + u64::from(len);
        let flash = flashes
            .iter()
            .find(|g| g.range.contains(&range.start))
            .ok_or(PlanError::EraseOutside {
                address,
                len,
                flash: flashes.first().map_or("flash", |g| g.flash),
            })?;
        if len == 0 || range.end > flash.range.end {
            return Err(PlanError::EraseOutside {
                address,
                len,
                flash: flash.flash,
            });
        }
        if !flash.is_boundary(range.start) || !flash.is_boundary(range.end) {
            return Err(PlanError::EraseNotAligned {
                address,
                len,
                flash: flash.flash,
            });
        }
        if let Some((written, data)) = self.written_in(&range) {
            return Err(PlanError::EraseOverWrite {
                address,
                len,
                written,
                written_len: data.len(),
            });
        }
        self.erased.push(range);
        merge_ranges(&mut self.erased);
        Ok(())
    }

    /// The first recorded write overlapping `range`.
    fn written_in(&self, range: &Range<u64>) -> Option<(u32, &[u8])> {
        self.writes
            .iter()
            .find(|(a, d)| {
                let a = u64::from(*a);
                a < range.end && range.start < a + d.len() as u64
            })
            .map(|(a, d)| (*a, d.as_slice()))
    }

    /// Record a `vFlashWrite`: it must fall in erased ranges and not
    /// overlap an earlier write; it may come in any address order.
    pub fn write(&mut self, address: u32, data: &[u8]) -> Result<(), PlanError> {
        let range = u64::from(address)..u64::from(address) + data.len() as u64;
        if let Some((written, d)) = self.written_in(&range) {
            return Err(PlanError::WriteOverWrite {
                address,
                len: data.len(),
                written,
                written_len: d.len(),
            });
        }
        let inside = self
            .erased
            .iter()
            .any(|e| e.start <= range.start && range.end <= e.end);
        if !inside {
            return Err(PlanError::WriteNotErased {
                address,
                len: data.len(),
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        let at = self.writes.partition_point(|(a, _)| *a < address);
        self.writes.insert(at, (address, data.to_vec()));
        // Join with the neighbours it touches (no overlap, checked above).
        if at + 1 < self.writes.len() && u64::from(self.writes[at + 1].0) == range.end {
            let (_, next) = self.writes.remove(at + 1);
            self.writes[at].1.extend_from_slice(&next);
        }
        if at > 0 {
            let (prev, prev_data) = &self.writes[at - 1];
            if u64::from(*prev) + prev_data.len() as u64 == range.start {
                let (_, mine) = self.writes.remove(at);
                self.writes[at - 1].1.extend_from_slice(&mine);
            }
        }
        Ok(())
    }

    /// The image per erased range.
    pub fn units(&self) -> Vec<Unit> {
        self.erased
            .iter()
            .map(|e| {
                let mut data = vec![ERASED; (e.end - e.start) as usize];
                for (addr, bytes) in &self.writes {
                    let a = u64::from(*addr);
                    if e.start <= a && a < e.end {
                        let at = (a - e.start) as usize;
                        data[at..at + bytes.len()].copy_from_slice(bytes);
                    }
                }
                Unit {
                    address: e.start as u32,
                    data,
                }
            })
            .collect()
    }
}

/// `units` without the ranges in `unchanged` (ranges found to hold the
/// image already, e.g. by an on-target CRC): what is left is split where a
/// range was cut out. `unchanged` must be sorted and non-overlapping.
pub fn without_unchanged(units: Vec<Unit>, unchanged: &[Range<u32>]) -> Vec<Unit> {
    let mut out = Vec::new();
    for u in units {
        let end = u.address as u64 + u.data.len() as u64;
        let mut at = u64::from(u.address);
        for r in unchanged {
            let (rs, re) = (u64::from(r.start).max(at), u64::from(r.end).min(end));
            if rs >= re {
                continue;
            }
            if at < rs {
                let a = (at - u64::from(u.address)) as usize;
                let b = (rs - u64::from(u.address)) as usize;
                out.push(Unit {
                    address: at as u32,
                    data: u.data[a..b].to_vec(),
                });
            }
            at = re;
        }
        if at < end {
            let a = (at - u64::from(u.address)) as usize;
            out.push(Unit {
                address: at as u32,
                data: u.data[a..].to_vec(),
            });
        }
    }
    out
}

/// One erase of `size` bytes at `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraseOp {
    pub address: u32,
    pub size: u32,
}

/// One program of `data` at `address` (the executor splits at pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOp {
    pub address: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub erases: Vec<EraseOp>,
    pub programs: Vec<ProgramOp>,
}

impl Plan {
    pub fn erase_bytes(&self) -> u64 {
        self.erases.iter().map(|e| u64::from(e.size)).sum()
    }

    pub fn program_bytes(&self) -> u64 {
        self.programs.iter().map(|p| p.data.len() as u64).sum()
    }
}

/// Erase and program operations for `units` on a flash with several
/// erase sizes (`sizes`, largest first, all powers of two): each unit is
/// erased with the largest block that is aligned and fits, and only its
/// non-0xFF stretches are programmed (erased flash already reads 0xFF).
/// Runs of 0xFF shorter than `page` stay inside a stretch: splitting there
/// costs more than programming them.
pub fn plan(
    units: &[Unit],
    sizes: &[u32],
    page: u32,
    flash: &'static str,
) -> Result<Plan, PlanError> {
    if sizes.is_empty() {
        return Err(PlanError::NoEraseSize { flash });
    }
    let mut out = Plan::default();
    for u in units {
        let end = u64::from(u.address) + u.data.len() as u64;
        let mut at = u64::from(u.address);
        while at < end {
            let size = sizes
                .iter()
                .copied()
                .find(|s| at % u64::from(*s) == 0 && at + u64::from(*s) <= end)
                .ok_or(PlanError::EraseNotAligned {
                    address: at as u32,
                    len: (end - at) as u32,
                    flash,
                })?;
            out.erases.push(EraseOp {
                address: at as u32,
                size,
            });
            at += u64::from(size);
        }
        out.programs.extend(programmed_runs(u, page as usize));
    }
    Ok(out)
}

/// One step of a plan's execution, in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Erase, then (when set) program what follows in the erased range:
    /// the executor streams that data while the chip erases.
    Erase(EraseOp, Option<ProgramOp>),
    Program(ProgramOp),
}

/// The plan as steps in address order: each erase right before the
/// programs inside its range (programs are split at erase boundaries), so
/// data for a block can stream while it erases. Relies on `plan`'s
/// erases not overlapping.
pub fn steps(plan: Plan) -> Vec<Step> {
    let mut erases = plan.erases;
    erases.sort_by_key(|e| e.address);
    // Program pieces cut at every erase boundary.
    let cuts: Vec<u64> = erases
        .iter()
        .flat_map(|e| {
            [
                u64::from(e.address),
                u64::from(e.address) + u64::from(e.size),
            ]
        })
        .collect();
    let mut pieces: Vec<ProgramOp> = Vec::new();
    for p in plan.programs {
        let (mut at, end) = (
            u64::from(p.address),
            u64::from(p.address) + p.data.len() as u64,
        );
        let mut from = 0usize;
        while at < end {
            let next = cuts
                .iter()
                .copied()
                .filter(|&c| c > at && c < end)
                .min()
                .unwrap_or(end);
            let n = (next - at) as usize;
            pieces.push(ProgramOp {
                address: at as u32,
                data: p.data[from..from + n].to_vec(),
            });
            from += n;
            at = next;
        }
    }
    pieces.sort_by_key(|p| p.address);
    let mut out = Vec::new();
    let mut pieces = pieces.into_iter().peekable();
    for e in erases {
        let start = u64::from(e.address);
        let end = start + u64::from(e.size);
        while let Some(p) = pieces.next_if(|p| u64::from(p.address) < start) {
            out.push(Step::Program(p));
        }
        let first = pieces.next_if(|p| u64::from(p.address) < end);
        out.push(Step::Erase(e, first));
        while let Some(p) = pieces.next_if(|p| u64::from(p.address) < end) {
            out.push(Step::Program(p));
        }
    }
    out.extend(pieces.map(Step::Program));
    out
}

/// Replace erases that cover ranges known to be erased already (`erased`,
/// sorted and merged) by the cheapest set of smaller aligned erases, or
/// none: per planned erase, either the erase itself or, recursively, the
/// best choice for each of its parts at the next smaller size in `sizes`,
/// by `cost` (the typical time of an erase of that size).
pub fn skip_erased(
    erases: Vec<EraseOp>,
    erased: &[Range<u32>],
    sizes: &[u32],
    cost: &dyn Fn(u32) -> u64,
) -> Vec<EraseOp> {
    let covered = |at: u32, size: u32| {
        let end = u64::from(at) + u64::from(size);
        erased
            .iter()
            .any(|r| r.start <= at && end <= u64::from(r.end))
    };
    fn best(
        at: u32,
        size: u32,
        sizes: &[u32],
        covered: &dyn Fn(u32, u32) -> bool,
        cost: &dyn Fn(u32) -> u64,
    ) -> (u64, Vec<EraseOp>) {
        if covered(at, size) {
            return (0, Vec::new());
        }
        let full = (cost(size), vec![EraseOp { address: at, size }]);
        let Some(part) = sizes
            .iter()
            .copied()
            .filter(|s| *s < size && size % *s == 0)
            .max()
        else {
            return full;
        };
        let mut parts = (0u64, Vec::new());
        for i in 0..size / part {
            let (c, ops) = best(at + i * part, part, sizes, covered, cost);
            parts.0 += c;
            parts.1.extend(ops);
        }
        if parts.0 < full.0 {
            parts
        } else {
            full
        }
    }
    erases
        .into_iter()
        .flat_map(|e| best(e.address, e.size, sizes, &covered, cost).1)
        .collect()
}

/// Stretches of a unit that are not all 0xFF, joined across 0xFF gaps
/// shorter than `gap`.
fn programmed_runs(u: &Unit, gap: usize) -> Vec<ProgramOp> {
    let mut out = Vec::new();
    let d = &u.data;
    let mut i = 0;
    while i < d.len() {
        if d[i] == ERASED {
            i += 1;
            continue;
        }
        let start = i;
        let mut last = i;
        while i < d.len() {
            if d[i] != ERASED {
                last = i;
            } else if i - last > gap {
                break;
            }
            i += 1;
        }
        out.push(ProgramOp {
            address: u.address + start as u32,
            data: d[start..=last].to_vec(),
        });
    }
    out
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

    const INTERNAL: &str = "internal flash";
    const EXTERNAL: &str = "external flash";
    const WINDOW: u32 = 0x9000_0000;
    const SIZE: u32 = 8 << 20;

    /// The F407VE's 512 KiB: 4 × 16K, 64K, 3 × 128K.
    fn internal() -> Vec<EraseGeometry> {
        let mut starts = vec![];
        let mut at = 0x0800_0000u64;
        for size in [
            0x4000, 0x4000, 0x4000, 0x4000, 0x10000, 0x20000, 0x20000, 0x20000,
        ] {
            starts.push(at);
            at += size;
        }
        vec![EraseGeometry {
            flash: INTERNAL,
            range: 0x0800_0000..at,
            boundaries: Boundaries::Sectors(starts),
        }]
    }

    fn window() -> Vec<EraseGeometry> {
        vec![EraseGeometry {
            flash: EXTERNAL,
            range: u64::from(WINDOW)..u64::from(WINDOW + SIZE),
            boundaries: Boundaries::Uniform(0x1000),
        }]
    }

    /// ("erase" | "write", address, length); writes carry `addr as u8`.
    type Op<'a> = (&'a str, u32, u32);

    fn run(flash: &[EraseGeometry], ops: &[Op]) -> Result<FlashRequest, PlanError> {
        let mut r = FlashRequest::default();
        for (op, addr, len) in ops {
            match *op {
                "erase" => r.erase(flash, *addr, *len)?,
                "write" => r.write(*addr, &vec![*addr as u8; *len as usize])?,
                _ => unreachable!(),
            }
        }
        Ok(r)
    }

    fn extents(r: &FlashRequest) -> Vec<(u32, usize)> {
        r.units()
            .iter()
            .map(|u| (u.address, u.data.len()))
            .collect()
    }

    #[test]
    fn merge_ranges_joins_overlapping_and_touching_ranges() {
        let mut r = vec![10u32..20, 0..5, 5..8, 15..30, 40..41];
        merge_ranges(&mut r);
        assert_eq!(r, vec![0..8, 10..30, 40..41]);
    }

    #[test]
    fn valid_erases_build_units_on_both_geometries() {
        type Case<'a> = (Vec<EraseGeometry>, &'a [Op<'a>], &'a [(u32, usize)]);
        let cases: &[Case] = &[
            // one 16K sector, partly written
            (
                internal(),
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0000, 0x100),
                ],
                &[(0x0800_0000, 0x4000)],
            ),
            // adjacent erases in any order merge
            (
                internal(),
                &[
                    ("erase", 0x0800_4000, 0x4000),
                    ("erase", 0x0800_0000, 0x4000),
                ],
                &[(0x0800_0000, 0x8000)],
            ),
            // spanning the 16K/64K/128K runs
            (
                internal(),
                &[("erase", 0x0800_C000, 0x14000)],
                &[(0x0800_C000, 0x14000)],
            ),
            // disjoint erases stay apart
            (
                internal(),
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("erase", 0x0802_0000, 0x20000),
                ],
                &[(0x0800_0000, 0x4000), (0x0802_0000, 0x20000)],
            ),
            (
                internal(),
                &[("erase", 0x0800_0000, 0x80000)],
                &[(0x0800_0000, 0x80000)],
            ),
            // the window: the test firmware's two asset sections
            (
                window(),
                &[
                    ("erase", WINDOW, 0x2000),
                    ("erase", WINDOW + 0xF000, 0x12000),
                ],
                &[(WINDOW, 0x2000), (WINDOW + 0xF000, 0x12000)],
            ),
            (
                window(),
                &[("erase", WINDOW + SIZE - 0x1000, 0x1000)],
                &[(WINDOW + SIZE - 0x1000, 0x1000)],
            ),
        ];
        for (flash, ops, want) in cases {
            let r = run(flash, ops).unwrap_or_else(|e| panic!("{ops:?}: {e}"));
            assert_eq!(extents(&r), *want, "{ops:?}");
        }
    }

    #[test]
    fn invalid_requests_are_rejected_with_their_address() {
        use PlanError::*;
        type Case<'a> = (Vec<EraseGeometry>, &'a [Op<'a>], PlanError);
        let outside = |address, len, flash| EraseOutside {
            address,
            len,
            flash,
        };
        let unaligned = |address, len, flash| EraseNotAligned {
            address,
            len,
            flash,
        };
        let cases: &[Case] = &[
            (
                internal(),
                &[("erase", 0x2000_0000, 0x4000)],
                outside(0x2000_0000, 0x4000, INTERNAL),
            ),
            (
                internal(),
                &[("erase", 0x0807_0000, 0x10000)],
                unaligned(0x0807_0000, 0x10000, INTERNAL),
            ),
            (
                internal(),
                &[("erase", 0x0806_0000, 0x40000)],
                outside(0x0806_0000, 0x40000, INTERNAL),
            ),
            (
                internal(),
                &[("erase", 0x0800_1000, 0x3000)],
                unaligned(0x0800_1000, 0x3000, INTERNAL),
            ),
            (
                internal(),
                &[("erase", 0x0801_0000, 0x4000)],
                unaligned(0x0801_0000, 0x4000, INTERNAL),
            ),
            (
                internal(),
                &[("erase", 0x0800_0000, 0)],
                outside(0x0800_0000, 0, INTERNAL),
            ),
            (
                internal(),
                &[("erase", WINDOW, 0x1000)],
                outside(WINDOW, 0x1000, INTERNAL),
            ),
            (
                window(),
                &[("erase", WINDOW + 0x800, 0x1000)],
                unaligned(WINDOW + 0x800, 0x1000, EXTERNAL),
            ),
            (
                window(),
                &[("erase", WINDOW + SIZE - 0x1000, 0x2000)],
                outside(WINDOW + SIZE - 0x1000, 0x2000, EXTERNAL),
            ),
            (
                internal(),
                &[("write", 0x0800_0000, 4)],
                WriteNotErased {
                    address: 0x0800_0000,
                    len: 4,
                },
            ),
            (
                window(),
                &[("erase", WINDOW, 0x1000), ("write", WINDOW + 0xFFE, 4)],
                WriteNotErased {
                    address: WINDOW + 0xFFE,
                    len: 4,
                },
            ),
            // a write over the end of an earlier one
            (
                internal(),
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0100, 4),
                    ("write", 0x0800_0102, 4),
                ],
                WriteOverWrite {
                    address: 0x0800_0102,
                    len: 4,
                    written: 0x0800_0100,
                    written_len: 4,
                },
            ),
            // ... and over the start of a later one (out of order)
            (
                window(),
                &[
                    ("erase", WINDOW, 0x1000),
                    ("write", WINDOW + 0x10, 4),
                    ("write", WINDOW + 8, 9),
                ],
                WriteOverWrite {
                    address: WINDOW + 8,
                    len: 9,
                    written: WINDOW + 0x10,
                    written_len: 4,
                },
            ),
            // the same bytes twice (joined writes count as one)
            (
                window(),
                &[
                    ("erase", WINDOW, 0x1000),
                    ("write", WINDOW, 0x10),
                    ("write", WINDOW + 0x10, 0x10),
                    ("write", WINDOW + 0x18, 1),
                ],
                WriteOverWrite {
                    address: WINDOW + 0x18,
                    len: 1,
                    written: WINDOW,
                    written_len: 0x20,
                },
            ),
            // erasing a sector again after writing into it would wipe them
            (
                internal(),
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0000, 0x40),
                    ("erase", 0x0800_0000, 0x8000),
                ],
                EraseOverWrite {
                    address: 0x0800_0000,
                    len: 0x8000,
                    written: 0x0800_0000,
                    written_len: 0x40,
                },
            ),
            (
                window(),
                &[
                    ("erase", WINDOW + 0x1000, 0x1000),
                    ("write", WINDOW + 0x1FFF, 1),
                    ("erase", WINDOW, 0x2000),
                ],
                EraseOverWrite {
                    address: WINDOW,
                    len: 0x2000,
                    written: WINDOW + 0x1FFF,
                    written_len: 1,
                },
            ),
            // a write before its erase
            (
                window(),
                &[
                    ("write", WINDOW + 0x1000, 4),
                    ("erase", WINDOW + 0x1000, 0x1000),
                ],
                WriteNotErased {
                    address: WINDOW + 0x1000,
                    len: 4,
                },
            ),
        ];
        for (flash, ops, want) in cases {
            assert_eq!(run(flash, ops).unwrap_err(), *want, "{ops:?}");
        }
    }

    /// The same image whatever order the erases and writes come in, as
    /// long as each write follows its erase and nothing overlaps: GDB's
    /// order (erases, then writes ascending), LLDB's (erase a block, write
    /// it, erase the next), descending writes, a block erased twice.
    #[test]
    fn any_order_of_non_overlapping_erases_and_writes_gives_the_same_units() {
        type Case<'a> = (&'a str, Vec<EraseGeometry>, &'a [Op<'a>]);
        let gdb_internal: &[Op] = &[
            ("erase", 0x0800_0000, 0x4000),
            ("erase", 0x0800_4000, 0x4000),
            ("erase", 0x0802_0000, 0x20000),
            ("write", 0x0800_0000, 0x40),
            ("write", 0x0800_0040, 0x3FC0),
            ("write", 0x0800_4000, 0x10),
            ("write", 0x0802_0000, 0x100),
        ];
        let gdb_window: &[Op] = &[
            ("erase", WINDOW, 0x2000),
            ("erase", WINDOW + 0xF000, 0x12000),
            ("write", WINDOW + 3, 0x1003),
            ("write", WINDOW + 0xF123, 0x11171),
        ];
        let cases: &[Case] = &[
            (
                "LLDB: erase, write, erase, write",
                internal(),
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("write", 0x0800_0000, 0x40),
                    ("write", 0x0800_0040, 0x3FC0),
                    ("erase", 0x0800_4000, 0x4000),
                    ("write", 0x0800_4000, 0x10),
                    ("erase", 0x0802_0000, 0x20000),
                    ("write", 0x0802_0000, 0x100),
                ],
            ),
            (
                "descending writes",
                internal(),
                &[
                    ("erase", 0x0802_0000, 0x20000),
                    ("erase", 0x0800_0000, 0x8000),
                    ("write", 0x0802_0000, 0x100),
                    ("write", 0x0800_4000, 0x10),
                    ("write", 0x0800_0040, 0x3FC0),
                    ("write", 0x0800_0000, 0x40),
                ],
            ),
            (
                "an unwritten block erased twice",
                internal(),
                &[
                    ("erase", 0x0800_0000, 0x4000),
                    ("erase", 0x0802_0000, 0x20000),
                    ("write", 0x0800_0000, 0x40),
                    ("erase", 0x0802_0000, 0x20000),
                    ("erase", 0x0800_4000, 0x4000),
                    ("write", 0x0800_4000, 0x10),
                    ("write", 0x0800_0040, 0x3FC0),
                    ("write", 0x0802_0000, 0x100),
                ],
            ),
            (
                "LLDB in the window: section by section",
                window(),
                &[
                    ("erase", WINDOW, 0x2000),
                    ("write", WINDOW + 3, 0x1003),
                    ("erase", WINDOW + 0xF000, 0x12000),
                    ("write", WINDOW + 0xF123, 0x11171),
                ],
            ),
            (
                "window: second section first, in pieces",
                window(),
                &[
                    ("erase", WINDOW + 0xF000, 0x12000),
                    ("write", WINDOW + 0x10000, 0x10294),
                    ("write", WINDOW + 0xF123, 0xEDD),
                    ("erase", WINDOW, 0x2000),
                    ("write", WINDOW + 0x803, 0x803),
                    ("write", WINDOW + 3, 0x800),
                ],
            ),
        ];
        // Each byte carries its own address, so split writes match whole ones.
        let run = |flash: &[EraseGeometry], ops: &[Op]| -> Result<FlashRequest, PlanError> {
            let mut r = FlashRequest::default();
            for (op, addr, len) in ops {
                match *op {
                    "erase" => r.erase(flash, *addr, *len)?,
                    _ => {
                        let data: Vec<u8> = (*addr..*addr + *len)
                            .map(|a| (a ^ (a >> 8) ^ (a >> 16)) as u8)
                            .collect();
                        r.write(*addr, &data)?
                    }
                }
            }
            Ok(r)
        };
        let want_internal = run(&internal(), gdb_internal).unwrap();
        let want_window = run(&window(), gdb_window).unwrap();
        for (name, flash, ops) in cases {
            let got = run(flash, ops).unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = if flash == &window() {
                &want_window
            } else {
                &want_internal
            };
            assert_eq!(extents(&got), extents(want), "{name}");
            assert!(got.units() == want.units(), "{name}: different bytes");
            let written = |r: &FlashRequest| r.writes.iter().map(|(_, d)| d.len()).sum::<usize>();
            assert_eq!(written(&got), written(want), "{name}");
        }
    }

    #[test]
    fn units_overlay_writes_on_the_erased_value() {
        let r = run(
            &internal(),
            &[
                ("erase", 0x0800_0000, 0x8000),
                ("write", 0x0800_0010, 4),
                ("write", 0x0800_4000, 2),
            ],
        )
        .unwrap();
        let u = &r.units()[0];
        assert_eq!(u.data[0x0F], ERASED);
        assert_eq!(&u.data[0x10..0x14], &[0x10; 4]);
        assert_eq!(u.data[0x14], ERASED);
        assert_eq!(&u.data[0x4000..0x4002], &[0x00; 2]);
        assert_eq!(u.data[0x4002], ERASED);
    }

    #[test]
    fn erases_use_the_largest_block_that_fits() {
        type Case<'a> = (&'a [Op<'a>], &'a [(u32, u32)]);
        const S4: u32 = 0x1000;
        const S32: u32 = 0x8000;
        const S64: u32 = 0x10000;
        let cases: &[Case] = &[
            (&[("erase", WINDOW, S4)], &[(WINDOW, S4)]),
            (&[("erase", WINDOW, S64)], &[(WINDOW, S64)]),
            (
                &[("erase", WINDOW + 0x8000, S32)],
                &[(WINDOW + 0x8000, S32)],
            ),
            // 4K up to the 32K boundary, 32K, 64K, then a 4K tail.
            (
                &[("erase", WINDOW + 0x7000, 0x1A000)],
                &[
                    (WINDOW + 0x7000, S4),
                    (WINDOW + 0x8000, S32),
                    (WINDOW + 0x10000, S64),
                    (WINDOW + 0x20000, S4),
                ],
            ),
            // adjacent erases merge into one 64K block
            (
                &[
                    ("erase", WINDOW + 0x10000, S32),
                    ("erase", WINDOW + 0x18000, S32),
                ],
                &[(WINDOW + 0x10000, S64)],
            ),
        ];
        for (ops, want) in cases {
            let r = run(&window(), ops).unwrap();
            let p = plan(&r.units(), &[S64, S32, S4], 256, EXTERNAL).unwrap();
            let got: Vec<_> = p.erases.iter().map(|e| (e.address, e.size)).collect();
            assert_eq!(got, *want, "{ops:?}");
        }
        let r = run(&window(), &[("erase", WINDOW, S64)]).unwrap();
        assert_eq!(
            plan(&r.units(), &[S4], 256, EXTERNAL).unwrap().erases.len(),
            16
        );
        assert_eq!(
            plan(&r.units(), &[], 256, EXTERNAL),
            Err(PlanError::NoEraseSize { flash: EXTERNAL })
        );
    }

    #[test]
    fn programs_join_contiguous_writes_and_skip_long_ff_runs() {
        let r = run(
            &window(),
            &[
                ("erase", WINDOW, 0x2000),
                ("write", WINDOW + 3, 0x800),
                ("write", WINDOW + 0x803, 0x803),
                ("write", WINDOW + 0x1F00, 0x10),
            ],
        )
        .unwrap();
        let p = plan(&r.units(), &[0x1000], 256, EXTERNAL).unwrap();
        let got: Vec<_> = p
            .programs
            .iter()
            .map(|p| (p.address - WINDOW, p.data.len()))
            .collect();
        assert_eq!(got, [(3, 0x1003), (0x1F00, 0x10)]);
        assert_eq!((p.program_bytes(), p.erase_bytes()), (0x1013, 0x2000));

        let mut data = vec![1u8; 0x800];
        data[0x100..0x600].fill(ERASED);
        let unit = Unit {
            address: WINDOW,
            data,
        };
        let runs: Vec<_> = programmed_runs(&unit, 256)
            .iter()
            .map(|p| (p.address - WINDOW, p.data.len()))
            .collect();
        assert_eq!(runs, [(0, 0x100), (0x600, 0x200)]);
        let erased = Unit {
            address: WINDOW,
            data: vec![ERASED; 0x1000],
        };
        assert!(
            programmed_runs(&erased, 256).is_empty(),
            "erase-only programs nothing"
        );
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)]
    fn unchanged_ranges_are_cut_out_of_units() {
        let unit = |address: u32, len: usize| Unit {
            address,
            data: (0..len).map(|i| (address as usize + i) as u8).collect(),
        };
        type Case = (Vec<Unit>, Vec<Range<u32>>, Vec<(u32, usize)>);
        let cases: Vec<Case> = vec![
            // nothing unchanged: all stays
            (vec![unit(0x1000, 0x3000)], vec![], vec![(0x1000, 0x3000)]),
            // everything unchanged: nothing to do
            (vec![unit(0x1000, 0x3000)], vec![0x1000..0x4000], vec![]),
            // one block in the middle
            (
                vec![unit(0x1000, 0x3000)],
                vec![0x2000..0x3000],
                vec![(0x1000, 0x1000), (0x3000, 0x1000)],
            ),
            // ranges spanning two units and outside any
            (
                vec![unit(0, 0x2000), unit(0x8000, 0x2000)],
                vec![0x1000..0x9000, 0xA000..0xB000],
                vec![(0, 0x1000), (0x9000, 0x1000)],
            ),
        ];
        for (units, unchanged, want) in cases {
            let got = without_unchanged(units.clone(), &unchanged);
            let extents: Vec<_> = got.iter().map(|u| (u.address, u.data.len())).collect();
            assert_eq!(extents, want, "{unchanged:x?}");
            for g in &got {
                let src = units.iter().find(|u| {
                    u.address <= g.address
                        && g.address as usize + g.data.len() <= u.address as usize + u.data.len()
                });
                let src = src.expect("cut from a unit");
                let at = (g.address - src.address) as usize;
                assert_eq!(
                    g.data,
                    src.data[at..at + g.data.len()],
                    "data kept in place"
                );
            }
        }
    }

    #[test]
    fn unit_at_finds_the_sector_or_block_around_an_address() {
        let g = &internal()[0];
        assert_eq!(g.unit_at(0x0800_4001), Some(0x0800_4000..0x0800_8000));
        assert_eq!(g.unit_at(0x0807_FFFF), Some(0x0806_0000..0x0808_0000));
        assert_eq!(g.unit_at(0x0808_0000), None);
        let w = &window()[0];
        assert_eq!(
            w.unit_at(u64::from(WINDOW) + 0x1234),
            Some(u64::from(WINDOW) + 0x1000..u64::from(WINDOW) + 0x2000)
        );
    }

    #[test]
    fn erased_blocks_are_not_erased_again_and_partial_ones_pick_the_cheapest_erases() {
        let sizes = [0x1_0000, 0x8000, 0x1000];
        let cost = |size: u32| match size {
            0x1000 => 45,
            0x8000 => 120,
            _ => 150,
        };
        let erases = vec![
            EraseOp {
                address: 0,
                size: 0x1_0000,
            },
            EraseOp {
                address: 0x1_0000,
                size: 0x1_0000,
            },
            EraseOp {
                address: 0x2_0000,
                size: 0x1_0000,
            },
        ];
        // Block 0 erased; block 1 erased but one 4K sector; block 2 only
        // one 4K sector erased (erasing it whole is cheaper than 15 x 4K).
        let erased = vec![0..0x1_0000, 0x1_0000..0x1_F000, 0x2_0000..0x2_1000];
        let out = skip_erased(erases, &erased, &sizes, &cost);
        assert_eq!(
            out,
            vec![
                EraseOp {
                    address: 0x1_F000,
                    size: 0x1000
                },
                EraseOp {
                    address: 0x2_0000,
                    size: 0x1_0000
                },
            ]
        );
        // Nothing known erased: the plan is unchanged.
        let same = vec![EraseOp {
            address: 0,
            size: 0x1_0000,
        }];
        assert_eq!(skip_erased(same.clone(), &[], &sizes, &cost), same);
    }

    #[test]
    fn steps_put_each_erase_before_the_programs_in_its_range_split_at_its_edges() {
        let plan = Plan {
            erases: vec![
                EraseOp {
                    address: 0x2_0000,
                    size: 0x1_0000,
                },
                EraseOp {
                    address: 0x1_0000,
                    size: 0x1_0000,
                },
            ],
            programs: vec![
                ProgramOp {
                    address: 0x8000,
                    data: vec![1; 0x1_0000],
                },
                ProgramOp {
                    address: 0x1_8000,
                    data: vec![2; 0x1_0000],
                },
                ProgramOp {
                    address: 0x4_0000,
                    data: vec![3; 0x10],
                },
            ],
        };
        let got: Vec<(char, u32, usize)> = steps(plan)
            .into_iter()
            .flat_map(|s| match s {
                Step::Erase(e, first) => {
                    let mut v = vec![('E', e.address, e.size as usize)];
                    v.extend(first.map(|p| ('f', p.address, p.data.len())));
                    v
                }
                Step::Program(p) => vec![('P', p.address, p.data.len())],
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ('P', 0x8000, 0x8000),
                ('E', 0x1_0000, 0x1_0000),
                ('f', 0x1_0000, 0x8000),
                ('P', 0x1_8000, 0x8000),
                ('E', 0x2_0000, 0x1_0000),
                ('f', 0x2_0000, 0x8000),
                ('P', 0x4_0000, 0x10),
            ]
        );
    }
}
