//! Read cache for the external-flash window, in 4 KiB lines of chip offsets.
//!
//! Only valid while nothing else can change the chip: the owner drops it on
//! every write, erase, reset and resume (the application may program the
//! chip itself while it runs). Bounded: when full it starts over.

use std::collections::BTreeMap;
use std::ops::Range;

pub const LINE: u32 = 0x1000;
/// At most this many bytes are cached (2 MiB).
pub const MAX_LINES: usize = 512;

/// Small reads (not whole lines) kept besides the lines.
pub const MAX_FRAGMENTS: usize = 64;

#[derive(Debug, Default, Clone)]
pub struct ReadCache {
    lines: BTreeMap<u32, Vec<u8>>,
    /// Short runs read on their own (chip offset, bytes), newest last.
    fragments: Vec<(u32, Vec<u8>)>,
}

impl ReadCache {
    pub fn clear(&mut self) {
        self.lines.clear();
        self.fragments.clear();
    }

    /// Store a short run read at `offset` (not line-aligned).
    pub fn insert_fragment(&mut self, offset: u32, data: &[u8]) {
        if self.fragments.len() >= MAX_FRAGMENTS {
            self.fragments.remove(0);
        }
        self.fragments.push((offset, data.to_vec()));
    }

    /// Copy `offset..offset+buf.len()` out if every line is cached, or one
    /// fragment holds it.
    pub fn get(&self, offset: u32, buf: &mut [u8]) -> bool {
        let end = u64::from(offset) + buf.len() as u64;
        if let Some((at, data)) = self
            .fragments
            .iter()
            .rev()
            .find(|(at, data)| *at <= offset && end <= u64::from(*at) + data.len() as u64)
        {
            let from = (offset - at) as usize;
            buf.copy_from_slice(&data[from..from + buf.len()]);
            return true;
        }
        if !self.covers(offset, buf.len() as u32) {
            return false;
        }
        let mut at = offset;
        let mut done = 0;
        while done < buf.len() {
            let line = at / LINE;
            let within = (at % LINE) as usize;
            let n = (LINE as usize - within).min(buf.len() - done);
            let data = &self.lines[&line];
            buf[done..done + n].copy_from_slice(&data[within..within + n]);
            done += n;
            at += n as u32;
        }
        true
    }

    /// Whether every line of `offset..offset+len` is cached.
    pub fn covers(&self, offset: u32, len: u32) -> bool {
        self.lines_of(offset, len)
            .all(|l| self.lines.contains_key(&l))
    }

    fn lines_of(&self, offset: u32, len: u32) -> Range<u32> {
        if len == 0 {
            return 0..0;
        }
        offset / LINE..(offset + len - 1) / LINE + 1
    }

    /// Line-aligned chip ranges to fetch for `offset..+len`: the missing
    /// lines, grouped in runs that never cross a multiple of `unit` (a
    /// multiple of [`LINE`]), so a run is at most one unit.
    pub fn missing(&self, offset: u32, len: u32, unit: u32) -> Vec<Range<u32>> {
        let unit = unit.max(LINE);
        let mut out: Vec<Range<u32>> = Vec::new();
        for l in self.lines_of(offset, len) {
            if self.lines.contains_key(&l) {
                continue;
            }
            let at = l * LINE;
            match out.last_mut() {
                Some(r) if r.end == at && at % unit != 0 => r.end += LINE,
                _ => out.push(at..at + LINE),
            }
        }
        out
    }

    /// Whether a read at `offset` continues cached bytes, as a sequential
    /// reader's next request does (GDB's `dump`, `x/1000x`).
    pub fn continues(&self, offset: u32) -> bool {
        offset > 0 && self.lines.contains_key(&((offset - 1) / LINE))
    }

    /// Make room for `lines` more lines before inserting them, so that
    /// one read's lines are not dropped by the next one's insert.
    pub fn make_room(&mut self, lines: usize) {
        if self.lines.len() + lines > MAX_LINES {
            self.lines.clear();
        }
    }

