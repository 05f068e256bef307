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
        let size = self.size();
        let fetch = self
            .cache
            .fetch_len(offset, len, buf_len)
            .min(size.saturating_sub(offset));
        // Runs of half the buffer when there is more than one: the stub
        // reads the next while the host reads one (`read_runs`).
        let max_run = if fetch.max(len) > buf_len {
            buf_len
        } else {
            (buf_len / 2 / cache::LINE * cache::LINE).max(cache::LINE)
        };
        let missing: Vec<Range<u32>> = self
            .cache
            .missing(offset, fetch.max(len), max_run)
            .into_iter()
            .map(|r| r.start..r.end.min(size))
            .collect();
        let fetched = self.session(core, addr, buf.len() as u32, |s, _| {
            let data = s.read_runs(&missing)?;
            Ok(missing
                .iter()
                .map(|r| r.start)
                .zip(data)
                .collect::<Vec<_>>())
        })?;
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
