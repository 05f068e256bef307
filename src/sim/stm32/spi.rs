//! One STM32F407 SPI (SPI1 0x4001_3000, SPI2 0x4000_3800, SPI3 0x4000_3C00),
//! master full-duplex mode.
//!
//! Owns the SPI registers, the TX buffer, the shift register (one frame in
//! flight) and the RX buffer. Time is virtual picoseconds and everything is
//! lazy: every access first calls [`Spi::advance`]. The wire is a
//! [`SpiLink`] supplied by the caller; a frame is exchanged (MOSI out, MISO
//! in) when it *starts*, and its received value lands in the RX buffer when
//! it ends, `bits * (2 << BR)` PCLK periods later.
//!
//! Modelling choices:
//! - Frames only run with SPE=1 and MSTR=1 (slave mode, RXONLY, BIDIMODE,
//!   I2S and TI mode are not modelled; CR2/I2S registers are storage).
//! - DR writes load the TX buffer whatever SPE is (as on silicon); the frame
//!   starts once SPE=1 and MSTR=1. Writing DR with TXE=0 overwrites the
//!   buffered data.
//! - MODF: only in master mode with SPE=1 when SSM=1 and SSI=0 (NSS input
//!   low); it clears MSTR and SPE. Cleared by reading SR (while MODF=1) then
//!   writing CR1; until then MSTR/SPE cannot be set again.
//! - Clearing SPE does not cut a frame already on the wire (it was already
//!   exchanged): it finishes; no new frame starts.
//! - LSBFIRST is honoured in the link call: the link always sees the frame
//!   as it appears on the wire, first bit in the MSB (bit `bits-1`).
//! - CPOL/CPHA are ignored (the link is assumed to match). CRC is not
//!   computed: RXCRCR/TXCRCR read 0, CRCERR never sets (but clears by
//!   writing 0).

/// Register offsets.
pub const CR1: u32 = 0x00;
/// Control register 2.
pub const CR2: u32 = 0x04;
/// Status register.
pub const SR: u32 = 0x08;
/// Data register.
pub const DR: u32 = 0x0C;
/// CRC polynomial register.
pub const CRCPR: u32 = 0x10;
/// RX CRC register (read-only).
pub const RXCRCR: u32 = 0x14;
/// TX CRC register (read-only).
pub const TXCRCR: u32 = 0x18;
/// I2S configuration register.
pub const I2SCFGR: u32 = 0x1C;
/// I2S prescaler register.
pub const I2SPR: u32 = 0x20;

/// CR1: master selection.
pub const CR1_MSTR: u32 = 1 << 2;
/// CR1: baud rate field shift (bits 5:3).
pub const CR1_BR_SHIFT: u32 = 3;
/// CR1: SPI enable.
pub const CR1_SPE: u32 = 1 << 6;
/// CR1: LSB first.
pub const CR1_LSBFIRST: u32 = 1 << 7;
/// CR1: internal slave select.
pub const CR1_SSI: u32 = 1 << 8;
/// CR1: software slave management.
pub const CR1_SSM: u32 = 1 << 9;
/// CR1: data frame format (1 = 16 bit).
pub const CR1_DFF: u32 = 1 << 11;

/// SR: receive buffer not empty.
pub const SR_RXNE: u32 = 1 << 0;
/// SR: transmit buffer empty.
pub const SR_TXE: u32 = 1 << 1;
/// SR: CRC error.
pub const SR_CRCERR: u32 = 1 << 4;
/// SR: mode fault.
pub const SR_MODF: u32 = 1 << 5;
/// SR: overrun.
pub const SR_OVR: u32 = 1 << 6;
/// SR: busy.
pub const SR_BSY: u32 = 1 << 7;

const CR2_WRITABLE: u32 = 0x00F7;
const I2SCFGR_WRITABLE: u32 = 0x0FBF;
const I2SPR_WRITABLE: u32 = 0x03FF;
const I2SPR_RESET: u32 = 0x0002;
const CRCPR_RESET: u32 = 0x0007;