    /// Store line-aligned data read from the chip.
    pub fn insert(&mut self, offset: u32, data: &[u8]) {
        debug_assert_eq!(offset % LINE, 0);
        if self.lines.len() + data.len() / LINE as usize > MAX_LINES {
            self.lines.clear();
        }
        for (i, chunk) in data.chunks(LINE as usize).enumerate() {
            if chunk.len() == LINE as usize {
                self.lines.insert(offset / LINE + i as u32, chunk.to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_serve_reads_inside_them_and_clear_with_the_lines() {
        let mut c = ReadCache::default();
        c.insert_fragment(0x1002, &[1, 2, 3, 4]);
        let mut buf = [0u8; 2];
        assert!(c.get(0x1003, &mut buf));
        assert_eq!(buf, [2, 3]);
        assert!(!c.get(0x1005, &mut buf), "runs past the fragment");
        assert!(!c.get(0x1001, &mut buf), "starts before it");
        c.clear();
        assert!(!c.get(0x1003, &mut buf));
        for i in 0..=MAX_FRAGMENTS as u32 {
            c.insert_fragment(i * 16, &[0; 4]);
        }
        assert!(!c.get(0, &mut buf), "the oldest fragment went first");
        assert!(c.get(16, &mut buf));
    }

    #[test]
    fn unaligned_read_spanning_lines_hits_after_insert() {
        let mut c = ReadCache::default();
        let mut buf = [0u8; 10];
        assert!(!c.get(0xFFB, &mut buf));
        assert_eq!(c.missing(0xFFB, 10, 0x4000), vec![0..0x2000u32]);
        let data: Vec<u8> = (0..0x2000u32).map(|i| i as u8).collect();
        c.insert(0, &data);
        assert!(c.get(0xFFB, &mut buf));
        assert_eq!(buf.to_vec(), data[0xFFB..0x1005].to_vec());
        c.clear();
        assert!(!c.get(0xFFB, &mut buf));
    }

    #[test]
    fn missing_lines_are_grouped_in_runs_within_units() {
        let mut c = ReadCache::default();
        c.insert(0x2000, &[0; 0x1000]);
        assert_eq!(
            c.missing(0, 0x6000, 0x2000),
            [0..0x2000, 0x3000..0x4000, 0x4000..0x6000]
        );
        // 12 KiB units: a run from line 1 stops at the unit's end.
        let c = ReadCache::default();
        assert_eq!(
            c.missing(0x1000, 0x8000, 0x3000),
            [0x1000..0x3000, 0x3000..0x6000, 0x6000..0x9000]
        );
        let mut c = ReadCache::default();
        c.insert(0x2000, &[0; 0x1000]);
        assert!(c.missing(0x2000, 0x1000, 0x2000).is_empty());
        assert!(c.missing(0x2000, 0, 0x2000).is_empty());
    }

    #[test]
    fn a_read_continues_when_the_line_before_it_is_cached() {
        let mut c = ReadCache::default();
        assert!(!c.continues(0x2000), "nothing cached");
        c.insert(0x1000, &[0; 0x1000]);
        assert!(c.continues(0x2000));
        assert!(c.continues(0x1800), "within line 1");
        assert!(!c.continues(0x1000), "line 0 is not cached");
        assert!(!c.continues(0x4000), "a gap before it");
        assert!(!c.continues(0));
        assert!(c.covers(0x1000, 0x1000) && !c.covers(0x1000, 0x1001));
    }

    #[test]
    fn room_is_made_before_a_read_that_would_overflow() {
        let mut c = ReadCache::default();
        c.insert(0, &vec![0; (MAX_LINES - 1) * LINE as usize]);
        c.make_room(1);
        assert!(c.covers(0, LINE), "one more line fits");
        c.make_room(2);
        assert!(!c.covers(0, LINE), "two do not: it starts over");
    }

    #[test]
    fn cache_is_bounded() {
        let mut c = ReadCache::default();
        for i in 0..=MAX_LINES as u32 {
            c.insert(i * LINE, &[0; LINE as usize]);
        }
        assert!(c.lines.len() <= MAX_LINES);
    }
}
