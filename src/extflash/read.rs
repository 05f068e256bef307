//! Reading the window: from the read cache, the host-driven SPI path
//! (`direct.rs`) for a few bytes, or the stub in buffer-sized pieces; and
//! GDB's `qCRC` of a window range by the stub's CRC.

use std::ops::Range;

use extflash_stub_abi as abi;
use probe_rs::Core;

use super::cache::{self, ReadCache};
use super::call::{timeout_for, Call};
use super::direct;
use super::error::ExtFlashError;
use super::{check_halted, read_pieces, ExtFlash, LONG_OPERATION};

impl ExtFlash {
    /// Window bytes at `addr` from the read cache alone (no stub run):
    /// false unless the cache holds every byte. For readers that may not
    /// run the stub (an observer while the core runs).
    pub fn read_cached(&self, addr: u32, buf: &mut [u8]) -> bool {
        self.offset(addr, buf.len() as u32)
            .is_ok_and(|offset| self.cache.get(offset, buf))
    }

    /// Read window bytes at `addr`: from the cache (what was read while the
    /// core was halted, until the next resume), else from the chip, which
    /// only a halted core allows: while it runs the read is refused
    /// ([`ExtFlashError::CoreRunning`]) without touching the SPI or the
    /// core, so nothing read while the application owns the SPI is ever
    /// returned or cached.
    pub fn read(
        &mut self,
        core: &mut Core<'_>,
        addr: u32,
        buf: &mut [u8],
    ) -> Result<(), ExtFlashError> {
        let offset = self.offset(addr, buf.len() as u32)?;
        if self.cache.get(offset, buf) {
            return Ok(());
        }
        let len = buf.len() as u32;
        if !self.is_resident() {
            check_halted(core, addr, len)?;
        }
        if len <= direct::MAX_LEN && !self.is_resident() {
            // A few bytes with no session running: the host drives the
            // SPI itself (see `direct`), unless that cannot work here.
            self.check_spi_free(core, addr, len)?;
            if let Some(data) = direct::read(core, &self.ext, offset, len)? {
                self.cache.insert_fragment(offset, &data);
                buf.copy_from_slice(&data);
                return Ok(());
            }
        }
        let buf_len = self.buffer_len()?;
        let unit = read_unit(buf_len);
        let size = self.size();
        let ahead = self.resident.as_ref().and_then(|r| r.ahead());
        let FetchPlan { runs, next } = plan_fetch(&self.cache, offset, len, unit, size, ahead);
        let fetched = self.session(core, addr, buf.len() as u32, |s, _| {
            let data = s.read_runs(&runs, unit, next)?;
            Ok(runs.iter().map(|r| r.start).zip(data).collect::<Vec<_>>())
        })?;
        let lines: usize = fetched
            .iter()
            .map(|(_, d)| d.len() / cache::LINE as usize)
            .sum();
        self.cache.make_room(lines);
        for (off, data) in fetched {
            self.cache.insert(off, &data);
        }
        if !self.cache.get(offset, buf) {
            // Only when the cache is full: read straight through, in pieces
            // the stub's buffer holds (the stub does not bound `len`).
            let len = buf.len() as u32;
            let pieces = read_pieces(offset, len, buf_len);
            let data = self.session(core, addr, len, |s, _| {
                let mut out = Vec::with_capacity(buf.len());
                for r in pieces {
                    let n = r.end - r.start;
                    s.call(
                        Call::Read {
                            addr: r.start,
                            len: n,
                        },
                        0,
                        timeout_for(0, u64::from(n)),
                    )?;
                    out.extend(s.read_buffer(n)?);
                }
                Ok(out)
            })?;
            buf.copy_from_slice(&data);
        }
        Ok(())
    }

