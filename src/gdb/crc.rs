//! `qCRC:addr,len` (GDB's `compare-sections`): CRC-32 as GDB computes it
//! (poly 0x04C11DB7, MSB first, init 0xFFFFFFFF, no final xor; the shared
//! `extflash_stub_abi::crc32_update`).
//!
//! gdbstub has no handler for it (it would parse `qCRC` as `qC` plus junk),
//! so the worker answers it before gdbstub (`server::worker::intercept`)
//! and calls [`GdbTarget::qcrc`]. Window bytes are summed on the target by
//! the stub (no SWD transfer of the data); everything else is read through
//! the probe in chunks.

use extflash_stub_abi::{crc32_update, CRC32_INIT};

use super::base::{read_memory, split_at_window};
use super::{GdbError, GdbTarget};

/// Chunk for CRCs over memory read through the probe.
const CHUNK: usize = 0x4000;

/// Parse `addr,len` (hex) after `qCRC:`.
pub fn parse_qcrc(args: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(args).ok()?;
    let (a, l) = text.split_once(',')?;
    Some((
        u32::from_str_radix(a, 16).ok()?,
        u32::from_str_radix(l, 16).ok()?,
    ))
}

impl GdbTarget {
    /// The qCRC of `len` bytes at `address`.
    pub fn qcrc(&mut self, address: u32, len: u32) -> Result<u32, GdbError> {
        if u64::from(address) + u64::from(len) > 1 << 32 {
            return Err(GdbError::MemoryWraps {
                address,
                len: len as usize,
            });
        }
        self.refuse_past_window(address, len as usize)?;
        let mut crc = CRC32_INIT;
        for (addr, n, in_window) in split_at_window(address, len as usize, self.window()) {
            if in_window {
                self.reprobe_ext_flash();
                crc = self.with_ext(|ext, core| ext.crc(core, addr, n as u32, crc))?;
                continue;
            }
            let mut buf = vec![0u8; CHUNK];
            let mut at = addr;
            let mut left = n;
            while left > 0 {
                let k = left.min(CHUNK);
                read_memory(self, at, &mut buf[..k])?;
                crc = crc32_update(crc, &buf[..k]);
                at = at.wrapping_add(k as u32);
                left -= k;
            }
        }
        Ok(crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qcrc_arguments_parse_as_hex() {
        assert_eq!(parse_qcrc(b"90000003,1003"), Some((0x9000_0003, 0x1003)));
        assert_eq!(parse_qcrc(b"8000000,40"), Some((0x0800_0000, 0x40)));
        assert_eq!(parse_qcrc(b"8000000"), None);
        assert_eq!(parse_qcrc(b"zz,1"), None);
        assert_eq!(parse_qcrc(b"1,100000000"), None);
    }
}
