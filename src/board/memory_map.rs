//! GDB memory-map XML (`qXfer:memory-map:read`) generated from a list of
//! regions.
//!
//! Once a memory map exists GDB refuses to touch unlisted addresses, so every
//! gap over the full 32-bit space is reported as `ram`: peripherals, the
//! core's private registers and system memory stay readable. Flash regions
//! carry their erase block size; GDB then uses hardware breakpoints there and
//! sends `vFlashErase`/`vFlashWrite` for them on `load`.

use std::fmt::Write as _;

use super::{Board, RegionKind};

/// One entry of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapRegion {
    pub start: u64,
    pub length: u64,
    pub kind: MapKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    Ram,
    Flash { blocksize: u32 },
}

/// The map's address space: 32-bit.
pub const SPACE_END: u64 = 1 << 32;

/// Why regions cannot be turned into a map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryMapError {
    #[error("memory-map regions at {a:#010x} and {b:#010x} overlap")]
    Overlap { a: u64, b: u64 },
    #[error("memory-map region at {start:#010x} (+{length:#x}) is empty or past 4 GiB")]
    OutOfSpace { start: u64, length: u64 },
}

/// The explicit regions of a board: each flash sector run becomes a `flash`
/// region with that run's block size; RAM regions become `ram`. The
/// external-flash window is added by [`memory_map_xml`], because its size
/// and blocksize come from the identified chip.
pub fn board_regions(board: &Board) -> Vec<MapRegion> {
    let mut out = Vec::new();
    for r in &board.regions {
        match &r.kind {
            RegionKind::Ram => out.push(MapRegion {
                start: r.start.into(),
                length: r.size,
                kind: MapKind::Ram,
            }),
            RegionKind::Flash { sectors } => {
                let mut start = u64::from(r.start);
                for run in sectors {
                    let length = u64::from(run.size) * u64::from(run.count);
                    out.push(MapRegion {
                        start,
                        length,
                        kind: MapKind::Flash {
                            blocksize: run.size,
                        },
                    });
                    start += length;
                }
            }
        }
    }
    out
}

/// Sort `regions`, check them, and fill every gap in `0..2^32` with RAM.
/// Adjacent RAM entries are merged.
pub fn complete(mut regions: Vec<MapRegion>) -> Result<Vec<MapRegion>, MemoryMapError> {
    regions.sort_by_key(|r| r.start);
    let mut out: Vec<MapRegion> = Vec::new();
    let mut cursor = 0u64;
    for r in regions {
        if r.length == 0 || r.start + r.length > SPACE_END {
            return Err(MemoryMapError::OutOfSpace {
                start: r.start,
                length: r.length,
            });
        }
        if r.start < cursor {
            let prev = out.last().map(|p| p.start).unwrap_or(0);
            return Err(MemoryMapError::Overlap {
                a: prev,
                b: r.start,
            });
        }
        if r.start > cursor {
            push_merged(
                &mut out,
                MapRegion {
                    start: cursor,
                    length: r.start - cursor,
                    kind: MapKind::Ram,
                },
            );
        }
        cursor = r.start + r.length;
        push_merged(&mut out, r);
    }
    if cursor < SPACE_END {
        push_merged(
            &mut out,
            MapRegion {
                start: cursor,
                length: SPACE_END - cursor,
                kind: MapKind::Ram,
            },
        );
    }
    Ok(out)
}

fn push_merged(out: &mut Vec<MapRegion>, r: MapRegion) {
    if let Some(last) = out.last_mut() {
        if last.kind == MapKind::Ram
            && r.kind == MapKind::Ram
            && last.start + last.length == r.start
        {
            last.length += r.length;
            return;
        }
    }
    out.push(r);
}

/// Render complete regions as GDB memory-map XML.
pub fn to_xml(regions: &[MapRegion]) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\"?>\n\
         <!DOCTYPE memory-map PUBLIC \"+//IDN gnu.org//DTD GDB Memory Map V1.0//EN\" \
         \"http://sourceware.org/gdb/gdb-memory-map.dtd\">\n<memory-map>\n",
    );
    for r in regions {
        match r.kind {
            MapKind::Ram => {
                let _ = writeln!(
                    xml,
                    "  <memory type=\"ram\" start=\"{:#x}\" length=\"{:#x}\"/>",
                    r.start, r.length
                );
            }
            MapKind::Flash { blocksize } => {
                let _ = writeln!(
                    xml,
                    "  <memory type=\"flash\" start=\"{:#x}\" length=\"{:#x}\">\n    \
                     <property name=\"blocksize\">{:#x}</property>\n  </memory>",
                    r.start, r.length, blocksize
                );
            }
        }
    }
    xml.push_str("</memory-map>\n");
    xml
}

/// The external-flash window as a flash region: `size` bytes at `start`,
/// erased in `blocksize` units (the chip's smallest erase).
pub fn window_region(start: u32, size: u32, blocksize: u32) -> MapRegion {
    MapRegion {
        start: start.into(),
        length: size.into(),
        kind: MapKind::Flash { blocksize },
    }
}

