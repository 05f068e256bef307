//! STM32F407 DMA controller registers (DMA2, 0x4002_6400), RM0090 chapter
//! 10, and the per-stream transfer state.
//!
//! Owns LISR/HISR, LIFCR/HIFCR and each stream's CR, NDTR, PAR, M0AR,
//! M1AR and FCR. Moving data is the bus's job (`Mcu::service_dma`): this
//! module says which stream wants which item next and records completion.
//! Modelled: direct mode (FIFO disabled; FCR is storage, FS reads "empty"),
//! single transfers, PINC/MINC, PSIZE/MSIZE (equal sizes), circular mode,
//! memory-to-memory (DMA2 only: all items at once when enabled), TCIF/HTIF
//! and EN cleared at the end; a bus error (an address outside what DMA2
//! reaches, CCM RAM among them) sets TEIF and disables the stream (RM0090
//! 10.3.17). Not modelled: double buffering (DBM), bursts, FIFO
//! thresholds, priorities, interrupts (flags only).

/// Register offsets.
pub const LISR: u32 = 0x00;
pub const HISR: u32 = 0x04;
pub const LIFCR: u32 = 0x08;
pub const HIFCR: u32 = 0x0C;
/// Stream `x` registers start at `STREAM0 + x * STREAM_STRIDE`.
pub const STREAM0: u32 = 0x10;
pub const STREAM_STRIDE: u32 = 0x18;

/// SxCR bits.
pub const CR_EN: u32 = 1 << 0;
pub const CR_DIR_SHIFT: u32 = 6;
pub const CR_CIRC: u32 = 1 << 8;
pub const CR_PINC: u32 = 1 << 9;
pub const CR_MINC: u32 = 1 << 10;
pub const CR_PSIZE_SHIFT: u32 = 11;
pub const CR_MSIZE_SHIFT: u32 = 13;
pub const CR_CHSEL_SHIFT: u32 = 25;
const CR_WRITABLE: u32 = 0x0FEF_FFFF;

/// Stream flags (shifted by [`flag_shift`]).
pub const TCIF: u32 = 1 << 5;
pub const HTIF: u32 = 1 << 4;
pub const TEIF: u32 = 1 << 3;
/// Flag bits of all four streams of one ISR (FEIF, DMEIF, TEIF, HTIF, TCIF).
const IFCR_MASK: u32 = 0x0F7D_0F7D;
const FCR_RESET: u32 = 0x21;

/// Transfer direction (SxCR.DIR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    PeriphToMem,
    MemToPeriph,
    MemToMem,
}

#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    cr: u32,
    ndtr: u32,
    par: u32,
    m0ar: u32,
    m1ar: u32,
    fcr: u32,
    /// NDTR at enable (for circular reload and the half-transfer flag).
    initial: u32,
    /// Items moved since enable (addresses advance by it).
    done: u32,
}

/// One item to move: from `src` to `dst`, `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub src: u32,
    pub dst: u32,
    pub size: u32,
}

/// A DMA controller (8 streams).
#[derive(Debug, Clone)]
pub struct Dma {
    streams: [Stream; 8],
    isr: [u32; 2],
}

impl Default for Dma {
    fn default() -> Self {
        Self::new()
    }
}

/// Bit position of stream `x`'s flags in LISR/HISR.
pub fn flag_shift(x: usize) -> u32 {
    [0, 6, 16, 22][x % 4]
}

