//! Embedded flash of the STM32F407VE: the FLASH interface registers
//! (0x4002_3C00) and the 512 KiB main array (0x0800_0000).
//!
//! Owns the array bytes, the unlock state machines (KEYR, OPTKEYR), the
//! program/erase state (BSY periods in virtual picoseconds), the error flags
//! and the committed option bytes (which survive [`FlashCtrl::reset`]).
//!
//! Modelling choices (RM0090 §3, STM32F407 datasheet "Flash memory programming"):
//! - Program/erase results are written into the array **immediately** when the
//!   operation starts; BSY only models the time. (Reads during BSY return the
//!   new data; on silicon they would stall until the end.)
//! - Timing: typical datasheet values. Word/half-word/byte program 16 µs (the
//!   datasheet gives one tPROG for x8/x16/x32). Erase by parallelism
//!   x8 / x16 / x32: 16 KiB sector 400 / 300 / 250 ms, 64 KiB 1200 / 700 /
//!   550 ms, 128 KiB 2000 / 1300 / 1000 ms, mass erase 16 / 11 / 8 s. x64
//!   (external VPP) uses the x32 numbers. Option-byte programming has no
//!   datasheet figure; it takes [`OPT_PROGRAM_PS`].
//! - Accesses that would stall the AHB bus on silicon (a CR/OPTCR write or an
//!   array write while BSY=1) are performed at the end of the BSY period:
//!   the previous operation completes first and the new one starts then.
//!   Later accesses never take effect before a stalled one did. Callers
//!   wanting exact CPU timing check [`FlashCtrl::busy_until`] first.
//! - Wrong programming sequences only set SR flags, they never fault the bus:
//!   a write with PG=0 or while locked sets PGSERR, a size not matching PSIZE
//!   sets PGPERR, a misaligned access (which on silicon would cross a 128-bit
//!   row or split) sets PGAERR, a write-protected sector (option nWRP) sets
//!   WRPERR. OPERR is set with any of them when ERRIE=1. [`FlashCtrl::write_array`]
//!   returns `Err(())` only when the access is outside the array or of an
//!   invalid size (a bus fault).
//! - SER+STRT with SNB > 7 (nonexistent sector on the 512 KiB part, or an
//!   invalid code) and SER+MER together set PGSERR: the control register is
//!   "not correctly configured". STRT with neither SER nor MER does nothing.
//! - x64 parallelism accepts word writes (firmware writes the two halves of
//!   a double word as two words), each programmed as a word.
//! - A wrong key in KEYR (OPTKEYR) locks CR (OPTCR) until reset and the
//!   write bus-faults, as does every key write after it until reset
//!   (RM0090 3.5.1); [`FlashCtrl::write`] returns false for those. KEYR
//!   writes while already unlocked are ignored.

use std::ops::Range;

/// Size of the main array of the STM32F407VE.
pub const FLASH_SIZE: usize = 512 * 1024;

/// Sector layout of the 512 KiB array: (offset, size) of sectors 0..=7.
pub const SECTORS: [(usize, usize); 8] = [
    (0x0_0000, 0x4000),
    (0x0_4000, 0x4000),
    (0x0_8000, 0x4000),
    (0x0_C000, 0x4000),
    (0x1_0000, 0x1_0000),
    (0x2_0000, 0x2_0000),
    (0x4_0000, 0x2_0000),
    (0x6_0000, 0x2_0000),
];

/// Sector containing byte `offset` of the array, if any.
pub fn sector_of(offset: usize) -> Option<usize> {
    SECTORS
        .iter()
        .position(|&(start, size)| offset >= start && offset < start + size)
}

/// First KEYR key.
pub const KEY1: u32 = 0x4567_0123;
/// Second KEYR key.
pub const KEY2: u32 = 0xCDEF_89AB;
/// First OPTKEYR key.
pub const OPTKEY1: u32 = 0x0819_2A3B;
/// Second OPTKEYR key.
pub const OPTKEY2: u32 = 0x4C5D_6E7F;

/// Register offsets.
pub const ACR: u32 = 0x00;
/// Key register (write-only).
pub const KEYR: u32 = 0x04;
/// Option key register (write-only).
pub const OPTKEYR: u32 = 0x08;
/// Status register.
pub const SR: u32 = 0x0C;
/// Control register.
pub const CR: u32 = 0x10;
/// Option control register.
pub const OPTCR: u32 = 0x14;