/// The wire seen from the SPI master.
pub trait SpiLink {
    /// One frame on the wire: MOSI out, MISO in. `bits` is 8 or 16.
    fn exchange(&mut self, mosi: u16, bits: u8, now: u64) -> u16;
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    end: u64,
    rx: u16,
}

/// One SPI peripheral.
#[derive(Debug, Clone)]
pub struct Spi {
    index: u8,
    pclk_hz: u64,
    cr1: u32,
    cr2: u32,
    crcpr: u32,
    i2scfgr: u32,
    i2spr: u32,
    tx: Option<u16>,
    shifting: Option<Frame>,
    rx: u16,
    rxne: bool,
    ovr: bool,
    modf: bool,
    crcerr: bool,
    /// DR was read while OVR=1 (first half of the OVR clear sequence).
    ovr_dr_read: bool,
    /// SR was read while MODF=1 (first half of the MODF clear sequence).
    modf_sr_read: bool,
}

fn merge(old: u32, value: u32, mask: u32, writable: u32) -> u32 {
    let m = mask & writable;
    (old & !m) | (value & m)
}

fn reverse(v: u16, bits: u8) -> u16 {
    if bits >= 16 {
        v.reverse_bits()
    } else {
        v.reverse_bits() >> (16 - bits as u32)
    }
}

impl Spi {
    /// CR2.TXDMAEN with the TX buffer empty: a DMA stream may write DR.
    pub fn tx_dma_request(&self) -> bool {
        self.cr2 & (1 << 1) != 0 && self.tx.is_none()
    }

    /// CR2.RXDMAEN with RXNE: a DMA stream may read DR.
    pub fn rx_dma_request(&self) -> bool {
        self.cr2 & 1 != 0 && self.rxne
    }

    /// When the frame on the wire ends (RXNE rises, a buffered frame
    /// starts and TXE rises), if one is shifting.
    pub fn next_event(&self) -> Option<u64> {
        self.shifting.map(|f| f.end)
    }

    /// The bus clock changed (RCC): frames started from now on use it.
    pub fn set_pclk(&mut self, pclk_hz: u64) {
        self.pclk_hz = pclk_hz;
    }

    /// SPI number `index` (1..=3, informational) clocked by `pclk_hz`.
    pub fn new(index: u8, pclk_hz: u64) -> Self {
        let mut s = Spi {
            index,
            pclk_hz,
            cr1: 0,
            cr2: 0,
            crcpr: 0,
            i2scfgr: 0,
            i2spr: 0,
            tx: None,
            shifting: None,
            rx: 0,
            rxne: false,
            ovr: false,
            modf: false,
            crcerr: false,
            ovr_dr_read: false,
            modf_sr_read: false,
        };
        s.reset();
        s
    }

    /// SPI number given at construction.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Registers to reset values; buffered and in-flight frames are dropped.
    pub fn reset(&mut self) {
        self.cr1 = 0;
        self.cr2 = 0;
        self.crcpr = CRCPR_RESET;
        self.i2scfgr = 0;
        self.i2spr = I2SPR_RESET;
        self.tx = None;
        self.shifting = None;
        self.rx = 0;
        self.rxne = false;
        self.ovr = false;
        self.modf = false;
        self.crcerr = false;
        self.ovr_dr_read = false;
        self.modf_sr_read = false;
    }

    fn bits(&self) -> u8 {
        if self.cr1 & CR1_DFF != 0 {
            16
        } else {
            8
        }
    }

    fn active_master(&self) -> bool {
        self.cr1 & CR1_SPE != 0 && self.cr1 & CR1_MSTR != 0
    }

