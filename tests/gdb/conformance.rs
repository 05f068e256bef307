//! The conformance firmware run by the real GDB on `extflash-gdb serve
//! --sim`: `tests/conformance/` (crates.io crates: stm32f4xx-hal, cortex-m,
//! cortex-m-rt, embedded-hal-bus, w25q32jv; through an IWDG and then a WWDG
//! reset) and `tests/conformance-embassy/` (embassy-stm32 with async DMA
//! SPI, w25q32jv's async API). Load, run to `conformance_done`, then every
//! step of the record is checked on its own, so a failing step names
//! itself.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::server::{gdb_batch, GdbLimits, SimServer};

/// One conformance firmware: its ELF, the GDB expression of its record,
/// the record's magic and its steps in the order they run.
struct Firmware {
    elf: &'static str,
    record: &'static str,
    magic: u32,
    steps: &'static [(&'static str, &'static str)],
}

/// `tests/conformance/`: stm32f4xx-hal, cortex-m, w25q32jv.
const HAL: Firmware = Firmware {
    elf: concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/conformance.elf"
    ),
    record: "conformance::CONFORMANCE",
    magic: 0xC0F0_2026,
    steps: STEPS,
};

/// `tests/conformance-embassy/`: embassy-stm32, w25q32jv's async API.
const EMBASSY: Firmware = Firmware {
    elf: concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance-embassy/conformance-embassy.elf"
    ),
    record: "conformance_embassy::CONFORMANCE_EMBASSY",
    magic: 0xE0BA_2026,
    steps: &[
        (
            "clocks",
            "embassy_stm32::init: HSE 8 MHz -> PLL -> 168 MHz, 5 WS",
        ),
        (
            "jedec_id",
            "JEDEC ID EF 40 17 through async SPI1 with DMA2 streams 3/0",
        ),
        (
            "unique_id",
            "w25q32jv device_id_async through a shared async SPI device",
        ),
        ("erase", "w25q32jv erase_sector_async + its read-back check"),
        (
            "program",
            "w25q32jv write_async across pages + read-back check",
        ),
        (
            "read",
            "w25q32jv read_async of the programmed range and margins",
        ),
        (
            "dma_read",
            "the same range by one async DMA transfer of 03h",
        ),
    ],
};

/// Status codes of `tests/conformance/src/main.rs`.
const PASS: u32 = 0x600D;
const NOT_RUN: u32 = 0;
const PANICKED: u32 = 0xDEAD;
const FAIL: u32 = 0xF000_0000;
const DONE: u32 = 0xD0E5_D0E5;

/// The HAL firmware's steps in the order it runs them, and what each proves.
const STEPS: &[(&str, &str)] = &[
    (
        "take",
        "cortex-m / PAC Peripherals::take() (critical section: MRS/MSR PRIMASK, CPSID)",
    ),
    (
        "clocks",
        "HSE 8 MHz -> PLL -> 168 MHz, PCLK1 42 / PCLK2 84 MHz, FLASH 5 WS",
    ),
    (
        "critical_section",
        "critical_section::with / interrupt::free mask and restore PRIMASK",
    ),
    (
        "dwt_cycles",
        "DCB::enable_trace (DEMCR from the CPU) and DWT CYCCNT",
    ),
    (
        "systick_delay",
        "HAL SysTick delay (HCLK/8, COUNTFLAG): 1 ms = 168 000 cycles",
    ),
    (
        "systick_irq",
        "SysTick exception at 1 kHz, handler sees ICSR.VECTACTIVE = 15",
    ),
    ("crc", "HAL CRC unit = CRC-32/MPEG-2"),
    (
        "jedec_id",
        "JEDEC ID EF 40 17 over blocking SPI1 (bit-band clock enables, AF5)",
    ),
    (
        "unique_id",
        "w25q32jv device_id() (4Bh) through a critical-section SPI device",
    ),
    ("erase", "w25q32jv erase_sector() + its read-back check"),
    (
        "program",
        "w25q32jv write_blocking() across pages + read-back check",
    ),
    (
        "read",
        "w25q32jv read() of the programmed range and erased margins",
    ),
    (
        "spi_dma_read",
        "03h read through SPI1 with DMA2 streams 0/3 channel 3",
    ),
    (
        "dma_irq",
        "DMA2 stream 0 transfer-complete interrupt ran once",
    ),
    ("iwdg", "HAL IWDG at 10 ms, fed in time: no reset"),
    (
        "wwdg",
        "WWDG (PAC) counts at PCLK1/4096/8, a refresh reloads it",
    ),
    (
        "iwdg_reset",
        "IWDG not fed: reset with RCC_CSR.IWDGRSTF, record survives",
    ),
    (
        "wwdg_reset",
        "then WWDG not refreshed: reset with RCC_CSR.WWDGRSTF",
    ),
];