    pub(super) fn buffer_len(&self) -> Result<u32, ExtFlashError> {
        let stub = self
            .stub
            .as_ref()
            .map_err(|e| ExtFlashError::StubImage { source: e.clone() })?;
        let wa = &self.ext.work_area;
        extflash_stub_abi::layout::layout_with_stack(wa, stub.bytes.len() as u32, self.stack)
            .map(|l| l.buf_len & !(cache::LINE - 1))
            .filter(|l| *l >= cache::LINE)
            .ok_or(ExtFlashError::WorkAreaTooSmall {
                start: wa.start,
                size: wa.end - wa.start,
                len: stub.bytes.len() as u32,
            })
    }

    /// GDB's qCRC of window bytes, computed on the target (or from the
    /// cache when it holds them all).
    pub fn crc(
        &mut self,
        core: &mut Core<'_>,
        addr: u32,
        len: u32,
        init: u32,
    ) -> Result<u32, ExtFlashError> {
        let offset = self.offset(addr, len)?;
        let mut cached = vec![0u8; len as usize];
        if self.cache.get(offset, &mut cached) {
            return Ok(abi::crc32_update(init, &cached));
        }
        if init != abi::CRC32_INIT {
            // The stub always starts from CRC32_INIT: continue a running CRC
            // on the host instead.
            self.read(core, addr, &mut cached)?;
            return Ok(abi::crc32_update(init, &cached));
        }
        self.session(core, addr, len, |s, _| {
            if len >= LONG_OPERATION {
                s.raise_clock()?;
            }
            s.call(
                Call::Crc32 { addr: offset, len },
                0,
                timeout_for(0, u64::from(len) * 2),
            )
        })
    }
}

/// What a window read that misses the cache fetches: the chip ranges the
/// stub reads now (missing lines, never across a multiple of the unit),
/// and the unit it reads ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FetchPlan {
    pub runs: Vec<Range<u32>>,
    pub next: Option<Range<u32>>,
}

/// Plan a read of `len` bytes at chip `offset` (of a chip of `size`
/// bytes), `ahead` being the range the stub has read ahead. A sequential
/// reader (GDB's `dump`, `x/1000x`, compare-sections) continues what it
/// read last: it gets whole units, through the one after the unit it
/// starts in (a request that misses the cache costs probe-rs's core
/// attach, three AP register reads of a round trip each, so fewer and
/// larger fetches pay less), and the unit after those is read ahead.
/// Past the reader's last request, at most that much crosses the link in
/// vain. Any other read gets just its missing lines.
pub(super) fn plan_fetch(
    cache: &ReadCache,
    offset: u32,
    len: u32,
    unit: u32,
    size: u32,
    ahead: Option<Range<u32>>,
) -> FetchPlan {
    let sequential =
        cache.continues(offset) || ahead.is_some_and(|a| a.start <= offset && offset < a.end);
    let (unit64, end) = (u64::from(unit), u64::from(offset) + u64::from(len));
    let end = if sequential {
        end.div_ceil(unit64).max(u64::from(offset) / unit64 + 2) * unit64
    } else {
        end
    }
    .min(u64::from(size))
    .max(end) as u32;
    let runs: Vec<Range<u32>> = cache
        .missing(offset, end - offset, unit)
        .into_iter()
        .map(|r| r.start..r.end.min(size))
        .collect();
    // After what this read covers (`end` is on a unit boundary when
    // sequential), unless it reads nothing or that unit is cached.
    let next = Some(end..end.saturating_add(unit).min(size))
        .filter(|r| sequential && !runs.is_empty() && r.start < r.end)
        .filter(|r| !cache.covers(r.start, r.end - r.start));
    FetchPlan { runs, next }
}

/// Bytes the stub reads per `Read` command for window reads: the largest
/// multiple of [`LINK_READ`] (else of a cache line) of which two fit the
/// buffer, so one unit crosses the link while the stub fills the other.
pub(super) fn read_unit(buf_len: u32) -> u32 {
    let half = buf_len / 2;
    if half >= LINK_READ {
        half / LINK_READ * LINK_READ
    } else {
        (half / cache::LINE * cache::LINE).max(cache::LINE)
    }
}

/// Whole cache lines that are also whole ST-Link/V2 reads: the probe moves
/// at most 6144 bytes per USB command (probe-rs 0.32, `STLINK_MAX_READ_LEN`),
/// each command two round trips, so 12 KiB goes out in two full commands
/// where 8 KiB would take two as well.
pub const LINK_READ: u32 = 3 * cache::LINE;