    /// Duration of one frame with the current CR1 (BR, DFF), at least 1 ps.
    pub fn frame_ps(&self) -> u64 {
        let br = (self.cr1 >> CR1_BR_SHIFT) & 7;
        let cycles = self.bits() as u128 * (2u128 << br);
        let ps = cycles * 1_000_000_000_000u128 / self.pclk_hz.max(1) as u128;
        (ps.min(u64::MAX as u128) as u64).max(1)
    }

    /// Start the buffered frame at `t` if the master is enabled and idle.
    fn try_start(&mut self, t: u64, link: &mut dyn SpiLink) -> bool {
        if self.shifting.is_some() || !self.active_master() {
            return false;
        }
        let Some(data) = self.tx.take() else {
            return false;
        };
        let bits = self.bits();
        let width_mask: u16 = if bits == 16 { 0xFFFF } else { 0xFF };
        let lsb = self.cr1 & CR1_LSBFIRST != 0;
        let mosi = data & width_mask;
        let wire = if lsb { reverse(mosi, bits) } else { mosi };
        let miso_wire = link.exchange(wire, bits, t) & width_mask;
        let rx = if lsb {
            reverse(miso_wire, bits)
        } else {
            miso_wire
        };
        self.shifting = Some(Frame {
            end: t.saturating_add(self.frame_ps()),
            rx,
        });
        true
    }

    /// Advance pending frames up to `now`: finish frames that ended (RX
    /// buffer / OVR) and start buffered ones (calling `link.exchange` with
    /// each frame's start time).
    pub fn advance(&mut self, now: u64, link: &mut dyn SpiLink) {
        let mut t = now;
        loop {
            if self.shifting.is_none() && !self.try_start(t, link) {
                break;
            }
            let Some(f) = self.shifting else { break };
            if f.end > now {
                break;
            }
            self.shifting = None;
            if self.rxne {
                self.ovr = true; // new data lost
            } else {
                self.rx = f.rx;
                self.rxne = true;
            }
            t = f.end;
        }
    }

    /// When BSY will drop if nothing more is written (the in-flight frame
    /// plus a buffered one); `None` when idle. May lie in the past until
    /// the next access.
    pub fn busy_until(&self) -> Option<u64> {
        let f = self.shifting?;
        if self.tx.is_some() && self.active_master() {
            Some(f.end.saturating_add(self.frame_ps()))
        } else {
            Some(f.end)
        }
    }

    /// CR1 as written (no side effect).
    pub fn cr1(&self) -> u32 {
        self.cr1
    }

    /// SR without the side effects of a read.
    pub fn status(&self) -> u32 {
        self.sr()
    }

    fn sr(&self) -> u32 {
        let mut sr = 0;
        if self.rxne {
            sr |= SR_RXNE;
        }
        if self.tx.is_none() {
            sr |= SR_TXE;
        }
        if self.crcerr {
            sr |= SR_CRCERR;
        }
        if self.modf {
            sr |= SR_MODF;
        }
        if self.ovr {
            sr |= SR_OVR;
        }
        if self.shifting.is_some() || (self.tx.is_some() && self.active_master()) {
            sr |= SR_BSY;
        }
        sr
    }

    fn check_modf(&mut self) {
        if self.active_master() && self.cr1 & CR1_SSM != 0 && self.cr1 & CR1_SSI == 0 {
            self.modf = true;
            self.modf_sr_read = false;
            self.cr1 &= !(CR1_MSTR | CR1_SPE);
        }
    }

