//! The memory map as GDB sees it (`qXfer:memory-map:read`), and the
//! `load` plan GDB would make from it: which pieces go to RAM (`X`), which
//! flash blocks to erase (`vFlashErase`, rounded out to each region's
//! blocksize and merged), and which bytes to write (`vFlashWrite`).
//!
//! Pure: the session fetches the XML; nothing here talks to the target.

use std::ops::Range;

use super::image::Segment;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub length: u64,
    /// `Some(blocksize)` for flash.
    pub blocksize: Option<u32>,
}

impl MapEntry {
    pub fn range(&self) -> Range<u64> {
        self.start..self.start + self.length
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("memory map from the server is malformed near `{0}`")]
    Malformed(String),
    #[error(
        "{len:#x} bytes at {address:#010x} fall outside every memory region of the board \
         (flash, RAM and the external-flash window); nothing was written"
    )]
    OutsideRegions { address: u64, len: u64 },
}

/// Parse the `<memory>` entries of a GDB memory map (our server's format:
/// attributes `type`, `start`, `length`, and a `blocksize` property).
pub fn parse(xml: &str) -> Result<Vec<MapEntry>, MapError> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<memory ") {
        rest = &rest[at..];
        let tag_end = rest
            .find('>')
            .ok_or_else(|| MapError::Malformed(snip(rest)))?;
        let tag = &rest[..tag_end];
        let attr = |name: &str| -> Option<&str> {
            let key = format!("{name}=\"");
            let i = tag.find(&key)? + key.len();
            let j = tag[i..].find('"')? + i;
            Some(&tag[i..j])
        };
        let bad = || MapError::Malformed(snip(tag));
        let kind = attr("type").ok_or_else(bad)?;
        let start = attr("start").and_then(parse_num).ok_or_else(bad)?;
        let length = attr("length").and_then(parse_num).ok_or_else(bad)?;
        let self_closing = tag.ends_with('/');
        let (blocksize, next) = if kind == "flash" && !self_closing {
            let close = rest.find("</memory>").ok_or_else(bad)?;
            let body = &rest[tag_end..close];
            let key = "<property name=\"blocksize\">";
            let i = body.find(key).ok_or_else(bad)? + key.len();
            let j = body[i..].find('<').ok_or_else(bad)? + i;
            let bs = parse_num(body[i..j].trim()).ok_or_else(bad)?;
            (Some(bs as u32), close)
        } else {
            (None, tag_end)
        };
        out.push(MapEntry {
            start,
            length,
            blocksize,
        });
        rest = &rest[next..];
    }
    if out.is_empty() {
        return Err(MapError::Malformed(snip(xml)));
    }
    Ok(out)
}

fn snip(s: &str) -> String {
    s.chars().take(60).collect()
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// What one file turns into.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadPlan {
    /// Pieces for RAM, written first (as GDB does).
    pub ram: Vec<Segment>,
    /// Merged erase ranges, address order.
    pub erases: Vec<Range<u64>>,
    /// Pieces for flash, address order.
    pub flash: Vec<Segment>,
}

