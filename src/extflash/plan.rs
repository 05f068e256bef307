//! Pure planning of GDB's `vFlashErase`/`vFlashWrite` requests for the
//! external-flash window into chip erase operations and program ranges.
//!
//! Relies on GDB's `load` sequence (GDB manual, "Packets"; gdbstub
//! `target::ext::flash`): every `vFlashErase` (rounded by GDB to the
//! memory map's blocksize, here the chip's smallest erase size) comes before
//! any `vFlashWrite`, writes come in increasing address order without
//! overlap, and one `vFlashDone` ends the batch. So a [`LoadRequest`] is
//! complete at `vFlashDone`, and each erase unit is erased at most once.
//!
//! Three steps, each a pure function: [`LoadRequest`] (what GDB asked) →
//! [`LoadRequest::units`] (the image per erase range) → [`plan`] (erase ops,
//! largest block that fits, and program ranges). A later "skip sectors whose
//! CRC already matches" step only has to filter the units between the two.

use std::ops::Range;

use extflash_stub_abi::EraseKind;

/// Value of erased NOR flash.
pub const ERASED: u8 = 0xFF;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("erase of {len:#x} bytes at chip offset {offset:#x} is past the end of the {size:#x}-byte chip")]
    EraseOutsideChip { offset: u32, len: u32, size: u32 },
    #[error("erase of {len:#x} bytes at chip offset {offset:#x} is not aligned to the {min:#x}-byte erase size")]
    EraseNotAligned { offset: u32, len: u32, min: u32 },
    #[error("erase at chip offset {offset:#x} arrived after writes had started (GDB sends all erases first)")]
    EraseAfterWrite { offset: u32 },
    #[error("write of {len} bytes at chip offset {offset:#x} is outside the erased sectors")]
    WriteNotErased { offset: u32, len: usize },
    #[error("write at chip offset {offset:#x} is below the end of the previous write ({previous_end:#x})")]
    WriteOutOfOrder { offset: u32, previous_end: u32 },
    #[error("the chip offers no erase size the stub can use")]
    NoEraseKind,
}

/// What GDB asked for in one `load`, in chip offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadRequest {
    /// Sorted, merged, aligned to the smallest erase size.
    erased: Vec<Range<u32>>,
    /// In address order, non-overlapping.
    writes: Vec<(u32, Vec<u8>)>,
}

/// One erase range with the bytes it must hold afterwards (0xFF where GDB
/// wrote nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub offset: u32,
    pub data: Vec<u8>,
}

/// One stub erase call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraseOp {
    pub offset: u32,
    pub kind: EraseKind,
}

/// One stub program call (the stub splits at page boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOp {
    pub offset: u32,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub erases: Vec<EraseOp>,
    pub programs: Vec<ProgramOp>,
}

impl Plan {
    pub fn erase_bytes(&self) -> u64 {
        self.erases.iter().map(|e| u64::from(e.kind.size())).sum()
    }

    pub fn program_bytes(&self) -> u64 {
        self.programs.iter().map(|p| p.data.len() as u64).sum()
    }
}

impl LoadRequest {
    pub fn is_empty(&self) -> bool {
        self.erased.is_empty() && self.writes.is_empty()
    }

    /// Record a `vFlashErase` of `len` bytes at chip `offset`.
    pub fn erase(&mut self, offset: u32, len: u32, size: u32, min: u32) -> Result<(), PlanError> {
        if !self.writes.is_empty() {
            return Err(PlanError::EraseAfterWrite { offset });
        }
        let end = u64::from(offset) + u64::from(len);
        if len == 0 || end > u64::from(size) {
            return Err(PlanError::EraseOutsideChip { offset, len, size });
        }
        if offset % min != 0 || len % min != 0 {
            return Err(PlanError::EraseNotAligned { offset, len, min });
        }
        self.erased.push(offset..end as u32);
        crate::gdb::flash_plan::merge_ranges(&mut self.erased);
        Ok(())
    }

