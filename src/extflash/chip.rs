//! Identifying the SPI NOR flash: JEDEC ID, the SFDP basic flash parameter
//! table (JESD216), a table of known parts, and the status-register bits.
//!
//! Pure: the runner fetches the bytes, this module interprets them.
//! Geometry comes from SFDP when the chip has a readable table, else from
//! [`KNOWN_PARTS`]; a size pinned in the board file wins over both.

use extflash_stub_abi::spi_nor::{op, w25q64jv};
use extflash_stub_abi::{EraseKind, Timeouts};

/// One erase granularity the chip offers, with its opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EraseType {
    pub size: u32,
    pub opcode: u8,
}

/// What the host needs to know about the chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes.
    pub size: u32,
    pub page_size: u32,
    /// Erase types, smallest first.
    pub erase_types: Vec<EraseType>,
}

impl Geometry {
    /// Erase kinds the stub can issue (it uses 20h/52h/D8h), largest first.
    pub fn stub_erase_kinds(&self) -> Vec<EraseKind> {
        let mut kinds: Vec<EraseKind> = self
            .erase_types
            .iter()
            .filter_map(|e| match (e.size, e.opcode) {
                (0x1000, op::SECTOR_ERASE) => Some(EraseKind::Sector4K),
                (0x8000, op::BLOCK_ERASE_32K) => Some(EraseKind::Block32K),
                (0x1_0000, op::BLOCK_ERASE_64K) => Some(EraseKind::Block64K),
                _ => None,
            })
            .collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.size()));
        kinds
    }

    /// The smallest erase size the stub can use (the GDB blocksize).
    pub fn min_erase(&self) -> Option<u32> {
        self.stub_erase_kinds().last().map(|k| k.size())
    }
}

/// A part in the data table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPart {
    pub jedec_id: [u8; 3],
    pub name: &'static str,
    pub size: u32,
    pub timeouts: Timeouts,
}

/// Standard Winbond 25Q erase types: 20h 4 KiB, 52h 32 KiB, D8h 64 KiB.
const WINBOND_ERASE: [EraseType; 3] = [
    EraseType {
        size: 0x1000,
        opcode: op::SECTOR_ERASE,
    },
    EraseType {
        size: 0x8000,
        opcode: op::BLOCK_ERASE_32K,
    },
    EraseType {
        size: 0x1_0000,
        opcode: op::BLOCK_ERASE_64K,
    },
];

/// Parts we know by JEDEC ID (datasheet maxima as timeouts).
pub const KNOWN_PARTS: &[KnownPart] = &[
    KnownPart {
        jedec_id: [0xEF, 0x40, 0x17],
        name: "Winbond W25Q64JV-IQ/JQ",
        size: 8 << 20,
        timeouts: Timeouts::W25Q64JV,
    },
    KnownPart {
        jedec_id: [0xEF, 0x70, 0x17],
        name: "Winbond W25Q64JV-IM/JM",
        size: 8 << 20,
        timeouts: Timeouts::W25Q64JV,
    },
    KnownPart {
        jedec_id: [0xEF, 0x40, 0x16],
        name: "Winbond W25Q32JV-IQ",
        size: 4 << 20,
        timeouts: Timeouts::W25Q64JV,
    },
    KnownPart {
        jedec_id: [0xEF, 0x40, 0x18],
        name: "Winbond W25Q128JV-IQ",
        size: 16 << 20,
        timeouts: Timeouts {
            chip_erase_ms: 200_000,
            ..Timeouts::W25Q64JV
        },
    },
];

pub fn known_part(id: [u8; 3]) -> Option<&'static KnownPart> {
    KNOWN_PARTS.iter().find(|p| p.jedec_id == id)
}

/// All ones (MISO floating high) or all zeros (MISO stuck low): nobody there.
pub fn is_no_answer(id: [u8; 3]) -> bool {
    id == [0xFF; 3] || id == [0x00; 3]
}

