//! Identifying the chip (JEDEC ID, SFDP, the part table) and what acts on
//! it as a whole: status registers, `monitor flash info`, unprotect and
//! chip erase.

use std::time::{Duration, Instant};

use extflash_stub_abi::{EraseKind, Timeouts};
use probe_rs::Core;

use super::call::{timeout_for, Call};
use super::chip::{ChipInfo, StatusRegs};
use super::error::{ExtFlashError, SpiWiring, StubOp, StubStatusError};
use super::runner::StubSession;
use super::ExtFlash;
use super::{chip, info};
use crate::flash::{FlashEvent, FlashKind};

impl ExtFlash {
    /// Identify the chip (JEDEC ID, then SFDP, then the part table) and
    /// remember it.
    pub fn identify(&mut self, core: &mut Core<'_>) -> Result<&ChipInfo, ExtFlashError> {
        let window = self.ext.window;
        let (id, sfdp) = self.session(core, window, 0, |s, id| {
            let id = [(id >> 16) as u8, (id >> 8) as u8, id as u8];
            if chip::is_no_answer(id) {
                return Ok((id, None));
            }
            // A chip without SFDP (or with a table we cannot use) falls back
            // to the part table; a lost probe or a stuck stub does not.
            let sfdp = match read_sfdp(s) {
                Ok(g) => Some(g),
                Err(e @ ExtFlashError::Sfdp { .. }) => {
                    tracing::warn!(error = %crate::error::DisplayChain(&e), "external flash: no usable SFDP");
                    None
                }
                Err(e) => return Err(e),
            };
            Ok((id, sfdp))
        })?;
        if chip::is_no_answer(id) {
            return Err(super::pin_lock::no_chip_error(core, &self.ext));
        }
        if let Some(expected) = self.ext.jedec_id {
            if expected != id {
                return Err(ExtFlashError::UnexpectedChip {
                    wiring: self.wiring(),
                    expected,
                    found: id,
                });
            }
        }
        let part = chip::known_part(id);
        let (geometry, source) = match (sfdp, part) {
            (Some(g), _) => (g, "SFDP"),
            (None, Some(p)) => (chip::fallback_geometry(p), "part table"),
            (None, None) => (
                chip::Geometry {
                    // Nothing on the chip says its size: only the board
                    // file may, never a guess.
                    size: self.ext.size.ok_or(ExtFlashError::UnknownSize {
                        wiring: self.wiring(),
                        found: id,
                    })?,
                    page_size: chip::DEFAULT_PAGE,
                    erase_types: vec![chip::EraseType {
                        size: 0x1000,
                        opcode: extflash_stub_abi::spi_nor::op::SECTOR_ERASE,
                    }],
                },
                "board file (no SFDP, unknown part)",
            ),
        };
        // A window larger than the chip would wrap: addresses past its end
        // reach its start again.
        if let Some(pinned) = self.ext.size {
            if pinned > geometry.size {
                return Err(ExtFlashError::PinnedSizeTooLarge {
                    wiring: self.wiring(),
                    pinned,
                    chip: geometry.size,
                });
            }
        }
        let info = ChipInfo {
            jedec_id: id,
            name: part.map(|p| p.name.to_string()).unwrap_or_else(|| {
                format!("unknown SPI NOR {:02X} {:02X} {:02X}", id[0], id[1], id[2])
            }),
            geometry,
            source,
            timeouts: part.map(|p| p.timeouts).unwrap_or(Timeouts::W25Q64JV),
        };
        tracing::info!(
            jedec_id = ?id,
            size = info.geometry.size,
            source,
            "external flash: {} on {}",
            info.name,
            self.wiring()
        );
        Ok(self.chip.insert(info))
    }

    pub(super) fn ensure_identified(&mut self, core: &mut Core<'_>) -> Result<(), ExtFlashError> {
        if self.chip.is_none() {
            self.identify(core)?;
        }
        Ok(())
    }

    /// SR1..SR3.
    pub fn status(&mut self, core: &mut Core<'_>) -> Result<StatusRegs, ExtFlashError> {
        let w = self.ext.window;
        self.session(core, w, 0, |s, _| {
            s.call(Call::ReadStatus, 0, timeout_for(10, 0))
                .map(StatusRegs::from_word)
        })
    }