/// SR: end of operation.
pub const SR_EOP: u32 = 1 << 0;
/// SR: operation error (only with ERRIE).
pub const SR_OPERR: u32 = 1 << 1;
/// SR: write protection error.
pub const SR_WRPERR: u32 = 1 << 4;
/// SR: programming alignment error.
pub const SR_PGAERR: u32 = 1 << 5;
/// SR: programming parallelism error.
pub const SR_PGPERR: u32 = 1 << 6;
/// SR: programming sequence error.
pub const SR_PGSERR: u32 = 1 << 7;
/// SR: busy.
pub const SR_BSY: u32 = 1 << 16;
const SR_W1C: u32 = SR_EOP | SR_OPERR | SR_WRPERR | SR_PGAERR | SR_PGPERR | SR_PGSERR;

/// CR: programming.
pub const CR_PG: u32 = 1 << 0;
/// CR: sector erase.
pub const CR_SER: u32 = 1 << 1;
/// CR: mass erase.
pub const CR_MER: u32 = 1 << 2;
/// CR: sector number field (bits 6:3).
pub const CR_SNB_MASK: u32 = 0xF << 3;
/// CR: program size field (bits 9:8).
pub const CR_PSIZE_MASK: u32 = 0x3 << 8;
/// CR: start erase.
pub const CR_STRT: u32 = 1 << 16;
/// CR: end-of-operation interrupt enable.
pub const CR_EOPIE: u32 = 1 << 24;
/// CR: error interrupt enable.
pub const CR_ERRIE: u32 = 1 << 25;
/// CR: lock.
pub const CR_LOCK: u32 = 1 << 31;
const CR_WRITABLE: u32 =
    CR_PG | CR_SER | CR_MER | CR_SNB_MASK | CR_PSIZE_MASK | CR_STRT | CR_EOPIE | CR_ERRIE | CR_LOCK;
const CR_RESET: u32 = CR_LOCK;

/// OPTCR: option lock.
pub const OPTCR_OPTLOCK: u32 = 1 << 0;
/// OPTCR: option start.
pub const OPTCR_OPTSTRT: u32 = 1 << 1;
const OPTCR_WRITABLE: u32 = 0x0FFF_FFEF;
/// OPTCR reset value with factory option bytes (RDP level 0, no WRP, WDG_SW).
pub const OPTCR_RESET: u32 = 0x0FFF_AAED;
const ACR_WRITABLE: u32 = 0x0000_1F07;

const PS_PER_US: u64 = 1_000_000;
const PS_PER_MS: u64 = 1_000_000_000;
/// Typical program time of one access (datasheet tPROG, any parallelism).
pub const PROGRAM_PS: u64 = 16 * PS_PER_US;
/// Option-byte programming time (no datasheet figure; modelled).
pub const OPT_PROGRAM_PS: u64 = 250 * PS_PER_MS;

/// Typical erase time of a sector of `size` bytes at PSIZE `psize`.
fn sector_erase_ps(size: usize, psize: u32) -> u64 {
    let ms = match (size, psize) {
        (0x4000, 0) => 400,
        (0x4000, 1) => 300,
        (0x4000, _) => 250,
        (0x1_0000, 0) => 1200,
        (0x1_0000, 1) => 700,
        (0x1_0000, _) => 550,
        (_, 0) => 2000,
        (_, 1) => 1300,
        (_, _) => 1000,
    };
    ms * PS_PER_MS
}

/// Typical mass-erase time at PSIZE `psize`.
fn mass_erase_ps(psize: u32) -> u64 {
    let ms = match psize {
        0 => 16_000,
        1 => 11_000,
        _ => 8_000,
    };
    ms * PS_PER_MS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Program,
    Erase,
    OptionBytes,
}

/// FLASH interface plus main array.
#[derive(Debug, Clone)]
pub struct FlashCtrl {
    array: Vec<u8>,
    acr: u32,
    sr: u32,
    cr: u32,
    optcr: u32,
    /// Committed option bytes in OPTCR layout (bits 1:0 zero); survive reset.
    opt_bytes: u32,
    key_stage: u8,
    key_fault: bool,
    optkey_stage: u8,
    optkey_fault: bool,
    busy: Option<(u64, Op)>,
    /// Effective time of the latest stalled access: later accesses never
    /// take effect before it (the stalled bus master was held until then).
    floor: u64,
    dirty: Option<Range<usize>>,
}

fn merge(old: u32, value: u32, mask: u32, writable: u32) -> u32 {
    let m = mask & writable;
    (old & !m) | (value & m)
}