/// Largest size a 3-byte-address part can have.
pub const MAX_3BYTE_SIZE: u32 = crate::board::MAX_WINDOW_SIZE;
/// Program page size of SPI NOR parts when SFDP does not say otherwise.
pub const DEFAULT_PAGE: u32 = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfdpError {
    #[error("no SFDP signature (read {0:02X?})")]
    NoSignature([u8; 4]),
    #[error("SFDP has no basic flash parameter table")]
    NoBasicTable,
    #[error("SFDP basic table is too short ({dwords} DWORDs)")]
    Short { dwords: usize },
    #[error("SFDP density {bits} bits is not supported (3-byte addressing only)")]
    Density { bits: u64 },
}

/// Where the basic flash parameter table is: (address, length in bytes).
/// `header` is the first 16 + 8*n bytes of SFDP space.
pub fn sfdp_basic_table_location(header: &[u8]) -> Result<(u32, usize), SfdpError> {
    let sig: [u8; 4] = header
        .get(0..4)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; 4]);
    if &sig != b"SFDP" {
        return Err(SfdpError::NoSignature(sig));
    }
    let nph = usize::from(*header.get(6).unwrap_or(&0)) + 1;
    for i in 0..nph {
        let at = 8 + 8 * i;
        let Some(ph) = header.get(at..at + 8) else {
            break;
        };
        // ID LSB 0x00 and ID MSB 0xFF: the JEDEC basic flash parameter table.
        if ph[0] == 0x00 && ph[7] == 0xFF {
            let dwords = usize::from(ph[3]);
            let ptp = u32::from_le_bytes([ph[4], ph[5], ph[6], 0]);
            return Ok((ptp, dwords * 4));
        }
    }
    Err(SfdpError::NoBasicTable)
}

/// Geometry from the basic flash parameter table (JESD216: DW2 density,
/// DW8/DW9 erase types, DW11 page size).
pub fn parse_basic_table(table: &[u8]) -> Result<Geometry, SfdpError> {
    let dw = |n: usize| -> Option<u32> {
        let at = (n - 1) * 4;
        table
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(dw2), Some(dw8), Some(dw9)) = (dw(2), dw(8), dw(9)) else {
        return Err(SfdpError::Short {
            dwords: table.len() / 4,
        });
    };
    let bits: u64 = if dw2 & 0x8000_0000 == 0 {
        u64::from(dw2) + 1
    } else {
        1u64.checked_shl(dw2 & 0x7FFF_FFFF).unwrap_or(0)
    };
    let bytes = bits / 8;
    if bytes == 0 || bytes > u64::from(MAX_3BYTE_SIZE) {
        return Err(SfdpError::Density { bits });
    }
    let mut erase_types = Vec::new();
    for (exp, opcode) in [
        (dw8 & 0xFF, (dw8 >> 8) & 0xFF),
        ((dw8 >> 16) & 0xFF, dw8 >> 24),
        (dw9 & 0xFF, (dw9 >> 8) & 0xFF),
        ((dw9 >> 16) & 0xFF, dw9 >> 24),
    ] {
        if exp != 0 && exp < 32 {
            erase_types.push(EraseType {
                size: 1 << exp,
                opcode: opcode as u8,
            });
        }
    }
    erase_types.sort_by_key(|e| e.size);
    // DW11 bits 7:4: page size 2^N (JESD216A+); older tables: 256.
    let page_size = dw(11)
        .map(|d| (d >> 4) & 0xF)
        .filter(|n| *n > 0)
        .map(|n| 1u32 << n)
        .unwrap_or(256);
    Ok(Geometry {
        size: bytes as u32,
        page_size,
        erase_types,
    })
}

/// Geometry of a known part when SFDP is missing.
pub fn fallback_geometry(part: &KnownPart) -> Geometry {
    Geometry {
        size: part.size,
        page_size: DEFAULT_PAGE,
        erase_types: WINBOND_ERASE.to_vec(),
    }
}

/// Decoded status registers SR1..SR3 (Winbond layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRegs(pub [u8; 3]);

