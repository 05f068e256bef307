//! [`FlashInfo`]: what `monitor flash info` reports about the external chip
//! (JEDEC ID, geometry, window, wiring, status and protection), as data.
//! `Display` renders it for people; [`FlashInfo::to_record`] and
//! [`FlashInfo::from_record`] carry it through `monitor flash info --record`
//! to the command line, which renders or checks the same struct instead of
//! reading console text.

use std::fmt;
use std::ops::Range;

use super::chip::{EraseType, StatusRegs};
use super::SpiWiring;
use crate::board::Pin;

/// The external flash as identified, with its status registers now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashInfo {
    pub jedec_id: [u8; 3],
    pub name: String,
    /// Where the geometry came from ("SFDP", "part table", "board file").
    pub source: String,
    pub size: u32,
    pub page_size: u32,
    /// Erase types, smallest first.
    pub erase_types: Vec<EraseType>,
    pub window: Range<u64>,
    pub wiring: SpiWiring,
    pub status: StatusRegs,
}

/// The first word of a record line.
const RECORD_TAG: &str = "flash-info";

/// A record line that is not one [`FlashInfo::to_record`] writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a `flash info --record` line (field `{field}`): `{line}`")]
pub struct RecordError {
    pub field: &'static str,
    pub line: String,
}

impl FlashInfo {
    /// Whether any block protection is set (the chip refuses some writes).
    pub fn protected(&self) -> bool {
        self.status.protects_something()
    }

    /// One line of `key=value` fields (strings hex-encoded), read back by
    /// [`FlashInfo::from_record`].
    pub fn to_record(&self) -> String {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let [a, b, c] = self.jedec_id;
        let [s1, s2, s3] = self.status.0;
        let erase: Vec<String> = self
            .erase_types
            .iter()
            .map(|e| format!("{:x}:{:02x}", e.size, e.opcode))
            .collect();
        let w = &self.wiring;
        format!(
            "{RECORD_TAG} jedec={a:02x}{b:02x}{c:02x} name={} source={} size={:x} page={:x} \
             erase={} window={:x}..{:x} status={s1:02x}{s2:02x}{s3:02x} \
             wiring={}:{}:{}:{}:{}",
            hex(&self.name),
            hex(&self.source),
            self.size,
            self.page_size,
            erase.join(","),
            self.window.start,
            self.window.end,
            w.spi,
            w.sck,
            w.miso,
            w.mosi,
            w.cs
        )
    }

    /// The struct from the line [`FlashInfo::to_record`] wrote.
    pub fn from_record(line: &str) -> Result<FlashInfo, RecordError> {
        let line = line.trim();
        let bad = |field| RecordError {
            field,
            line: line.to_string(),
        };
        let mut words = line.split(' ');
        if words.next() != Some(RECORD_TAG) {
            return Err(bad("tag"));
        }
        let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let get = |key: &'static str| {
            fields
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .ok_or_else(|| bad(key))
        };
        let num = |key: &'static str| {
            get(key).and_then(|v| u64::from_str_radix(v, 16).map_err(|_| bad(key)))
        };
        let bytes = |key: &'static str| -> Result<Vec<u8>, RecordError> {
            let v = get(key)?;
            if v.len() % 2 != 0 {
                return Err(bad(key));
            }
            (0..v.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&v[i..i + 2], 16).map_err(|_| bad(key)))
                .collect()
        };
        let text =
            |key: &'static str| bytes(key).and_then(|b| String::from_utf8(b).map_err(|_| bad(key)));
        let three = |key: &'static str| -> Result<[u8; 3], RecordError> {
            bytes(key)?.try_into().map_err(|_| bad(key))
        };
        let u32_of =
            |key: &'static str| num(key).and_then(|v| u32::try_from(v).map_err(|_| bad(key)));
        let erase_text = get("erase")?;
        let erase_types = if erase_text.is_empty() {
            Vec::new()
        } else {
            erase_text
                .split(',')
                .map(|e| {
                    let (size, op) = e.split_once(':').ok_or_else(|| bad("erase"))?;
                    Ok(EraseType {
                        size: u32::from_str_radix(size, 16).map_err(|_| bad("erase"))?,
                        opcode: u8::from_str_radix(op, 16).map_err(|_| bad("erase"))?,
                    })
                })
                .collect::<Result<_, RecordError>>()?
        };
        let (start, end) = get("window")?
            .split_once("..")
            .ok_or_else(|| bad("window"))?;
        let addr = |v: &str| u64::from_str_radix(v, 16).map_err(|_| bad("window"));
        let wiring: Vec<&str> = get("wiring")?.split(':').collect();
        let [spi, sck, miso, mosi, cs] = wiring.as_slice() else {
            return Err(bad("wiring"));
        };
        let pin = |p: &str| Pin::parse_f407ve(p).ok_or_else(|| bad("wiring"));
        Ok(FlashInfo {
            jedec_id: three("jedec")?,
            name: text("name")?,
            source: text("source")?,
            size: u32_of("size")?,
            page_size: u32_of("page")?,
            erase_types,
            window: addr(start)?..addr(end)?,
            wiring: SpiWiring {
                spi: spi.parse().map_err(|_| bad("wiring"))?,
                sck: pin(sck)?,
                miso: pin(miso)?,
                mosi: pin(mosi)?,
                cs: pin(cs)?,
            },
            status: StatusRegs(three("status")?),
        })
    }
}