/// The memory-map XML for a board plus its external-flash window, if any.
pub fn memory_map_xml(board: &Board, window: Option<MapRegion>) -> Result<String, MemoryMapError> {
    let mut regions = board_regions(board);
    regions.extend(window);
    Ok(to_xml(&complete(regions)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flash(start: u64, length: u64, blocksize: u32) -> MapRegion {
        MapRegion {
            start,
            length,
            kind: MapKind::Flash { blocksize },
        }
    }

    #[test]
    fn builtin_board_map_lists_f407ve_sectors_as_flash() {
        let map = complete(board_regions(&Board::builtin())).unwrap();
        let flashes: Vec<_> = map
            .iter()
            .filter(|r| matches!(r.kind, MapKind::Flash { .. }))
            .copied()
            .collect();
        assert_eq!(
            flashes,
            [
                flash(0x0800_0000, 0x10000, 0x4000),
                flash(0x0801_0000, 0x10000, 0x10000),
                flash(0x0802_0000, 0x60000, 0x20000),
            ]
        );
    }

    #[test]
    fn builtin_board_map_covers_4g_without_gaps_or_overlaps() {
        let map = complete(board_regions(&Board::builtin())).unwrap();
        let mut cursor = 0;
        for r in &map {
            assert_eq!(r.start, cursor, "gap or overlap at {:#x}", r.start);
            assert!(r.length > 0);
            cursor += r.length;
        }
        assert_eq!(cursor, SPACE_END);
        // Peripherals, the PPB and system memory fall in RAM entries.
        for addr in [0x4002_3800u64, 0xE000_ED00, 0x1FFF_0000, 0x9100_0000, 0] {
            let r = map
                .iter()
                .find(|r| r.start <= addr && addr < r.start + r.length)
                .unwrap();
            assert_eq!(r.kind, MapKind::Ram, "{addr:#x}");
        }
    }

    #[test]
    fn gaps_become_ram_and_adjacent_ram_merges() {
        let map = complete(vec![
            flash(0x1000, 0x1000, 0x400),
            MapRegion {
                start: 0x2000,
                length: 0x1000,
                kind: MapKind::Ram,
            },
        ])
        .unwrap();
        assert_eq!(
            map,
            [
                MapRegion {
                    start: 0,
                    length: 0x1000,
                    kind: MapKind::Ram
                },
                flash(0x1000, 0x1000, 0x400),
                MapRegion {
                    start: 0x2000,
                    length: SPACE_END - 0x2000,
                    kind: MapKind::Ram
                },
            ]
        );
    }

    #[test]
    fn region_ending_at_4g_leaves_no_tail() {
        let map = complete(vec![flash(0xFFFF_0000, 0x10000, 0x1000)]).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[1].start + map[1].length, SPACE_END);
    }

    #[test]
    fn window_is_advertised_as_flash_with_the_chip_blocksize() {
        let xml = memory_map_xml(
            &Board::builtin(),
            Some(window_region(0x9000_0000, 8 << 20, 0x1000)),
        )
        .unwrap();
        assert!(xml.contains(
            "<memory type=\"flash\" start=\"0x90000000\" length=\"0x800000\">\n    \
             <property name=\"blocksize\">0x1000</property>"
        ));
        // The rest of the old FSMC range stays readable as RAM.
        assert!(
            xml.contains("<memory type=\"ram\" start=\"0x90800000\""),
            "{xml}"
        );
    }

    #[test]
    fn invalid_overlapping_regions_are_rejected() {
        let err = complete(vec![
            flash(0x1000, 0x2000, 0x400),
            flash(0x2000, 0x1000, 0x400),
        ]);
        assert_eq!(
            err,
            Err(MemoryMapError::Overlap {
                a: 0x1000,
                b: 0x2000
            })
        );
    }

    #[test]
    fn invalid_region_past_4g_is_rejected() {
        let err = complete(vec![flash(0xFFFF_F000, 0x2000, 0x400)]);
        assert!(matches!(err, Err(MemoryMapError::OutOfSpace { .. })));
    }

    #[test]
    fn xml_has_blocksize_per_flash_entry_and_is_balanced() {
        let xml = memory_map_xml(&Board::builtin(), None).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\"?>"));
        assert!(xml.contains(
            "<memory type=\"flash\" start=\"0x8000000\" length=\"0x10000\">\n    \
             <property name=\"blocksize\">0x4000</property>"
        ));
        assert!(xml.contains("<memory type=\"flash\" start=\"0x8020000\" length=\"0x60000\">"));
        assert_eq!(
            xml.matches("<memory ").count(),
            xml.matches("type=").count()
        );
        let open_flash = xml.matches("type=\"flash\"").count();
        assert_eq!(open_flash, xml.matches("</memory>").count());
        assert_eq!(xml.matches("<memory-map>").count(), 1);
        assert!(xml.trim_end().ends_with("</memory-map>"));
        // The first entry starts at 0 and is RAM.
        assert!(xml.contains("<memory type=\"ram\" start=\"0x0\""));
    }
}