impl StatusRegs {
    pub const SR1_BUSY: u8 = 1 << 0;
    pub const SR1_WEL: u8 = 1 << 1;
    /// BP0..BP2.
    pub const SR1_BP: u8 = 0b111 << 2;
    pub const SR1_TB: u8 = 1 << 5;
    pub const SR1_SEC: u8 = 1 << 6;
    pub const SR1_SRP: u8 = 1 << 7;
    pub const SR2_SRL: u8 = 1 << 0;
    pub const SR2_QE: u8 = 1 << 1;
    pub const SR2_LB: u8 = 0b111 << 3;
    pub const SR2_CMP: u8 = 1 << 6;
    pub const SR3_WPS: u8 = 1 << 2;

    /// From the stub's `read_status` result: SR1 | SR2 << 8 | SR3 << 16.
    pub fn from_word(w: u32) -> StatusRegs {
        StatusRegs([w as u8, (w >> 8) as u8, (w >> 16) as u8])
    }

    pub fn bp(&self) -> u8 {
        (self.0[0] & Self::SR1_BP) >> 2
    }

    /// Whether any array protection is configured. BP=0 protects nothing
    /// unless CMP inverts it into "everything".
    pub fn protects_something(&self) -> bool {
        let cmp = self.0[1] & Self::SR2_CMP != 0;
        let bp = self.bp();
        (bp != 0) != cmp || self.0[2] & Self::SR3_WPS != 0
    }

    /// Status with BP/TB/SEC cleared in SR1 and CMP in SR2 (what
    /// `monitor flash unprotect` writes, volatile, after 50h).
    pub fn unprotected(&self) -> StatusRegs {
        let mut s = self.0;
        s[0] &= !(Self::SR1_BP | Self::SR1_TB | Self::SR1_SEC);
        s[1] &= !Self::SR2_CMP;
        StatusRegs(s)
    }

    /// One line per register, named bits, for `monitor flash info`.
    pub fn describe(&self) -> String {
        let [s1, s2, s3] = self.0;
        let bit = |v: u8, m: u8| u8::from(v & m != 0);
        let protection = if self.protects_something() {
            format!(
                "PROTECTED (BP={:03b} TB={} SEC={} CMP={}{}): run `monitor flash unprotect`",
                self.bp(),
                bit(s1, Self::SR1_TB),
                bit(s1, Self::SR1_SEC),
                bit(s2, Self::SR2_CMP),
                if s3 & Self::SR3_WPS != 0 {
                    ", WPS=1 individual block locks"
                } else {
                    ""
                }
            )
        } else {
            "none".to_string()
        };
        format!(
            "status: SR1={s1:02X} SR2={s2:02X} SR3={s3:02X} (BUSY={} WEL={} SRP={} SRL={} QE={} LB={:03b})\n\
             protection: {protection}",
            bit(s1, Self::SR1_BUSY),
            bit(s1, Self::SR1_WEL),
            bit(s1, Self::SR1_SRP),
            bit(s2, Self::SR2_SRL),
            bit(s2, Self::SR2_QE),
            (s2 & Self::SR2_LB) >> 3,
        )
    }
}

/// The identified chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipInfo {
    pub jedec_id: [u8; 3],
    pub name: String,
    pub geometry: Geometry,
    /// Where the geometry came from ("SFDP", "part table", "board file").
    pub source: &'static str,
    pub timeouts: Timeouts,
}