/// The words the firmware feeds the CRC unit (`CRC_INPUT`).
const CRC_INPUT: [u32; 4] = [0x3132_3334, 0x3536_3738, 0xDEAD_BEEF, 0x0000_0001];

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, MSB first, no final
/// xor) of bytes, computed here independently of the firmware's own check.
fn crc32_mpeg2(bytes: impl IntoIterator<Item = u8>) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = (crc << 1)
                ^ if crc & 0x8000_0000 != 0 {
                    0x04C1_1DB7
                } else {
                    0
                };
        }
    }
    crc
}

/// The STM32 CRC unit takes each word most significant byte first.
fn crc_unit(words: &[u32]) -> u32 {
    crc32_mpeg2(words.iter().flat_map(|w| w.to_be_bytes()))
}

/// `name = value` pairs of GDB's `print/x CONFORMANCE` output, flattened:
/// `take.status`, `take.value`, ..., `done`. GDB's Rust printer writes
/// `Type {a: 0x1, b: Type {c: 0x2}}`, its C printer `{a = 0x1, b = {c = 0x2}}`.
fn fields(out: &str) -> BTreeMap<String, u32> {
    let line = out
        .lines()
        .find(|l| l.contains("magic: 0x") || l.contains("magic = 0x"))
        .unwrap_or_else(|| panic!("no `print/x CONFORMANCE` output:\n{out}"))
        .replace(" = ", ": ");
    let body = &line[line.find('{').expect("a struct") + 1..];
    let mut map = BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    let mut tok = String::new();
    for c in body.chars() {
        match c {
            '{' => {
                let name = tok.split_once(": ").map_or("", |(n, _)| n.trim());
                path.push(name.to_string());
                tok.clear();
            }
            ',' | '}' => {
                if let Some((name, v)) = tok.split_once(": ") {
                    if let Some(hex) = v.trim().strip_prefix("0x") {
                        let mut key = path.clone();
                        key.push(name.trim().to_string());
                        map.insert(key.join("."), u32::from_str_radix(hex, 16).expect("hex"));
                    }
                }
                tok.clear();
                if c == '}' && path.pop().is_none() {
                    break;
                }
            }
            c => tok.push(c),
        }
    }
    map
}

fn status_name(s: u32) -> String {
    match s {
        PASS => "pass".into(),
        NOT_RUN => "not run".into(),
        PANICKED => "panicked".into(),
        0xA53D => "armed (the watchdog never reset the board)".into(),
        s if s & FAIL == FAIL => format!("failed check {}", s & !FAIL),
        s => format!("unknown status {s:#x}"),
    }
}

/// Loads the firmware, runs it to `conformance_done` and returns the
/// record.
fn run_conformance(s: &SimServer, fw: &Firmware) -> (BTreeMap<String, u32>, String) {
    let print = format!("print/x {}", fw.record);
    let out = gdb_batch(
        &s.addr,
        fw.elf,
        &[
            "monitor reset halt",
            "load",
            "monitor reset halt",
            "continue",
            &print,
        ],
        GdbLimits {
            run: Duration::from_secs(180),
            reply: Some(120),
        },
    );
    (fields(&out), out)
}

/// Runs the firmware on `serve --sim --sim-strict EXTRA` (the crates keep
/// the RM0090 rules strict mode checks: a broken one locks the core up);
/// returns the record once it reached `conformance_done` (panics naming the
/// step it stopped in if not).
fn finished_record(fw: &Firmware, extra: &[&str]) -> BTreeMap<String, u32> {
    let s = SimServer::start(extra);
    let (f, out) = run_conformance(&s, fw);
    assert_eq!(
        f.get("magic"),
        Some(&fw.magic),
        "record not initialised: {f:?}"
    );
    // conformance_done halts on a BKPT (GDB: SIGTRAP there).
    if !out.lines().any(|l| l.contains("SIGTRAP")) || !out.contains("conformance_done ()") {
        let running = f["running"] as usize;
        let step = running
            .checked_sub(1)
            .and_then(|i| fw.steps.get(i))
            .map_or("none".to_string(), |(n, w)| format!("`{n}` ({w})"));
        panic!("the firmware stopped before conformance_done in step {step}:\n{out}");
    }
    assert_eq!(f["done"], DONE, "done marker");
    f
}

/// `(name, status)` of every step that did not pass.
fn failed_steps(fw: &Firmware, f: &BTreeMap<String, u32>) -> Vec<(&'static str, u32)> {
    fw.steps
        .iter()
        .map(|&(name, _)| (name, f[&format!("{name}.status")]))
        .filter(|&(_, status)| status != PASS)
        .collect()
}