    /// Read register at `offset` (unknown offsets read 0). DR and SR reads
    /// have their silicon side effects (RXNE / OVR / MODF clear sequences).
    pub fn read(&mut self, offset: u32, now: u64, link: &mut dyn SpiLink) -> u32 {
        self.advance(now, link);
        match offset {
            CR1 => self.cr1,
            CR2 => self.cr2,
            SR => {
                let sr = self.sr();
                if self.ovr && self.ovr_dr_read {
                    self.ovr = false;
                    self.ovr_dr_read = false;
                }
                if self.modf {
                    self.modf_sr_read = true;
                }
                sr
            }
            DR => {
                self.rxne = false;
                if self.ovr {
                    self.ovr_dr_read = true;
                }
                self.rx as u32
            }
            CRCPR => self.crcpr,
            I2SCFGR => self.i2scfgr,
            I2SPR => self.i2spr,
            _ => 0, // RXCRCR, TXCRCR (CRC not computed), unknown
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    pub fn write(&mut self, offset: u32, value: u32, mask: u32, now: u64, link: &mut dyn SpiLink) {
        self.advance(now, link);
        match offset {
            CR1 => {
                if self.modf && self.modf_sr_read {
                    self.modf = false;
                    self.modf_sr_read = false;
                }
                let mut new = merge(self.cr1, value, mask, 0xFFFF);
                if self.modf {
                    new &= !(CR1_MSTR | CR1_SPE);
                }
                self.cr1 = new;
                self.check_modf();
            }
            CR2 => self.cr2 = merge(self.cr2, value, mask, CR2_WRITABLE),
            SR if mask & SR_CRCERR != 0 && value & SR_CRCERR == 0 => self.crcerr = false,
            DR => {
                if mask & 0xFFFF == 0 {
                    return;
                }
                let old = self.tx.unwrap_or(0) as u32;
                let v = merge(old, value, mask, 0xFFFF);
                let v = if self.bits() == 16 { v } else { v & 0xFF };
                self.tx = Some(v as u16);
                self.check_modf();
            }
            CRCPR => self.crcpr = merge(self.crcpr, value, mask, 0xFFFF),
            I2SCFGR => self.i2scfgr = merge(self.i2scfgr, value, mask, I2SCFGR_WRITABLE),
            I2SPR => self.i2spr = merge(self.i2spr, value, mask, I2SPR_WRITABLE),
            _ => {}
        }
        self.advance(now, link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback (MISO = f(MOSI)) that records every frame.
    struct Echo {
        frames: Vec<(u16, u8, u64)>,
        xor: u16,
    }

    impl Echo {
        fn new() -> Self {
            Echo {
                frames: vec![],
                xor: 0,
            }
        }
    }

    impl SpiLink for Echo {
        fn exchange(&mut self, mosi: u16, bits: u8, now: u64) -> u16 {
            self.frames.push((mosi, bits, now));
            mosi ^ self.xor
        }
    }

    const MASTER: u32 = CR1_MSTR | CR1_SSM | CR1_SSI | CR1_SPE;
    const US: u64 = 1_000_000;

    /// 1 MHz PCLK: one PCLK period is exactly 1 µs.
    fn spi_1mhz(br: u32, extra: u32, link: &mut Echo) -> Spi {
        let mut s = Spi::new(1, 1_000_000);
        s.write(CR1, MASTER | (br << CR1_BR_SHIFT) | extra, !0, 0, link);
        s
    }

    #[test]
    fn reset_values() {
        let mut l = Echo::new();
        let mut s = Spi::new(2, 42_000_000);
        assert_eq!(s.read(CR1, 0, &mut l), 0);
        assert_eq!(s.read(CR2, 0, &mut l), 0);
        assert_eq!(s.read(SR, 0, &mut l), 0x0002);
        assert_eq!(s.read(CRCPR, 0, &mut l), 7);
        assert_eq!(s.read(I2SPR, 0, &mut l), 2);
        assert_eq!(s.read(0x1000, 0, &mut l), 0);
        assert_eq!(s.busy_until(), None);
    }

    #[test]
    fn byte_round_trip_through_echo_link() {
        let mut l = Echo::new();
        l.xor = 0xFF;
        let mut s = Spi::new(1, 84_000_000);
        s.write(CR1, MASTER, !0, 0, &mut l);
        s.write(DR, 0xA5, 0xFF, 1000, &mut l);
        assert_eq!(l.frames, vec![(0xA5, 8, 1000)]);
        let end = s.busy_until().unwrap();
        // 8 bits * 2 PCLK at 84 MHz = 16 / 84e6 s = 190476 ps.
        assert_eq!(end, 1000 + 190_476);
        assert_eq!(s.read(SR, end, &mut l), SR_TXE | SR_RXNE);
        assert_eq!(s.read(DR, end, &mut l), 0x5A);
        assert_eq!(s.read(SR, end, &mut l), SR_TXE);
    }

    #[test]
    fn rxne_txe_bsy_timing_at_br_fpclk_div_16() {
        let mut l = Echo::new();
        let mut s = spi_1mhz(3, 0, &mut l);
        let t0 = 10 * US;
        let frame = 8 * 16 * US;
        assert_eq!(s.frame_ps(), frame);
        s.write(DR, 0x11, !0, t0, &mut l);
        s.write(DR, 0x22, !0, t0, &mut l); // buffered behind the first
        assert_eq!(l.frames, vec![(0x11, 8, t0)]);
        assert_eq!(s.read(SR, t0, &mut l), SR_BSY);
        assert_eq!(s.busy_until(), Some(t0 + 2 * frame));
        assert_eq!(s.read(SR, t0 + frame - 1, &mut l), SR_BSY);
        // First frame done: RXNE, second starts at exactly t0 + frame.
        assert_eq!(s.read(SR, t0 + frame, &mut l), SR_BSY | SR_TXE | SR_RXNE);
        assert_eq!(l.frames, vec![(0x11, 8, t0), (0x22, 8, t0 + frame)]);
        assert_eq!(s.read(DR, t0 + frame, &mut l), 0x11);
        assert_eq!(s.read(SR, t0 + 2 * frame - 1, &mut l), SR_BSY | SR_TXE);
        assert_eq!(s.read(SR, t0 + 2 * frame, &mut l), SR_TXE | SR_RXNE);
        assert_eq!(s.read(DR, t0 + 2 * frame, &mut l), 0x22);
        assert_eq!(s.busy_until(), None);
    }

    #[test]
    fn ovr_when_rxne_not_read_keeps_old_data() {
        let mut l = Echo::new();
        let mut s = spi_1mhz(0, 0, &mut l);
        let frame = 16 * US;
        s.write(DR, 1, !0, 0, &mut l);
        s.write(DR, 2, !0, 0, &mut l);
        let sr = s.read(SR, 2 * frame, &mut l);
        assert_eq!(sr, SR_TXE | SR_RXNE | SR_OVR);
        assert_eq!(s.read(DR, 2 * frame, &mut l), 1);
        // OVR clears by DR read then SR read (the SR read still shows it).
        assert_eq!(s.read(SR, 2 * frame, &mut l) & SR_OVR, SR_OVR);
        assert_eq!(s.read(SR, 2 * frame, &mut l), SR_TXE);
    }

    #[test]
    fn sixteen_bit_frames_with_dff() {
        let mut l = Echo::new();
        let mut s = spi_1mhz(1, CR1_DFF, &mut l);
        s.write(DR, 0xBEEF, 0xFFFF, 0, &mut l);
        assert_eq!(l.frames, vec![(0xBEEF, 16, 0)]);
        assert_eq!(s.busy_until(), Some(16 * 4 * US));
        assert_eq!(s.read(DR, 64 * US, &mut l), 0xBEEF);
        // 8-bit mode truncates to the low byte.
        let mut l = Echo::new();
        let mut s = spi_1mhz(0, 0, &mut l);
        s.write(DR, 0xBEEF, 0xFFFF, 0, &mut l);
        assert_eq!(l.frames, vec![(0xEF, 8, 0)]);
    }

    #[test]
    fn lsbfirst_reverses_bits_on_the_wire() {
        let mut l = Echo::new();
        l.xor = 0x01; // wire bit 0 = last bit shifted
        let mut s = spi_1mhz(0, CR1_LSBFIRST, &mut l);
        s.write(DR, 0x01, !0, 0, &mut l);
        assert_eq!(l.frames, vec![(0x80, 8, 0)]);
        assert_eq!(s.read(DR, 16 * US, &mut l), 0x81);
    }

    #[test]
    fn modf_when_ssm_and_ssi_low_clears_mstr_and_spe() {
        let mut l = Echo::new();
        let mut s = Spi::new(1, 1_000_000);
        s.write(CR1, CR1_MSTR | CR1_SSM | CR1_SPE, !0, 0, &mut l);
        assert_eq!(s.read(CR1, 0, &mut l), CR1_SSM);
        s.write(DR, 0x55, !0, 0, &mut l);
        assert!(l.frames.is_empty());
        // MSTR/SPE cannot be set before the clear sequence.
        s.write(CR1, MASTER, !0, 0, &mut l);
        assert_eq!(s.read(CR1, 0, &mut l) & (CR1_MSTR | CR1_SPE), 0);
        assert!(l.frames.is_empty());
        assert_ne!(s.read(SR, 0, &mut l) & SR_MODF, 0);
        s.write(CR1, MASTER, !0, 0, &mut l);
        assert_eq!(s.read(SR, 0, &mut l) & SR_MODF, 0);
        assert_eq!(s.read(CR1, 0, &mut l), MASTER);
        // The byte buffered while disabled now goes out.
        assert_eq!(l.frames, vec![(0x55, 8, 0)]);
    }

    #[test]
    fn nothing_exchanged_while_spe_is_0() {
        let mut l = Echo::new();
        let mut s = Spi::new(3, 1_000_000);
        s.write(CR1, CR1_MSTR | CR1_SSM | CR1_SSI, !0, 0, &mut l);
        s.write(DR, 0x42, !0, 0, &mut l);
        assert_eq!(s.read(SR, 1_000 * US, &mut l), 0);
        assert!(l.frames.is_empty());
        assert_eq!(s.busy_until(), None);
        s.write(CR1, MASTER, !0, 5 * US, &mut l);
        assert_eq!(l.frames, vec![(0x42, 8, 5 * US)]);
    }

    #[test]
    fn clearing_spe_lets_the_current_frame_finish_but_starts_no_more() {
        let mut l = Echo::new();
        let mut s = spi_1mhz(0, 0, &mut l);
        s.write(DR, 1, !0, 0, &mut l);
        s.write(DR, 2, !0, 0, &mut l);
        s.write(CR1, CR1_MSTR | CR1_SSM | CR1_SSI, !0, US, &mut l);
        assert_eq!(s.read(SR, 100 * US, &mut l), SR_RXNE);
        assert_eq!(l.frames.len(), 1);
        assert_eq!(s.read(DR, 100 * US, &mut l), 1);
    }

    #[test]
    fn reset_drops_frames() {
        let mut l = Echo::new();
        let mut s = spi_1mhz(0, 0, &mut l);
        s.write(DR, 1, !0, 0, &mut l);
        s.reset();
        assert_eq!(s.busy_until(), None);
        assert_eq!(s.read(SR, US * 100, &mut l), SR_TXE);
        assert_eq!(s.read(CR1, 0, &mut l), 0);
    }

    #[test]
    fn zero_pclk_and_huge_times_do_not_panic() {
        let mut l = Echo::new();
        let mut s = Spi::new(0, 0);
        s.write(
            CR1,
            MASTER | (7 << CR1_BR_SHIFT) | CR1_DFF,
            !0,
            u64::MAX - 1,
            &mut l,
        );
        s.write(DR, 0xFFFF, !0, u64::MAX - 1, &mut l);
        s.write(DR, 0xFFFF, !0, u64::MAX - 1, &mut l);
        let _ = s.busy_until();
        let _ = s.read(SR, u64::MAX, &mut l);
        let _ = s.read(DR, u64::MAX, &mut l);
    }
}