/// Split `segments` over the map: flash entries give erases and writes;
/// `ram` ranges (the board's real RAM regions, not the map's gap filler)
/// take RAM pieces; any other byte is an error before anything is sent.
pub fn plan(
    segments: &[Segment],
    map: &[MapEntry],
    ram: &[Range<u64>],
) -> Result<LoadPlan, MapError> {
    let mut out = LoadPlan::default();
    let flash: Vec<&MapEntry> = map.iter().filter(|e| e.blocksize.is_some()).collect();
    for seg in segments {
        let mut at = u64::from(seg.address);
        let end = at + seg.data.len() as u64;
        while at < end {
            let piece = |to: u64| Segment {
                address: at as u32,
                data: seg.data[(at - u64::from(seg.address)) as usize
                    ..(to - u64::from(seg.address)) as usize]
                    .to_vec(),
            };
            if let Some(e) = flash.iter().find(|e| e.range().contains(&at)) {
                let to = end.min(e.start + e.length);
                let bs = u64::from(e.blocksize.unwrap_or(1)).max(1);
                let lo = e.start + (at - e.start) / bs * bs;
                let hi = (e.start + (to - e.start).div_ceil(bs) * bs).min(e.start + e.length);
                out.erases.push(lo..hi);
                out.flash.push(piece(to));
                at = to;
            } else if let Some(r) = ram.iter().find(|r| r.contains(&at)) {
                let to = end.min(r.end);
                out.ram.push(piece(to));
                at = to;
            } else {
                // Report the whole stretch that fits nowhere.
                let next = flash
                    .iter()
                    .map(|e| e.start)
                    .chain(ram.iter().map(|r| r.start))
                    .filter(|&s| s > at)
                    .min()
                    .unwrap_or(end)
                    .min(end);
                return Err(MapError::OutsideRegions {
                    address: at,
                    len: next - at,
                });
            }
        }
    }
    out.erases.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in out.erases {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    out.erases = merged;
    out.flash.sort_by_key(|s| s.address);
    Ok(out)
}

/// The flash entry holding `address`, if any.
pub fn flash_entry(map: &[MapEntry], address: u64) -> Option<MapEntry> {
    map.iter()
        .find(|e| e.blocksize.is_some() && e.range().contains(&address))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<?xml version=\"1.0\"?>\n<memory-map>\n\
        <memory type=\"ram\" start=\"0x0\" length=\"0x8000000\"/>\n\
        <memory type=\"flash\" start=\"0x8000000\" length=\"0x10000\">\n    \
        <property name=\"blocksize\">0x4000</property>\n  </memory>\n\
        <memory type=\"flash\" start=\"0x8010000\" length=\"0x10000\">\n    \
        <property name=\"blocksize\">0x10000</property>\n  </memory>\n\
        <memory type=\"ram\" start=\"0x8020000\" length=\"0x87fe0000\"/>\n\
        <memory type=\"flash\" start=\"0x90000000\" length=\"0x800000\">\n    \
        <property name=\"blocksize\">0x1000</property>\n  </memory>\n\
        </memory-map>\n";

    const SRAM: [Range<u64>; 2] = [0x2000_0000..0x2002_0000, 0x1000_0000..0x1001_0000];

    fn seg(address: u32, len: usize) -> Segment {
        Segment {
            address,
            data: vec![0xA5; len],
        }
    }

    #[test]
    fn parse_reads_ram_and_flash_with_blocksizes() {
        let map = parse(XML).unwrap();
        assert_eq!(map.len(), 5);
        assert_eq!(map[1].blocksize, Some(0x4000));
        assert_eq!(map[2].start, 0x0801_0000);
        assert_eq!(map[4].length, 0x80_0000);
        assert_eq!(map[0].blocksize, None);
        assert!(parse("<memory-map></memory-map>").is_err());
        assert!(parse("<memory type=\"flash\" start=\"0x0\" length=\"zz\">").is_err());
    }

    #[test]
    fn plan_rounds_erases_to_each_region_blocksize_and_merges() {
        let map = parse(XML).unwrap();
        let ram = SRAM;
        // 0x100 bytes crossing the 16K/64K boundary, plus two window pieces
        // in the same 4K block.
        let p = plan(
            &[
                seg(0x0800_FF80, 0x100),
                seg(0x9000_1010, 0x10),
                seg(0x9000_1800, 0x900),
                seg(0x2000_0000, 4),
            ],
            &map,
            &ram,
        )
        .unwrap();
        assert_eq!(
            p.erases,
            [
                0x0800_C000..0x0802_0000, // 16K and 64K blocks, touching: one request
                0x9000_1000..0x9000_3000
            ]
        );
        // The flash piece is split at the region boundary.
        assert_eq!(p.flash.len(), 4);
        assert_eq!(p.flash[0].data.len(), 0x80);
        assert_eq!(p.ram, [seg(0x2000_0000, 4)]);
        let bytes: usize = p.flash.iter().map(|s| s.data.len()).sum();
        assert_eq!(bytes, 0x100 + 0x10 + 0x900);
    }

    #[test]
    fn invalid_address_outside_every_region_is_refused() {
        let map = parse(XML).unwrap();
        let err = plan(&[seg(0x3000_0000, 8)], &map, &SRAM).unwrap_err();
        assert_eq!(
            err,
            MapError::OutsideRegions {
                address: 0x3000_0000,
                len: 8
            }
        );
        // Past the end of the window: refused, not truncated.
        let err = plan(&[seg(0x907F_FFF0, 0x20)], &map, &[]).unwrap_err();
        assert_eq!(
            err,
            MapError::OutsideRegions {
                address: 0x9080_0000,
                len: 0x10
            }
        );
    }
}
