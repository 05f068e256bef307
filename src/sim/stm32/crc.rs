//! STM32F407 CRC calculation unit (CRC, 0x4002_3000), RM0090 chapter 4.
//!
//! Owns DR, IDR and CR. Every write to DR feeds one 32-bit word, most
//! significant bit first, through CRC-32 (polynomial 0x04C11DB7, no
//! reflection, no final XOR); DR reads the running value. Writing CR.RESET
//! sets DR back to 0xFFFF_FFFF. IDR is a free byte. A sub-word write to
//! DR feeds the word with only the written byte lanes set (the other lanes
//! read as zero). The 4 AHB cycles per word are not modelled: results are
//! ready at once. This is the CRC GDB's `qCRC` asks for when the words are
//! fed in big-endian byte order.

/// Register offsets.
pub const DR: u32 = 0x00;
pub const IDR: u32 = 0x04;
pub const CR: u32 = 0x08;

/// CRC-32 polynomial (Ethernet), MSB first.
pub const POLY: u32 = 0x04C1_1DB7;
const INIT: u32 = 0xFFFF_FFFF;

/// CRC unit registers.
#[derive(Debug, Clone)]
pub struct Crc {
    dr: u32,
    idr: u8,
}

impl Default for Crc {
    fn default() -> Self {
        Self::new()
    }
}

/// One 32-bit word through the CRC, MSB first.
pub fn crc32_word(crc: u32, word: u32) -> u32 {
    let mut c = crc ^ word;
    for _ in 0..32 {
        c = if c & 0x8000_0000 != 0 {
            (c << 1) ^ POLY
        } else {
            c << 1
        };
    }
    c
}

impl Crc {
    /// Reset values: DR = 0xFFFF_FFFF, IDR = 0.
    pub fn new() -> Self {
        Crc { dr: INIT, idr: 0 }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Read register at `offset` (CR and unknown offsets read 0).
    pub fn read(&self, offset: u32) -> u32 {
        match offset {
            DR => self.dr,
            IDR => self.idr as u32,
            _ => 0,
        }
    }

    /// Write register at `offset` (`mask` selects the byte lanes written).
    pub fn write(&mut self, offset: u32, value: u32, mask: u32) {
        match offset {
            DR => self.dr = crc32_word(self.dr, value & mask),
            IDR if mask & 0xFF != 0 => self.idr = value as u8,
            CR if mask & 1 != 0 && value & 1 != 0 => self.dr = INIT,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr_accumulates_crc32_mpeg2_style_and_reset_restarts() {
        let mut c = Crc::new();
        assert_eq!(c.read(DR), 0xFFFF_FFFF);
        // "123456789" padded is not word-sized; use the word check value of
        // the STM32 CRC unit: 0x12345678 -> 0xDF8A8A2B (AN4187).
        c.write(DR, 0x1234_5678, !0);
        assert_eq!(c.read(DR), 0xDF8A_8A2B);
        c.write(CR, 1, !0);
        assert_eq!(c.read(DR), 0xFFFF_FFFF);
        assert_eq!(c.read(CR), 0, "RESET reads 0");
    }

    #[test]
    fn crc_of_words_matches_bitwise_crc32_msb_first_of_their_big_endian_bytes() {
        // Reference: CRC-32/MPEG-2 (init all ones, no reflection, no XOR
        // out), bit by bit over the bytes.
        fn reference(bytes: &[u8]) -> u32 {
            let mut crc = 0xFFFF_FFFFu32;
            for &b in bytes {
                crc ^= (b as u32) << 24;
                for _ in 0..8 {
                    crc = if crc & 0x8000_0000 != 0 {
                        (crc << 1) ^ POLY
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        let words = [0xDEAD_BEEFu32, 0x0000_0000, 0xFFFF_FFFF, 0x0102_0304];
        let mut c = Crc::new();
        for w in words {
            c.write(DR, w, !0);
        }
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        assert_eq!(c.read(DR), reference(&bytes));
    }

    #[test]
    fn idr_is_a_free_byte_and_sub_word_dr_writes_feed_only_their_lanes() {
        let mut c = Crc::new();
        c.write(IDR, 0x1A5, !0);
        assert_eq!(c.read(IDR), 0xA5);
        let mut d = Crc::new();
        c.write(DR, 0xAABB_CCDD, 0xFF);
        d.write(DR, 0xDD, !0);
        assert_eq!(c.read(DR), d.read(DR));
    }
}