impl FlashCtrl {
    /// New flash with `contents` (resized to [`FLASH_SIZE`], 0xFF fill) and
    /// factory option bytes.
    pub fn new(mut contents: Vec<u8>) -> Self {
        contents.resize(FLASH_SIZE, 0xFF);
        let mut f = FlashCtrl {
            array: contents,
            acr: 0,
            sr: 0,
            cr: CR_RESET,
            optcr: OPTCR_RESET,
            opt_bytes: OPTCR_RESET & !(OPTCR_OPTLOCK | OPTCR_OPTSTRT),
            key_stage: 0,
            key_fault: false,
            optkey_stage: 0,
            optkey_fault: false,
            busy: None,
            floor: 0,
            dirty: None,
        };
        f.reset();
        f
    }

    /// System reset: registers to reset values (OPTCR reloaded from the
    /// committed option bytes); array contents and dirty range kept. An
    /// operation in progress is cut short (its data is already written).
    pub fn reset(&mut self) {
        self.acr = 0;
        self.sr = 0;
        self.cr = CR_RESET;
        self.optcr = self.opt_bytes | OPTCR_OPTLOCK;
        self.key_stage = 0;
        self.key_fault = false;
        self.optkey_stage = 0;
        self.optkey_fault = false;
        self.busy = None;
    }

    /// The main array.
    pub fn array(&self) -> &[u8] {
        &self.array
    }

    /// Committed option bytes in OPTCR layout (OPTLOCK/OPTSTRT bits zero).
    pub fn option_bytes(&self) -> u32 {
        self.opt_bytes
    }

    /// True while CR is locked.
    pub fn is_locked(&self) -> bool {
        self.cr & CR_LOCK != 0
    }

    /// End of the current BSY period, if an operation has not been retired
    /// yet (it may lie in the past until the next access at a later `now`).
    pub fn busy_until(&self) -> Option<u64> {
        self.busy.map(|(end, _)| end)
    }

    /// Array byte range changed since the last call (union of all changes).
    pub fn take_dirty(&mut self) -> Option<Range<usize>> {
        self.dirty.take()
    }

    fn mark_dirty(&mut self, r: Range<usize>) {
        self.dirty = Some(match self.dirty.take() {
            Some(d) => d.start.min(r.start)..d.end.max(r.end),
            None => r,
        });
    }

    /// Retire the operation in progress if it has ended by `now`.
    fn update(&mut self, now: u64) {
        if let Some((end, op)) = self.busy {
            if now >= end {
                self.busy = None;
                match op {
                    Op::Erase => self.cr &= !CR_STRT,
                    Op::OptionBytes => {
                        self.opt_bytes =
                            self.optcr & OPTCR_WRITABLE & !(OPTCR_OPTLOCK | OPTCR_OPTSTRT);
                        self.optcr &= !OPTCR_OPTSTRT;
                    }
                    Op::Program => {}
                }
                if self.cr & CR_EOPIE != 0 {
                    self.sr |= SR_EOP;
                }
            }
        }
    }

    /// Time at which a bus-stalling access issued at `now` takes effect;
    /// retires the operation that ends by then.
    fn stall(&mut self, now: u64) -> u64 {
        let mut t = now.max(self.floor);
        if let Some((end, _)) = self.busy {
            t = t.max(end);
        }
        self.floor = t;
        self.update(t);
        t
    }

    fn error(&mut self, flag: u32) {
        self.sr |= flag;
        if self.cr & CR_ERRIE != 0 {
            self.sr |= SR_OPERR;
        }
    }

    /// FLASH_CR.PSIZE (0 = x8 .. 3 = x64).
    pub fn psize(&self) -> u32 {
        (self.cr & CR_PSIZE_MASK) >> 8
    }

    /// Whether CR.PG is set (and CR unlocked): array writes program.
    pub fn programming(&self) -> bool {
        self.cr & CR_PG != 0 && self.cr & CR_LOCK == 0
    }

    fn sector_protected(&self, sector: usize) -> bool {
        self.opt_bytes & (1 << (16 + sector)) == 0
    }

    /// FLASH_ACR: LATENCY (wait states) in bits 2:0, PRFTEN 8, ICEN 9.
    pub fn acr(&self) -> u32 {
        self.acr
    }