impl Dma {
    pub fn new() -> Self {
        let mut d = Dma {
            streams: [Stream::default(); 8],
            isr: [0; 2],
        };
        for s in &mut d.streams {
            s.fcr = FCR_RESET;
        }
        d
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether stream `x` is enabled.
    pub fn enabled(&self, x: usize) -> bool {
        self.streams[x].cr & CR_EN != 0
    }

    /// Whether stream `x` is enabled with items left (what
    /// [`Dma::next_item`] returns an item for).
    pub fn waiting(&self, x: usize) -> bool {
        let s = &self.streams[x];
        s.cr & CR_EN != 0 && s.ndtr != 0
    }

    /// Stream `x`'s interrupt request: a flag up with its enable set
    /// (TCIE, HTIE, TEIE, DMEIE in CR; FEIE in FCR; RM0090 10.5.5).
    pub fn irq_line(&self, x: usize) -> bool {
        let flags = (self.isr[x / 4] >> flag_shift(x)) & 0x3D;
        let s = &self.streams[x];
        let enables = (s.cr & 0x1E) << 1 | (s.fcr >> 7) & 1;
        flags & enables != 0
    }

    /// Channel selected on stream `x`.
    pub fn channel(&self, x: usize) -> u32 {
        (self.streams[x].cr >> CR_CHSEL_SHIFT) & 7
    }

    pub fn dir(&self, x: usize) -> Dir {
        match (self.streams[x].cr >> CR_DIR_SHIFT) & 3 {
            0 => Dir::PeriphToMem,
            1 => Dir::MemToPeriph,
            _ => Dir::MemToMem,
        }
    }

    /// The next item of stream `x`, if it is enabled with items left.
    pub fn next_item(&self, x: usize) -> Option<Item> {
        let s = &self.streams[x];
        if s.cr & CR_EN == 0 || s.ndtr == 0 {
            return None;
        }
        let size = |shift: u32| match (s.cr >> shift) & 3 {
            0 => 1,
            1 => 2,
            _ => 4,
        };
        let psize = size(CR_PSIZE_SHIFT);
        let msize = size(CR_MSIZE_SHIFT);
        let step = |inc: u32, sz: u32| if s.cr & inc != 0 { s.done * sz } else { 0 };
        let p = s.par.wrapping_add(step(CR_PINC, psize));
        let m = s.m0ar.wrapping_add(step(CR_MINC, msize));
        Some(match self.dir(x) {
            Dir::PeriphToMem => Item {
                src: p,
                dst: m,
                size: psize,
            },
            // In memory-to-memory mode PAR is the source.
            Dir::MemToMem => Item {
                src: p,
                dst: m,
                size: psize,
            },
            Dir::MemToPeriph => Item {
                src: m,
                dst: p,
                size: msize,
            },
        })
    }

    /// Stream `x` moved one item: count it down, raise HTIF/TCIF, end or
    /// reload (circular) at zero.
    pub fn item_done(&mut self, x: usize) {
        let flags = &mut self.isr[x / 4];
        let s = &mut self.streams[x];
        if s.ndtr == 0 {
            return;
        }
        s.ndtr -= 1;
        s.done += 1;
        if s.ndtr == s.initial / 2 {
            *flags |= HTIF << flag_shift(x);
        }
        if s.ndtr == 0 {
            *flags |= TCIF << flag_shift(x);
            if s.cr & CR_CIRC != 0 {
                s.ndtr = s.initial;
                s.done = 0;
            } else {
                s.cr &= !CR_EN;
            }
        }
    }

    /// Stream `x` met a bus error: TEIF, and the stream disabled
    /// (RM0090 10.3.17, "Transfer error").
    pub fn transfer_error(&mut self, x: usize) {
        self.isr[x / 4] |= TEIF << flag_shift(x);
        self.streams[x].cr &= !CR_EN;
    }

    /// Read register at `offset`.
    pub fn read(&self, offset: u32) -> u32 {
        match offset {
            LISR => self.isr[0],
            HISR => self.isr[1],
            LIFCR | HIFCR => 0,
            o if (STREAM0..STREAM0 + 8 * STREAM_STRIDE).contains(&o) => {
                let s = &self.streams[((o - STREAM0) / STREAM_STRIDE) as usize];
                match (o - STREAM0) % STREAM_STRIDE {
                    0x0 => s.cr,
                    0x4 => s.ndtr,
                    0x8 => s.par,
                    0xC => s.m0ar,
                    0x10 => s.m1ar,
                    _ => s.fcr,
                }
            }
            _ => 0,
        }
    }

    /// Write register at `offset`. Configuration registers are read-only
    /// while the stream is enabled (RM0090 10.5.5); NDTR is 16 bits.
    pub fn write(&mut self, offset: u32, value: u32, mask: u32) {
        let v = value & mask;
        match offset {
            LIFCR => self.isr[0] &= !(v & IFCR_MASK),
            HIFCR => self.isr[1] &= !(v & IFCR_MASK),
            o if (STREAM0..STREAM0 + 8 * STREAM_STRIDE).contains(&o) => {
                let x = ((o - STREAM0) / STREAM_STRIDE) as usize;
                let s = &mut self.streams[x];
                let merge = |old: u32, w: u32| (old & !(mask & w)) | (value & mask & w);
                let reg = (o - STREAM0) % STREAM_STRIDE;
                if reg == 0 {
                    let was = s.cr & CR_EN != 0;
                    s.cr = if was {
                        // Only EN can change while enabled.
                        merge(s.cr, CR_EN)
                    } else {
                        merge(s.cr, CR_WRITABLE)
                    };
                    if !was && s.cr & CR_EN != 0 {
                        s.initial = s.ndtr;
                        s.done = 0;
                    }
                    return;
                }
                if s.cr & CR_EN != 0 {
                    return;
                }
                match reg {
                    0x4 => s.ndtr = merge(s.ndtr, 0xFFFF),
                    0x8 => s.par = merge(s.par, !0),
                    0xC => s.m0ar = merge(s.m0ar, !0),
                    0x10 => s.m1ar = merge(s.m1ar, !0),
                    _ => s.fcr = merge(s.fcr, 0x87) | (s.fcr & 0x38),
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S3: u32 = STREAM0 + 3 * STREAM_STRIDE;

    #[test]
    fn reset_values_and_config_locked_while_enabled() {
        let mut d = Dma::new();
        assert_eq!(d.read(S3), 0);
        assert_eq!(d.read(S3 + 0x14), 0x21, "FCR: FIFO empty, FTH 1/2");
        d.write(S3 + 4, 0x1_0004, !0);
        assert_eq!(d.read(S3 + 4), 4, "NDTR is 16 bits");
        d.write(
            S3,
            3 << CR_CHSEL_SHIFT | 1 << CR_DIR_SHIFT | CR_MINC | CR_EN,
            !0,
        );
        d.write(S3 + 4, 9, !0);
        d.write(S3 + 0xC, 0x2000_0000, !0);
        assert_eq!(d.read(S3 + 4), 4, "NDTR locked while EN");
        assert_eq!(d.read(S3 + 0xC), 0, "M0AR locked while EN");
        d.write(S3, CR_PINC | CR_EN, !0);
        assert_eq!(d.read(S3) & CR_PINC, 0, "only EN changes while enabled");
        assert_eq!(d.channel(3), 3);
        assert_eq!(d.dir(3), Dir::MemToPeriph);
    }

    #[test]
    fn items_count_down_raise_flags_and_end_or_reload() {
        let mut d = Dma::new();
        d.write(S3 + 4, 4, !0);
        d.write(S3 + 8, 0x4001_300C, !0);
        d.write(S3 + 0xC, 0x2000_0100, !0);
        d.write(
            S3,
            3 << CR_CHSEL_SHIFT | 1 << CR_DIR_SHIFT | CR_MINC | CR_EN,
            !0,
        );
        let mut items = Vec::new();
        while let Some(i) = d.next_item(3) {
            items.push(i);
            d.item_done(3);
        }
        assert_eq!(items.len(), 4);
        assert_eq!(
            items[2],
            Item {
                src: 0x2000_0102,
                dst: 0x4001_300C,
                size: 1
            }
        );
        let shift = flag_shift(3);
        assert_eq!(d.read(LISR) >> shift & (TCIF | HTIF), TCIF | HTIF);
        assert!(!d.enabled(3), "EN clears at the end");
        d.write(LIFCR, (TCIF | HTIF) << shift, !0);
        assert_eq!(d.read(LISR), 0);

        // Circular: reloads and keeps EN.
        d.write(S3 + 4, 4, !0);
        d.write(
            S3,
            3 << CR_CHSEL_SHIFT | 1 << CR_DIR_SHIFT | CR_CIRC | CR_EN,
            !0,
        );
        for _ in 0..5 {
            d.item_done(3);
        }
        assert!(d.enabled(3));
        assert_eq!(d.read(S3 + 4), 3);
        assert_eq!(d.read(LISR) >> shift & TCIF, TCIF);
    }
}