    /// The identified chip (identifying it if needed) with its status
    /// registers now: what `monitor flash info` shows.
    pub fn info(&mut self, core: &mut Core<'_>) -> Result<info::FlashInfo, ExtFlashError> {
        let chip = match self.chip.clone() {
            Some(chip) => chip,
            None => self.identify(core)?.clone(),
        };
        let status = self.status(core)?;
        Ok(info::FlashInfo {
            jedec_id: chip.jedec_id,
            name: chip.name,
            source: chip.source.to_string(),
            size: chip.geometry.size,
            page_size: chip.geometry.page_size,
            erase_types: chip.geometry.erase_types,
            window: self.window(),
            wiring: self.wiring(),
            status,
        })
    }

    /// Clear BP/TB/SEC/CMP in the volatile status registers (50h, then
    /// 01h): protection is back after a power cycle. Returns (before, after).
    pub fn unprotect(
        &mut self,
        core: &mut Core<'_>,
    ) -> Result<(StatusRegs, StatusRegs), ExtFlashError> {
        let w = self.ext.window;
        let limit = self.timeouts().write_status_ms;
        self.cache.clear();
        self.session(core, w, 0, |s, _| {
            let before = StatusRegs::from_word(s.call(Call::ReadStatus, 0, timeout_for(10, 0))?);
            let want = before.unprotected();
            // SR1 (BP/TB/SEC) with 50h+01h, SR2 (CMP) with 50h+31h.
            for (which, value) in [(1, want.0[0]), (2, want.0[1])] {
                s.call(
                    Call::WriteStatus {
                        which,
                        value,
                        volatile: true,
                    },
                    limit,
                    timeout_for(u64::from(limit), 0),
                )?;
            }
            let after = StatusRegs::from_word(s.call(Call::ReadStatus, 0, timeout_for(10, 0))?);
            Ok((before, after))
        })
    }

    /// Erase the whole chip (C7h), reporting [`FlashEvent::Waiting`] about
    /// once a second.
    pub fn erase_all(
        &mut self,
        core: &mut Core<'_>,
        events: &mut dyn FnMut(FlashEvent),
    ) -> Result<(), ExtFlashError> {
        self.ensure_identified(core)?;
        self.cache.clear();
        let limit = self.timeouts().chip_erase_ms;
        let size = self.size();
        let w = self.ext.window;
        let wiring = self.wiring();
        let started = Instant::now();
        self.session(core, w, size, |s, _| {
            refuse_if_protected(s, w, wiring)?;
            events(FlashEvent::Erasing {
                flash: FlashKind::External,
                address: w,
                size,
            });
            let mut last = Instant::now();
            s.call_progress(
                Call::Erase {
                    addr: 0,
                    kind: EraseKind::Chip,
                },
                limit,
                timeout_for(u64::from(limit), 0),
                &mut || {
                    if last.elapsed() >= Duration::from_secs(1) {
                        last = Instant::now();
                        events(FlashEvent::Waiting {
                            flash: FlashKind::External,
                            what: "chip erase",
                            elapsed: started.elapsed(),
                        });
                    }
                },
            )
        })?;
        events(FlashEvent::Done {
            flash: FlashKind::External,
            skipped: 0,
            erased: u64::from(size),
            programmed: 0,
            elapsed: started.elapsed(),
            board: None,
        });
        Ok(())
    }
}

/// Read the SFDP header and the basic flash parameter table.
fn read_sfdp(s: &mut StubSession<'_, '_>) -> Result<chip::Geometry, ExtFlashError> {
    let header_len = 64;
    s.call(
        Call::ReadSfdp {
            addr: 0,
            len: header_len,
        },
        0,
        timeout_for(10, 64),
    )?;
    let header = s.read_buffer(header_len)?;
    let (at, len) = chip::sfdp_basic_table_location(&header)
        .map_err(|source| ExtFlashError::Sfdp { address: 0, source })?;
    let len = (len as u32).min(256);
    s.call(Call::ReadSfdp { addr: at, len }, 0, timeout_for(10, 256))?;
    let table = s.read_buffer(len)?;
    chip::parse_basic_table(&table).map_err(|source| ExtFlashError::Sfdp {
        address: at,
        source,
    })
}

/// Refuse a load or chip erase up front, before anything is erased, when
/// the status registers configure any protection (`address`: where the
/// operation starts, for the message).
pub(super) fn refuse_if_protected(
    s: &mut StubSession<'_, '_>,
    address: u32,
    wiring: SpiWiring,
) -> Result<(), ExtFlashError> {
    let status = StatusRegs::from_word(s.call(Call::ReadStatus, 0, timeout_for(10, 0))?);
    if status.protects_something() {
        return Err(ExtFlashError::Stub {
            op: StubOp::ProtectionCheck,
            address,
            wiring,
            source: StubStatusError::Protected,
        });
    }
    Ok(())
}