/// What `monitor flash info` prints.
impl fmt::Display for FlashInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.jedec_id;
        writeln!(
            f,
            "external flash: {} (JEDEC ID {a:02X} {b:02X} {c:02X}) on {}",
            self.name, self.wiring
        )?;
        let erase: Vec<String> = self
            .erase_types
            .iter()
            .map(|e| format!("{} KiB ({:02X}h)", e.size / 1024, e.opcode))
            .collect();
        writeln!(
            f,
            "geometry ({}): {} KiB, {}-byte pages, erase {}",
            self.source,
            self.size / 1024,
            self.page_size,
            erase.join(", ")
        )?;
        writeln!(
            f,
            "window: {:#010x}..{:#010x}",
            self.window.start, self.window.end
        )?;
        f.write_str(&self.status.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlashInfo {
        let ext = crate::board::Board::builtin().external_flash.unwrap();
        FlashInfo {
            jedec_id: [0xEF, 0x40, 0x17],
            name: "W25Q64JV".into(),
            source: "part table".into(),
            size: 8 << 20,
            page_size: 256,
            erase_types: vec![
                EraseType {
                    size: 4096,
                    opcode: 0x20,
                },
                EraseType {
                    size: 0x1_0000,
                    opcode: 0xD8,
                },
            ],
            window: 0x9000_0000..0x9080_0000,
            wiring: SpiWiring::of(&ext),
            status: StatusRegs([0x1C, 0x02, 0x00]),
        }
    }

    #[test]
    fn record_round_trips_every_field() {
        let info = sample();
        let line = info.to_record();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(FlashInfo::from_record(&line), Ok(info.clone()));
        let mut blank = info;
        blank.erase_types.clear();
        blank.name = "odd name; with = signs".into();
        assert_eq!(FlashInfo::from_record(&blank.to_record()), Ok(blank));
    }

    #[test]
    fn invalid_record_names_the_field() {
        let line = sample().to_record();
        for (from, to, field) in [
            ("flash-info ", "flash-inf ", "tag"),
            ("jedec=ef4017", "jedec=ef40", "jedec"),
            ("status=", "stat=", "status"),
            ("..90800000", "-90800000", "window"),
            (":PB0", ":PZ0", "wiring"),
        ] {
            assert!(line.contains(from), "{from} in {line}");
            let err = FlashInfo::from_record(&line.replacen(from, to, 1)).unwrap_err();
            assert_eq!(err.field, field, "{to}");
        }
    }

    #[test]
    fn display_shows_id_geometry_window_and_protection() {
        let text = sample().to_string();
        assert!(text.starts_with(
            "external flash: W25Q64JV (JEDEC ID EF 40 17) on SPI1 (SCK PB3, MISO PB4, MOSI PB5, CS PB0)\n"
        ), "{text}");
        assert!(text.contains(
            "geometry (part table): 8192 KiB, 256-byte pages, erase 4 KiB (20h), 64 KiB (D8h)\n"
        ));
        assert!(text.contains("window: 0x90000000..0x90800000\n"));
        assert!(text.contains("protection: PROTECTED (BP=111"), "{text}");
        assert!(sample().protected());
    }
}
