//! Reading the window: from the read cache, the host-driven SPI path
//! (`direct.rs`) for a few bytes, or the stub in buffer-sized pieces; and
//! GDB's `qCRC` of a window range by the stub's CRC.

use std::ops::Range;

use extflash_stub_abi as abi;
use probe_rs::Core;

use super::call::{timeout_for, Call};
use super::error::ExtFlashError;
use super::{cache, direct};
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
        // A sequential reader (GDB's `dump`, `x/1000x`, compare-sections)
        // continues what it read last: fetch whole units, through the one
        // after the unit it starts in (a request that misses the cache
        // costs probe-rs's core attach, three AP register reads of a round
        // trip each, so fewer and larger fetches pay less), and have the
        // stub read the unit after those while the host is away
        // (`read_runs`). Past the reader's last request, at most that
        // much crosses the link in vain.
        let sequential = self.cache.continues(offset)
            || ahead
                .as_ref()
                .is_some_and(|a| a.start <= offset && offset < a.end);
        let end = u64::from(offset) + u64::from(len);
        let unit64 = u64::from(unit);
        let end = if sequential {
            end.div_ceil(unit64).max(u64::from(offset) / unit64 + 2) * unit64
        } else {
            end
        }
        .min(u64::from(size)) as u32;
        let missing: Vec<Range<u32>> = self
            .cache
            .missing(offset, end.max(offset + len) - offset, unit)
            .into_iter()
            .map(|r| r.start..r.end.min(size))
            .collect();
        let next = missing
            .last()
            .map(|r| r.end.div_ceil(unit) * unit)
            .filter(|_| sequential)
            .map(|at| at..(at + unit).min(size))
            .filter(|r| r.start < r.end && !self.cache.covers(r.start, r.end - r.start));
        let fetched = self.session(core, addr, buf.len() as u32, |s, _| {
            let data = s.read_runs(&missing, unit, next)?;
            Ok(missing
                .iter()
                .map(|r| r.start)
                .zip(data)
                .collect::<Vec<_>>())
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