    /// Record a `vFlashWrite` at chip `offset`.
    pub fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), PlanError> {
        let end = u64::from(offset) + data.len() as u64;
        if let Some((prev, prev_data)) = self.writes.last() {
            let previous_end = prev + prev_data.len() as u32;
            if offset < previous_end {
                return Err(PlanError::WriteOutOfOrder {
                    offset,
                    previous_end,
                });
            }
        }
        let inside = self
            .erased
            .iter()
            .any(|e| u64::from(e.start) <= u64::from(offset) && end <= u64::from(e.end));
        if !inside {
            return Err(PlanError::WriteNotErased {
                offset,
                len: data.len(),
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        // Contiguous with the previous write: extend it (fewer stub calls).
        if let Some((prev, prev_data)) = self.writes.last_mut() {
            if *prev + prev_data.len() as u32 == offset {
                prev_data.extend_from_slice(data);
                return Ok(());
            }
        }
        self.writes.push((offset, data.to_vec()));
        Ok(())
    }

    /// The image per erased range.
    pub fn units(&self) -> Vec<Unit> {
        self.erased
            .iter()
            .map(|e| {
                let mut data = vec![ERASED; (e.end - e.start) as usize];
                for (off, bytes) in &self.writes {
                    if e.start <= *off && *off < e.end {
                        let at = (off - e.start) as usize;
                        data[at..at + bytes.len()].copy_from_slice(bytes);
                    }
                }
                Unit {
                    offset: e.start,
                    data,
                }
            })
            .collect()
    }
}

/// Erase ops and program ranges for `units`: each unit is erased with the
/// largest block that is aligned and fits (`kinds` largest first), and only
/// its non-0xFF stretches are programmed (erased flash already reads 0xFF).
pub fn plan(units: &[Unit], kinds: &[EraseKind]) -> Result<Plan, PlanError> {
    let smallest = kinds.last().ok_or(PlanError::NoEraseKind)?.size();
    let mut out = Plan::default();
    for u in units {
        let end = u.offset + u.data.len() as u32;
        let mut at = u.offset;
        while at < end {
            let kind = kinds
                .iter()
                .copied()
                .find(|k| at % k.size() == 0 && at + k.size() <= end)
                .ok_or(PlanError::EraseNotAligned {
                    offset: at,
                    len: end - at,
                    min: smallest,
                })?;
            out.erases.push(EraseOp { offset: at, kind });
            at += kind.size();
        }
        out.programs.extend(programmed_runs(u));
    }
    Ok(out)
}

/// Stretches of a unit that are not all 0xFF. Runs of 0xFF shorter than a
/// page stay inside a stretch (splitting costs a stub round trip).
fn programmed_runs(u: &Unit) -> Vec<ProgramOp> {
    const GAP: usize = 256;
    let mut out: Vec<ProgramOp> = Vec::new();
    let mut i = 0;
    let d = &u.data;
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
            } else if i - last > GAP {
                break;
            }
            i += 1;
        }
        out.push(ProgramOp {
            offset: u.offset + start as u32,
            data: d[start..=last].to_vec(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use EraseKind::*;

    const SIZE: u32 = 8 << 20;

    /// ("erase" | "write", chip offset, length).
    type Op<'a> = (&'a str, u32, u32);
    /// Requests and the erase ops they must give.
    type EraseCase<'a> = (&'a [Op<'a>], &'a [(u32, EraseKind)]);
    const KINDS: [EraseKind; 3] = [Block64K, Block32K, Sector4K];

    fn request(ops: &[Op]) -> Result<LoadRequest, PlanError> {
        let mut r = LoadRequest::default();
        for (op, off, len) in ops {
            match *op {
                "erase" => r.erase(*off, *len, SIZE, 0x1000)?,
                "write" => r.write(*off, &vec![0x5A; *len as usize])?,
                _ => unreachable!(),
            }
        }
        Ok(r)
    }

    #[test]
    fn erases_use_the_largest_block_that_fits() {
        let cases: &[EraseCase] = &[
            (&[("erase", 0, 0x1000)], &[(0, Sector4K)]),
            (&[("erase", 0, 0x10000)], &[(0, Block64K)]),
            (&[("erase", 0x8000, 0x8000)], &[(0x8000, Block32K)]),
            // 4K up to the 32K boundary, 32K, then 64K, then 4K tail.
            (
                &[("erase", 0x7000, 0x1A000)],
                &[
                    (0x7000, Sector4K),
                    (0x8000, Block32K),
                    (0x10000, Block64K),
                    (0x20000, Sector4K),
                ],
            ),
            // The firmware's assets: 0..0x2000 and 0xF000..0x21000 (GDB
            // rounds each section to 4K).
            (
                &[("erase", 0, 0x2000), ("erase", 0xF000, 0x12000)],
                &[
                    (0, Sector4K),
                    (0x1000, Sector4K),
                    (0xF000, Sector4K),
                    (0x10000, Block64K),
                    (0x20000, Sector4K),
                ],
            ),
            // Adjacent erases merge into one 64K block.
            (
                &[("erase", 0x10000, 0x8000), ("erase", 0x18000, 0x8000)],
                &[(0x10000, Block64K)],
            ),
        ];
        for (ops, want) in cases {
            let r = request(ops).unwrap();
            let p = plan(&r.units(), &KINDS).unwrap();
            let got: Vec<_> = p.erases.iter().map(|e| (e.offset, e.kind)).collect();
            assert_eq!(got, *want, "{ops:?}");
        }
    }

    #[test]
    fn only_4k_sectors_when_the_chip_has_nothing_larger() {
        let r = request(&[("erase", 0, 0x10000)]).unwrap();
        let p = plan(&r.units(), &[Sector4K]).unwrap();
        assert_eq!(p.erases.len(), 16);
        assert_eq!(plan(&r.units(), &[]), Err(PlanError::NoEraseKind));
    }

    #[test]
    fn programs_cover_written_bytes_and_merge_contiguous_writes() {
        let r = request(&[
            ("erase", 0, 0x2000),
            ("write", 3, 0x800),
            ("write", 0x803, 0x803),
            ("write", 0x1F00, 0x10),
        ])
        .unwrap();
        let p = plan(&r.units(), &KINDS).unwrap();
        let got: Vec<_> = p
            .programs
            .iter()
            .map(|p| (p.offset, p.data.len()))
            .collect();
        assert_eq!(got, [(3, 0x1003), (0x1F00, 0x10)]);
        assert_eq!(p.program_bytes(), 0x1013);
        assert_eq!(p.erase_bytes(), 0x2000);
    }

    #[test]
    fn long_ff_runs_are_not_programmed() {
        let mut r = LoadRequest::default();
        r.erase(0, 0x1000, SIZE, 0x1000).unwrap();
        let mut data = vec![1u8; 0x800];
        data[0x100..0x600].fill(ERASED);
        r.write(0, &data).unwrap();
        let p = plan(&r.units(), &KINDS).unwrap();
        let got: Vec<_> = p
            .programs
            .iter()
            .map(|p| (p.offset, p.data.len()))
            .collect();
        assert_eq!(got, [(0, 0x100), (0x600, 0x200)]);
    }

    #[test]
    fn erase_only_programs_nothing() {
        let r = request(&[("erase", 0x3000, 0x1000)]).unwrap();
        let p = plan(&r.units(), &KINDS).unwrap();
        assert!(p.programs.is_empty());
        assert_eq!(r.units()[0].data, vec![ERASED; 0x1000]);
    }

    #[test]
    fn invalid_requests_are_rejected_with_their_offset() {
        use PlanError::*;
        let cases: &[(&[Op], PlanError)] = &[
            (
                &[("erase", 0x800, 0x1000)],
                EraseNotAligned {
                    offset: 0x800,
                    len: 0x1000,
                    min: 0x1000,
                },
            ),
            (
                &[("erase", SIZE - 0x1000, 0x2000)],
                EraseOutsideChip {
                    offset: SIZE - 0x1000,
                    len: 0x2000,
                    size: SIZE,
                },
            ),
            (
                &[("erase", 0, 0)],
                EraseOutsideChip {
                    offset: 0,
                    len: 0,
                    size: SIZE,
                },
            ),
            (&[("write", 0, 4)], WriteNotErased { offset: 0, len: 4 }),
            (
                &[("erase", 0, 0x1000), ("write", 0xFFE, 4)],
                WriteNotErased {
                    offset: 0xFFE,
                    len: 4,
                },
            ),
            (
                &[("erase", 0, 0x1000), ("write", 0x10, 4), ("write", 0x8, 4)],
                WriteOutOfOrder {
                    offset: 0x8,
                    previous_end: 0x14,
                },
            ),
            (
                &[
                    ("erase", 0, 0x1000),
                    ("write", 0, 4),
                    ("erase", 0x1000, 0x1000),
                ],
                EraseAfterWrite { offset: 0x1000 },
            ),
        ];
        for (ops, want) in cases {
            assert_eq!(request(ops).unwrap_err(), *want, "{ops:?}");
        }
    }
}