/// Typical W25Q64JV erase times in ms ([`w25q64jv`]: tSE 45, tBE1 120,
/// tBE2 150) by erase size: what the planner weighs one large erase
/// against several small ones with, and the bench's chip limit.
pub const fn typical_erase_ms(size: u32) -> u64 {
    let us = match size {
        0..=0x1000 => w25q64jv::TYP_SECTOR_ERASE_US,
        0x1001..=0x8000 => w25q64jv::TYP_BLOCK32_ERASE_US,
        _ => w25q64jv::TYP_BLOCK64_ERASE_US,
    };
    us as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SFDP bytes of a W25Q64JV (as the datasheet and the virtual chip give).
    const HEADER: [u8; 16] = [
        0x53, 0x46, 0x44, 0x50, 0x05, 0x01, 0x00, 0xFF, //
        0x00, 0x05, 0x01, 0x10, 0x80, 0x00, 0x00, 0xFF,
    ];
    const BFPT: [u8; 64] = [
        0xE5, 0x20, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0x03, //
        0x44, 0xEB, 0x08, 0x6B, 0x08, 0x3B, 0x42, 0xBB, //
        0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, //
        0xFF, 0xFF, 0x40, 0xEB, 0x0C, 0x20, 0x0F, 0x52, //
        0x10, 0xD8, 0x00, 0x00, 0x36, 0x02, 0xA6, 0x00, //
        0x82, 0xEA, 0x14, 0xC4, 0xE9, 0x63, 0x76, 0x33, //
        0x7A, 0x75, 0x7A, 0x75, 0xF7, 0xA2, 0xD5, 0x5C, //
        0x19, 0xF7, 0x4D, 0xFF, 0xE9, 0x30, 0xF8, 0x80,
    ];

    #[test]
    fn w25q64jv_sfdp_gives_8mib_three_erase_types_and_256_byte_pages() {
        assert_eq!(sfdp_basic_table_location(&HEADER), Ok((0x80, 64)));
        let g = parse_basic_table(&BFPT).unwrap();
        assert_eq!(g.size, 8 << 20);
        assert_eq!(g.page_size, 256);
        assert_eq!(
            g.erase_types,
            [
                EraseType {
                    size: 0x1000,
                    opcode: 0x20
                },
                EraseType {
                    size: 0x8000,
                    opcode: 0x52
                },
                EraseType {
                    size: 0x10000,
                    opcode: 0xD8
                },
            ]
        );
        assert_eq!(
            g.stub_erase_kinds(),
            [
                EraseKind::Block64K,
                EraseKind::Block32K,
                EraseKind::Sector4K
            ]
        );
        assert_eq!(g.min_erase(), Some(0x1000));
    }

    #[test]
    fn sfdp_density_in_power_of_two_form() {
        let mut t = BFPT;
        // bit 31 set: 2^N bits; N = 26 → 64 Mbit.
        t[4..8].copy_from_slice(&(0x8000_0000u32 | 26).to_le_bytes());
        assert_eq!(parse_basic_table(&t).unwrap().size, 8 << 20);
        t[4..8].copy_from_slice(&(0x8000_0000u32 | 40).to_le_bytes());
        assert!(matches!(
            parse_basic_table(&t),
            Err(SfdpError::Density { .. })
        ));
    }

    #[test]
    fn invalid_sfdp_is_reported() {
        assert_eq!(
            sfdp_basic_table_location(&[0xFF; 16]),
            Err(SfdpError::NoSignature([0xFF; 4]))
        );
        let mut h = HEADER;
        h[8] = 0x84; // some vendor table only
        h[15] = 0x01;
        assert_eq!(sfdp_basic_table_location(&h), Err(SfdpError::NoBasicTable));
        assert!(matches!(
            parse_basic_table(&BFPT[..16]),
            Err(SfdpError::Short { dwords: 4 })
        ));
    }

    #[test]
    fn known_parts_include_both_w25q64jv_ids() {
        for id in [[0xEF, 0x40, 0x17], [0xEF, 0x70, 0x17]] {
            let p = known_part(id).unwrap();
            assert_eq!(p.size, 8 << 20);
            assert!(p.name.contains("W25Q64JV"));
        }
        assert!(known_part([0xC2, 0x20, 0x17]).is_none());
        assert!(is_no_answer([0xFF; 3]) && is_no_answer([0; 3]));
        assert!(!is_no_answer([0xEF, 0x40, 0x17]));
    }

    #[test]
    fn status_protection_decoding() {
        let clear = StatusRegs([0x00, 0x02, 0x60]);
        assert!(!clear.protects_something());
        assert!(clear.describe().contains("protection: none"));
        let bp = StatusRegs([0b0001_1100, 0x02, 0x60]);
        assert!(bp.protects_something());
        assert!(bp.describe().contains("monitor flash unprotect"));
        // CMP=1 with BP=0 protects the whole array.
        assert!(StatusRegs([0, 0x42, 0x60]).protects_something());
        let un = StatusRegs([0b1111_1100, 0x43, 0x60]).unprotected();
        assert_eq!(un.0, [0x80, 0x03, 0x60], "SRP, SRL and QE kept");
        assert!(!un.protects_something());
    }
}
