//! Raw probe reads and writes of target memory and core registers, each
//! failure mapped to an [`ExtFlashError`] that names the address or
//! register (shared by the stub session and the direct SPI path).

use probe_rs::{Core, MemoryInterface, RegisterId};

use super::error::{ExtFlashError, ProbeOp};

pub(super) fn rd(core: &mut Core<'_>, addr: u32) -> Result<u32, ExtFlashError> {
    core.read_word_32(addr.into())
        .map_err(ExtFlashError::probe(ProbeOp::ReadWord(addr)))
}

pub(super) fn wr(core: &mut Core<'_>, addr: u32, value: u32) -> Result<(), ExtFlashError> {
    core.write_word_32(addr.into(), value)
        .map_err(ExtFlashError::probe(ProbeOp::WriteWord(addr)))
}

/// Write `words` from `addr` in one memory call.
pub(super) fn write_block(
    core: &mut Core<'_>,
    addr: u32,
    words: &[u32],
) -> Result<(), ExtFlashError> {
    core.write_32(addr.into(), words)
        .map_err(ExtFlashError::probe(ProbeOp::WriteWord(addr)))
}

pub(super) fn rd_block(
    core: &mut Core<'_>,
    addr: u32,
    words: usize,
) -> Result<Vec<u32>, ExtFlashError> {
    let mut out = vec![0u32; words];
    core.read_32(addr.into(), &mut out)
        .map_err(ExtFlashError::probe(ProbeOp::ReadWord(addr)))?;
    Ok(out)
}

/// The application's words of the work area in `start..end`, saved before
/// the stub overwrites them; a failed read names the range.
pub(super) fn read_work_area(
    core: &mut Core<'_>,
    start: u32,
    end: u32,
) -> Result<Vec<u32>, ExtFlashError> {
    let mut out = vec![0u32; ((end - start) / 4) as usize];
    core.read_32(start.into(), &mut out)
        .map_err(ExtFlashError::probe(ProbeOp::SaveWorkArea { start, end }))?;
    Ok(out)
}

pub(super) fn reg_rd(core: &mut Core<'_>, sel: u16) -> Result<u32, ExtFlashError> {
    core.read_core_reg::<u32>(RegisterId(sel))
        .map_err(ExtFlashError::probe(ProbeOp::ReadRegister(sel)))
}

pub(super) fn reg_wr(core: &mut Core<'_>, sel: u16, value: u32) -> Result<(), ExtFlashError> {
    core.write_core_reg(RegisterId(sel), value)
        .map_err(ExtFlashError::probe(ProbeOp::WriteRegister(sel)))
}

pub(super) fn to_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