/// Every step that did not pass, one line each naming the step, what it
/// proves, how it failed and its value.
fn failures(fw: &Firmware, f: &BTreeMap<String, u32>) -> String {
    fw.steps
        .iter()
        .filter_map(|&(name, what)| {
            let status = f[&format!("{name}.status")];
            let value = f[&format!("{name}.value")];
            (status != PASS).then(|| {
                format!(
                    "step `{name}` ({what}): {} (value {value:#x})",
                    status_name(status)
                )
            })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn crates_io_conformance_firmware_passes_every_step_through_gdb() {
    let f = finished_record(&HAL, &[]);
    let failed = failures(&HAL, &f);
    assert!(failed.is_empty(), "{failed}");

    // Values the firmware measured, checked against what silicon gives.
    assert_eq!(f["clocks.value"], 168_000_000, "SYSCLK");
    assert_eq!(f["jedec_id.value"], 0xEF_4017, "JEDEC ID");
    assert_eq!(f["crc.value"], crc_unit(&CRC_INPUT), "CRC unit result");
    assert_eq!(f["systick_irq.value"], 5, "SysTick handler runs");
    assert_eq!(f["dma_irq.value"], 1, "DMA2 stream 0 TC interrupts");
    assert_eq!(f["iwdg.value"], 10, "IWDG interval (ms)");
    assert_ne!(
        f["iwdg_reset.value"] & (1 << 29),
        0,
        "RCC_CSR.IWDGRSTF after the watchdog reset"
    );
    assert_ne!(
        f["wwdg_reset.value"] & (1 << 30),
        0,
        "RCC_CSR.WWDGRSTF after the window watchdog reset"
    );
}

#[test]
fn embassy_conformance_firmware_passes_every_step_through_gdb() {
    let f = finished_record(&EMBASSY, &[]);
    let failed = failures(&EMBASSY, &f);
    assert!(failed.is_empty(), "{failed}");
    assert_eq!(f["clocks.value"], 168_000_000, "SYSCLK from PLLCFGR");
    assert_eq!(f["jedec_id.value"], 0xEF_4017, "JEDEC ID");
    assert_eq!(f["dma_read.value"], 700, "bytes compared");
}

/// The harness sees a board that misbehaves: with a chip whose WEL never
/// sets, the driver's erase and program fail with `WriteEnableFail` (check
/// 5), the reads find the chip still erased (check 0x10 at the first
/// programmed byte), and every other step still passes.
#[test]
fn conformance_firmware_on_a_chip_that_never_sets_wel_fails_exactly_the_flash_writes() {
    let f = finished_record(&HAL, &["--sim-fault", "wel-never-set"]);
    assert_eq!(
        failed_steps(&HAL, &f),
        [
            ("erase", FAIL | 5),
            ("program", FAIL | 5),
            ("read", FAIL | 0x10),
            ("spi_dma_read", FAIL | 0x10),
        ]
    );
    assert_eq!(
        f["read.value"], 0x80,
        "first mismatch: the first programmed byte"
    );
    assert_eq!(f["spi_dma_read.value"], 0, "DMA read: its first byte");
}

#[test]
fn conformance_record_parser_reads_gdb_struct_output() {
    let out = "$1 = extflash_conformance_firmware::Conformance {magic: 0xc0f02026, running: 0x10, \
               take: extflash_conformance_firmware::Step {status: 0x600d, value: 0x1}, \
               clocks: extflash_conformance_firmware::Step {status: 0xf0000005, value: 0xa}, \
               done: 0xd0e5d0e5}";
    let f = fields(out);
    assert_eq!(f["magic"], HAL.magic);
    assert_eq!(f["take.status"], PASS);
    assert_eq!(f["clocks.status"], FAIL | 5);
    assert_eq!(f["clocks.value"], 10);
    assert_eq!(f["done"], DONE);
    assert_eq!(status_name(f["clocks.status"]), "failed check 5");
    // The C-like printer's `=` form too.
    let f = fields("$1 = {magic = 0x1, take = {status = 0x2, value = 0x3}, done = 0x4}");
    assert_eq!(
        (f["magic"], f["take.status"], f["take.value"], f["done"]),
        (1, 2, 3, 4)
    );
}

#[test]
fn crc32_mpeg2_matches_the_catalogue_check_value() {
    assert_eq!(crc32_mpeg2(*b"123456789"), 0x0376_E6E7);
    assert_eq!(crc_unit(&[0x3132_3334]), crc32_mpeg2(*b"1234"));
}