    /// Read register at `offset`.
    pub fn read(&mut self, offset: u32, now: u64) -> u32 {
        self.update(now);
        match offset {
            ACR => self.acr,
            SR => self.sr | if self.busy.is_some() { SR_BSY } else { 0 },
            CR => self.cr,
            OPTCR => self.optcr,
            _ => 0, // KEYR, OPTKEYR are write-only; unknown offsets read 0.
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    /// False when the access bus-faults: a wrong unlock key.
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, now: u64) -> bool {
        match offset {
            ACR => {
                self.update(now);
                self.acr = merge(self.acr, value, mask, ACR_WRITABLE);
            }
            KEYR => {
                self.update(now);
                if self.key_fault {
                    return false;
                }
                if self.cr & CR_LOCK == 0 {
                    return true;
                }
                let v = value & mask;
                match (self.key_stage, v) {
                    (0, KEY1) => self.key_stage = 1,
                    (1, KEY2) => {
                        self.key_stage = 0;
                        self.cr &= !CR_LOCK;
                    }
                    _ => {
                        self.key_stage = 0;
                        self.key_fault = true;
                        return false;
                    }
                }
            }
            OPTKEYR => {
                self.update(now);
                if self.optkey_fault {
                    return false;
                }
                if self.optcr & OPTCR_OPTLOCK == 0 {
                    return true;
                }
                let v = value & mask;
                match (self.optkey_stage, v) {
                    (0, OPTKEY1) => self.optkey_stage = 1,
                    (1, OPTKEY2) => {
                        self.optkey_stage = 0;
                        self.optcr &= !OPTCR_OPTLOCK;
                    }
                    _ => {
                        self.optkey_stage = 0;
                        self.optkey_fault = true;
                        return false;
                    }
                }
            }
            SR => {
                self.update(now);
                self.sr &= !(value & mask & SR_W1C);
            }
            CR => {
                let t = self.stall(now);
                if self.cr & CR_LOCK != 0 {
                    return true;
                }
                let new = merge(self.cr, value, mask, CR_WRITABLE);
                // STRT is only set by a write of 1 and cleared by hardware.
                self.cr = (new & !CR_STRT) | (self.cr & CR_STRT);
                if self.cr & CR_LOCK != 0 {
                    self.key_stage = 0;
                }
                if value & mask & CR_STRT != 0 {
                    self.start_erase(t);
                }
            }
            OPTCR => {
                let t = self.stall(now);
                if self.optcr & OPTCR_OPTLOCK != 0 {
                    return true;
                }
                let new = merge(self.optcr, value, mask, OPTCR_WRITABLE);
                self.optcr = (new & !OPTCR_OPTSTRT) | (self.optcr & OPTCR_OPTSTRT);
                if self.optcr & OPTCR_OPTLOCK != 0 {
                    self.optkey_stage = 0;
                }
                if value & mask & OPTCR_OPTSTRT != 0 {
                    self.optcr |= OPTCR_OPTSTRT;
                    self.busy = Some((t.saturating_add(OPT_PROGRAM_PS), Op::OptionBytes));
                }
            }
            _ => {}
        }
        true
    }

    fn start_erase(&mut self, t: u64) {
        let ser = self.cr & CR_SER != 0;
        let mer = self.cr & CR_MER != 0;
        let psize = self.psize();
        let dur = if ser && mer {
            self.error(SR_PGSERR);
            return;
        } else if mer {
            if (0..SECTORS.len()).any(|s| self.sector_protected(s)) {
                self.error(SR_WRPERR);
                return;
            }
            self.array.iter_mut().for_each(|b| *b = 0xFF);
            self.mark_dirty(0..FLASH_SIZE);
            mass_erase_ps(psize)
        } else if ser {
            let snb = ((self.cr & CR_SNB_MASK) >> 3) as usize;
            let Some(&(start, size)) = SECTORS.get(snb) else {
                self.error(SR_PGSERR);
                return;
            };
            if self.sector_protected(snb) {
                self.error(SR_WRPERR);
                return;
            }
            self.array[start..start + size]
                .iter_mut()
                .for_each(|b| *b = 0xFF);
            self.mark_dirty(start..start + size);
            sector_erase_ps(size, psize)
        } else {
            return;
        };
        self.cr |= CR_STRT;
        self.busy = Some((t.saturating_add(dur), Op::Erase));
    }

    /// A write to the flash array (from CPU or debugger): `size` 1/2/4 bytes
    /// at byte `offset` into the array, `value` little-endian.
    ///
    /// Programs only when CR.PG=1, unlocked, size matching PSIZE (else
    /// PGPERR), naturally aligned (else PGAERR), sector not write-protected
    /// (else WRPERR); PG=0 or locked sets PGSERR. Programming only clears
    /// bits (new = old & value). A write during BSY takes effect at the end
    /// of BSY (bus stall). Returns `Err(())` only for a bus fault: offset
    /// beyond the array or a size other than 1/2/4; sequence errors set flags
    /// and return `Ok(())`.
    #[allow(clippy::result_unit_err)] // API: the only failure is a bus fault
    pub fn write_array(&mut self, offset: u32, value: u32, size: u32, now: u64) -> Result<(), ()> {
        if !matches!(size, 1 | 2 | 4) {
            return Err(());
        }
        let off = offset as usize;
        let end = off.checked_add(size as usize).ok_or(())?;
        if end > FLASH_SIZE {
            return Err(());
        }
        let t = self.stall(now);
        if self.cr & CR_PG == 0 || self.cr & CR_LOCK != 0 {
            self.error(SR_PGSERR);
            return Ok(());
        }
        let expected = match self.psize() {
            0 => 1,
            1 => 2,
            _ => 4,
        };
        if size != expected {
            self.error(SR_PGPERR);
            return Ok(());
        }
        if offset & (size - 1) != 0 {
            self.error(SR_PGAERR);
            return Ok(());
        }
        if sector_of(off).is_none_or(|s| self.sector_protected(s)) {
            self.error(SR_WRPERR);
            return Ok(());
        }
        for (i, b) in self.array[off..end].iter_mut().enumerate() {
            *b &= (value >> (8 * i)) as u8;
        }
        self.mark_dirty(off..end);
        self.busy = Some((t.saturating_add(PROGRAM_PS), Op::Program));
        Ok(())
    }

    /// Read `size` (1..=4) bytes little-endian at `offset`; bytes outside the
    /// array read 0xFF, `size` > 4 is treated as 4.
    pub fn read_array(&self, offset: u32, size: u32) -> u32 {
        let off = offset as usize;
        match size {
            4 => {
                if let Some(b) = off.checked_add(4).and_then(|end| self.array.get(off..end)) {
                    return u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            2 => {
                if let Some(b) = off.checked_add(2).and_then(|end| self.array.get(off..end)) {
                    return u16::from_le_bytes([b[0], b[1]]) as u32;
                }
            }
            _ => {}
        }
        let mut v = 0u32;
        for i in 0..size.min(4) {
            let b = (offset as usize)
                .checked_add(i as usize)
                .and_then(|a| self.array.get(a))
                .copied()
                .unwrap_or(0xFF);
            v |= (b as u32) << (8 * i);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = PS_PER_MS;

    fn unlocked() -> FlashCtrl {
        let mut f = FlashCtrl::new(vec![]);
        f.write(KEYR, KEY1, !0, 0);
        f.write(KEYR, KEY2, !0, 0);
        f
    }

    fn psize32() -> u32 {
        2 << 8
    }

    fn erase_sector(f: &mut FlashCtrl, snb: u32, now: u64) {
        f.write(CR, CR_SER | (snb << 3) | psize32(), !0, now);
        f.write(CR, CR_SER | (snb << 3) | psize32() | CR_STRT, !0, now);
    }

    #[test]
    fn reset_values_match_rm0090() {
        let mut f = FlashCtrl::new(vec![1, 2, 3]);
        assert_eq!(f.read(ACR, 0), 0);
        assert_eq!(f.read(SR, 0), 0);
        assert_eq!(f.read(CR, 0), 0x8000_0000);
        assert_eq!(f.read(OPTCR, 0), 0x0FFF_AAED);
        assert_eq!(f.array().len(), FLASH_SIZE);
        assert_eq!(f.read_array(0, 4), 0xFF03_0201);
    }

    #[test]
    fn unlock_with_both_keys_then_lock_by_writing_lock_bit() {
        let mut f = FlashCtrl::new(vec![]);
        f.write(KEYR, KEY1, !0, 0);
        assert!(f.is_locked());
        f.write(KEYR, KEY2, !0, 0);
        assert!(!f.is_locked());
        assert_eq!(f.read(CR, 0) & CR_LOCK, 0);
        f.write(CR, CR_LOCK, !0, 0);
        assert!(f.is_locked());
        // Unlock again works after relock.
        f.write(KEYR, KEY1, !0, 0);
        f.write(KEYR, KEY2, !0, 0);
        assert!(!f.is_locked());
    }

    #[test]
    fn wrong_key_locks_until_reset() {
        let mut f = FlashCtrl::new(vec![]);
        assert!(f.write(KEYR, KEY1, !0, 0));
        assert!(!f.write(KEYR, 0x1234_5678, !0, 0), "a wrong key bus-faults");
        assert!(
            !f.write(KEYR, KEY1, !0, 0),
            "and so does every key after it"
        );
        assert!(!f.write(KEYR, KEY2, !0, 0));
        assert!(f.is_locked());
        f.reset();
        f.write(KEYR, KEY1, !0, 0);
        f.write(KEYR, KEY2, !0, 0);
        assert!(!f.is_locked());
    }

    #[test]
    fn keys_in_wrong_order_lock() {
        let mut f = FlashCtrl::new(vec![]);
        f.write(KEYR, KEY2, !0, 0);
        f.write(KEYR, KEY1, !0, 0);
        f.write(KEYR, KEY2, !0, 0);
        assert!(f.is_locked());
    }

    #[test]
    fn cr_writes_ignored_while_locked() {
        let mut f = FlashCtrl::new(vec![]);
        f.write(CR, CR_PG | psize32(), !0, 0);
        assert_eq!(f.read(CR, 0), CR_LOCK);
    }

    #[test]
    fn sector_4_erase_touches_only_0x10000_to_0x1ffff() {
        let mut f = unlocked();
        f.array.iter_mut().for_each(|b| *b = 0);
        erase_sector(&mut f, 4, 0);
        assert_eq!(f.read_array(0xFFFC, 4), 0);
        assert_eq!(f.read_array(0x10000, 4), 0xFFFF_FFFF);
        assert_eq!(f.read_array(0x1FFFC, 4), 0xFFFF_FFFF);
        assert_eq!(f.read_array(0x20000, 4), 0);
        assert!(f.array()[0x10000..0x20000].iter().all(|&b| b == 0xFF));
        assert_eq!(f.array().iter().filter(|&&b| b == 0xFF).count(), 0x10000);
        assert_eq!(f.take_dirty(), Some(0x10000..0x20000));
        assert_eq!(f.take_dirty(), None);
    }

    #[test]
    fn sector_5_erase_touches_only_0x20000_to_0x3ffff() {
        let mut f = unlocked();
        f.array.iter_mut().for_each(|b| *b = 0);
        erase_sector(&mut f, 5, 0);
        assert_eq!(f.read_array(0x1FFFF, 1), 0);
        assert_eq!(f.read_array(0x20000, 1), 0xFF);
        assert_eq!(f.read_array(0x3FFFF, 1), 0xFF);
        assert_eq!(f.read_array(0x40000, 1), 0);
        assert_eq!(f.array().iter().filter(|&&b| b == 0xFF).count(), 0x20000);
    }

    #[test]
    fn sector_erase_bsy_lasts_typical_time_then_eop() {
        let t0 = 5 * MS;
        let mut f = unlocked();
        let cr = CR_SER | psize32() | CR_EOPIE;
        f.write(CR, cr, !0, t0);
        f.write(CR, cr | CR_STRT, !0, t0);
        assert_eq!(f.busy_until(), Some(t0 + 250 * MS));
        assert_ne!(f.read(SR, t0) & SR_BSY, 0);
        assert_ne!(f.read(CR, t0) & CR_STRT, 0);
        assert_ne!(f.read(SR, t0 + 250 * MS - 1) & SR_BSY, 0);
        assert_eq!(f.read(SR, t0 + 250 * MS - 1) & SR_EOP, 0);
        let sr = f.read(SR, t0 + 250 * MS);
        assert_eq!(sr & SR_BSY, 0);
        assert_ne!(sr & SR_EOP, 0);
        assert_eq!(f.read(CR, t0 + 250 * MS) & CR_STRT, 0);
        assert_eq!(f.busy_until(), None);
        f.write(SR, SR_EOP, !0, t0 + 250 * MS);
        assert_eq!(f.read(SR, t0 + 250 * MS), 0);
    }

    #[test]
    fn erase_times_depend_on_sector_size_and_psize() {
        let mut f = unlocked();
        erase_sector(&mut f, 4, 0);
        assert_eq!(f.busy_until(), Some(550 * MS));
        let t = 1000 * MS;
        erase_sector(&mut f, 7, t);
        assert_eq!(f.busy_until(), Some(t + 1000 * MS));
        let t = 3000 * MS;
        f.write(CR, CR_SER | (1 << 3), !0, t); // x8
        f.write(CR, CR_SER | (1 << 3) | CR_STRT, !0, t);
        assert_eq!(f.busy_until(), Some(t + 400 * MS));
    }

    #[test]
    fn no_eop_without_eopie() {
        let mut f = unlocked();
        erase_sector(&mut f, 0, 0);
        assert_eq!(f.read(SR, 10_000 * MS), 0);
    }

    #[test]
    fn program_x32_clears_bits_only() {
        let mut f = unlocked();
        f.write(CR, CR_PG | psize32(), !0, 0);
        f.write_array(0x100, 0xF0F0_1234, 4, 0).unwrap();
        assert_eq!(f.read_array(0x100, 4), 0xF0F0_1234);
        let t = f.busy_until().unwrap();
        assert_eq!(t, 16 * PS_PER_US);
        f.write_array(0x100, 0x0FFF_FF00, 4, t).unwrap();
        assert_eq!(f.read_array(0x100, 4), 0x00F0_1200);
        assert_eq!(f.read(SR, t + PROGRAM_PS) & (SR_W1C | SR_BSY), 0);
        assert_eq!(f.take_dirty(), Some(0x100..0x104));
    }

    #[test]
    fn program_without_unlock_sets_no_data() {
        let mut f = FlashCtrl::new(vec![]);
        f.write(CR, CR_PG | psize32(), !0, 0);
        f.write_array(0, 0, 4, 0).unwrap();
        assert_eq!(f.read_array(0, 4), 0xFFFF_FFFF);
        assert_ne!(f.read(SR, 0) & SR_PGSERR, 0);
        assert_eq!(f.busy_until(), None);
        assert_eq!(f.take_dirty(), None);
    }

    #[test]
    fn psize_mismatch_sets_pgperr_and_writes_nothing() {
        let mut f = unlocked();
        f.write(CR, CR_PG | psize32(), !0, 0);
        f.write_array(0x10, 0, 1, 0).unwrap();
        f.write_array(0x10, 0, 2, 0).unwrap();
        assert_eq!(f.read_array(0x10, 4), 0xFFFF_FFFF);
        assert_eq!(f.read(SR, 0), SR_PGPERR);
        f.write(CR, CR_PG | CR_ERRIE, !0, 0); // x8
        f.write_array(0x10, 0, 4, 0).unwrap();
        assert_eq!(f.read(SR, 0), SR_PGPERR | SR_OPERR);
        f.write_array(0x11, 0x12, 1, 0).unwrap();
        assert_eq!(f.read_array(0x10, 4), 0xFFFF_12FF);
    }

    #[test]
    fn misaligned_word_sets_pgaerr() {
        let mut f = unlocked();
        f.write(CR, CR_PG | psize32(), !0, 0);
        f.write_array(0x12, 0, 4, 0).unwrap();
        assert_eq!(f.read(SR, 0), SR_PGAERR);
        assert_eq!(f.read_array(0x10, 4), 0xFFFF_FFFF);
    }

    #[test]
    fn write_without_pg_sets_pgserr_without_bus_fault() {
        let mut f = unlocked();
        f.write(CR, psize32(), !0, 0);
        assert_eq!(f.write_array(0x20, 0, 4, 0), Ok(()));
        assert_eq!(f.read_array(0x20, 4), 0xFFFF_FFFF);
        assert_eq!(f.read(SR, 0), SR_PGSERR);
        f.write(SR, SR_PGSERR, 0xFF, 0);
        assert_eq!(f.read(SR, 0), 0);
    }

    #[test]
    fn out_of_range_or_bad_size_faults_the_bus() {
        let mut f = unlocked();
        f.write(CR, CR_PG | psize32(), !0, 0);
        assert_eq!(f.write_array(FLASH_SIZE as u32, 0, 4, 0), Err(()));
        assert_eq!(f.write_array(FLASH_SIZE as u32 - 2, 0, 4, 0), Err(()));
        assert_eq!(f.write_array(u32::MAX, 0, 4, 0), Err(()));
        assert_eq!(f.write_array(0, 0, 3, 0), Err(()));
        assert_eq!(f.read_array(u32::MAX, 4), 0xFFFF_FFFF);
        assert_eq!(f.read_array(FLASH_SIZE as u32 - 1, 2), 0xFFFF);
        assert_eq!(f.read(SR, 0), 0);
    }

    #[test]
    fn snb_beyond_512k_sets_pgserr_and_erases_nothing() {
        let mut f = unlocked();
        f.array.iter_mut().for_each(|b| *b = 0);
        for snb in [8u32, 11, 15] {
            erase_sector(&mut f, snb, 0);
            assert_eq!(f.read(SR, 0), SR_PGSERR);
            assert_eq!(f.busy_until(), None);
            f.write(SR, !0, !0, 0);
        }
        assert!(f.array().iter().all(|&b| b == 0));
    }

    #[test]
    fn mass_erase_clears_whole_array_and_takes_8s_at_x32() {
        let mut f = unlocked();
        f.array.iter_mut().for_each(|b| *b = 0x55);
        f.write(CR, CR_MER | psize32(), !0, 0);
        f.write(CR, CR_MER | psize32() | CR_STRT, !0, 0);
        assert!(f.array().iter().all(|&b| b == 0xFF));
        assert_eq!(f.busy_until(), Some(8000 * MS));
        assert_eq!(f.take_dirty(), Some(0..FLASH_SIZE));
        assert_ne!(f.read(SR, 7999 * MS) & SR_BSY, 0);
        assert_eq!(f.read(SR, 8000 * MS) & SR_BSY, 0);
    }

    #[test]
    fn ser_and_mer_together_do_nothing() {
        let mut f = unlocked();
        f.array.iter_mut().for_each(|b| *b = 0);
        f.write(CR, CR_MER | CR_SER | CR_STRT, !0, 0);
        assert!(f.array().iter().all(|&b| b == 0));
        assert_eq!(f.read(SR, 0), SR_PGSERR);
    }

    #[test]
    fn access_during_bsy_takes_effect_at_bsy_end() {
        let mut f = unlocked();
        erase_sector(&mut f, 0, 0);
        let end = 250 * MS;
        // CR write stalls: the new program setup happens at `end`.
        f.write(CR, CR_PG | psize32(), !0, MS);
        assert_eq!(f.read(CR, MS), CR_PG | psize32());
        f.write_array(0, 0, 4, MS).unwrap();
        assert_eq!(f.busy_until(), Some(end + PROGRAM_PS));
        assert_eq!(f.read_array(0, 4), 0);
        assert_eq!(f.read(SR, end + PROGRAM_PS) & SR_BSY, 0);
    }

    #[test]
    fn write_protected_sector_sets_wrperr() {
        let mut f = unlocked();
        f.write(OPTKEYR, OPTKEY1, !0, 0);
        f.write(OPTKEYR, OPTKEY2, !0, 0);
        assert_eq!(f.read(OPTCR, 0) & OPTCR_OPTLOCK, 0);
        // Protect sector 2 (nWRP2 = 0) and commit.
        f.write(
            OPTCR,
            (OPTCR_RESET & !OPTCR_OPTLOCK & !(1 << 18)) | OPTCR_OPTSTRT,
            !0,
            0,
        );
        assert_ne!(f.read(SR, 0) & SR_BSY, 0);
        let t = OPT_PROGRAM_PS;
        assert_eq!(f.read(OPTCR, t) & OPTCR_OPTSTRT, 0);
        erase_sector(&mut f, 2, t);
        assert_eq!(f.read(SR, t), SR_WRPERR);
        f.write(CR, CR_PG | psize32(), !0, t);
        f.write_array(0x8000, 0, 4, t).unwrap();
        assert_eq!(f.read_array(0x8000, 4), 0xFFFF_FFFF);
        f.write(CR, CR_MER | CR_STRT, !0, t);
        assert_eq!(f.busy_until(), None);
        // Survives reset.
        f.reset();
        assert_eq!(f.read(OPTCR, t) & (1 << 18), 0);
    }

    #[test]
    fn optcr_locked_ignores_writes() {
        let mut f = FlashCtrl::new(vec![]);
        f.write(OPTCR, 0, !0, 0);
        assert_eq!(f.read(OPTCR, 0), OPTCR_RESET);
        f.write(OPTKEYR, 0xDEAD, !0, 0);
        f.write(OPTKEYR, OPTKEY1, !0, 0);
        f.write(OPTKEYR, OPTKEY2, !0, 0);
        assert_eq!(f.read(OPTCR, 0), OPTCR_RESET);
    }

    #[test]
    fn acr_is_storage_and_byte_lanes_respected() {
        let mut f = FlashCtrl::new(vec![]);
        f.write(ACR, 0x0000_0705, 0x0000_00FF, 0);
        assert_eq!(f.read(ACR, 0), 0x05);
        f.write(ACR, 0x0000_0705, 0x0000_FF00, 0);
        assert_eq!(f.read(ACR, 0), 0x705);
        assert_eq!(f.read(KEYR, 0), 0);
        assert_eq!(f.read(0x1234, 0), 0);
        f.write(0x1234, !0, !0, 0);
    }
}