#[cfg(test)]
// Runs compared as arrays of ranges, one run included.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    const K: u32 = 1024;
    const UNIT: u32 = 12 * K;
    const SIZE: u32 = 8 << 20;

    /// Plan a read and pretend it was done: its runs go into the cache.
    fn step(c: &mut ReadCache, off: u32, len: u32, ahead: Option<Range<u32>>) -> FetchPlan {
        let p = plan_fetch(c, off, len, UNIT, SIZE, ahead);
        for r in &p.runs {
            c.insert(r.start, &vec![0; (r.end - r.start) as usize]);
        }
        p
    }

    #[test]
    fn a_dump_in_8k_packets_gets_two_units_per_miss_and_the_next_read_ahead() {
        let mut c = ReadCache::default();
        let first = step(&mut c, 0, 8 * K, None);
        assert_eq!(first.runs, [0..8 * K], "not sequential: just its lines");
        assert_eq!(first.next, None);
        let second = step(&mut c, 8 * K, 8 * K, None);
        assert_eq!(second.runs, [8 * K..UNIT, UNIT..2 * UNIT]);
        assert_eq!(second.next, Some(2 * UNIT..3 * UNIT));
        assert!(c.covers(16 * K, 8 * K), "the next packet is a hit");
        // The one after finds the unit read ahead, continues past it.
        let third = step(&mut c, 2 * UNIT, 8 * K, second.next);
        assert_eq!(third.runs, [2 * UNIT..3 * UNIT, 3 * UNIT..4 * UNIT]);
        assert_eq!(third.next, Some(4 * UNIT..5 * UNIT));
    }

    #[test]
    fn the_unit_read_ahead_makes_a_read_sequential_even_after_the_cache_emptied() {
        let c = ReadCache::default();
        let p = plan_fetch(
            &c,
            5 * UNIT + 4 * K,
            8 * K,
            UNIT,
            SIZE,
            Some(5 * UNIT..6 * UNIT),
        );
        assert_eq!(p.runs, [5 * UNIT + 4 * K..6 * UNIT, 6 * UNIT..7 * UNIT]);
        assert_eq!(p.next, Some(7 * UNIT..8 * UNIT));
        // Outside it: a read of its own lines only.
        let p = plan_fetch(&c, 9 * UNIT, 8, UNIT, SIZE, Some(5 * UNIT..6 * UNIT));
        assert_eq!(p.runs, [9 * UNIT..9 * UNIT + 4 * K]);
        assert_eq!(p.next, None);
    }

    #[test]
    fn plans_stop_at_the_chip_end_and_skip_what_is_cached() {
        let size = 3 * UNIT + 8 * K;
        let mut c = ReadCache::default();
        c.insert(UNIT, &vec![0; UNIT as usize]);
        let p = plan_fetch(&c, 2 * UNIT, 8 * K, UNIT, size, None);
        assert_eq!(p.runs, [2 * UNIT..3 * UNIT, 3 * UNIT..size]);
        assert_eq!(p.next, None, "nothing past the chip");
        // The unit after a sequential read is cached already: no read ahead.
        c.insert(3 * UNIT, &vec![0; UNIT as usize]);
        let p = plan_fetch(&c, 2 * UNIT, 8 * K, UNIT, SIZE, None);
        assert_eq!(p.runs, [2 * UNIT..3 * UNIT]);
        assert_eq!(p.next, Some(4 * UNIT..5 * UNIT));
    }

    #[test]
    fn a_unit_is_whole_st_link_reads_when_two_fit_the_buffer() {
        assert_eq!(read_unit(24 * K), 12 * K);
        assert_eq!(read_unit(26 * K), 12 * K);
        assert_eq!(read_unit(48 * K), 24 * K);
        assert_eq!(read_unit(16 * K), 8 * K, "else whole lines");
        assert_eq!(read_unit(4 * K), 4 * K, "at least a line");
    }
}
