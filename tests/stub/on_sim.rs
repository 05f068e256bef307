//! The committed SPI stub (`target-stub/extflash-stub.elf`) on the virtual
//! board: every entry point, the record stream in its slots (raw and `lz`
//! records, malformed ones), the chip's refusals and faults, and position
//! independence.
//!
//! The stub is loaded and called here with a deliberately small loader (the
//! production one lives in `src/extflash/`): copy the PT_LOAD segment to a
//! work-area address, set r0-r3, sp, lr = `stub_bkpt`, pc = entry, run, wait
//! for the halt on the BKPT, read r0/r1, check the stack canary.

use std::time::{Duration, Instant};

use crate::support::sim::{pattern, CHIP};
use extflash_gdb::extflash::stream::{pack, Packing, Stream};
use extflash_gdb::flash::plan::{EraseOp, ProgramOp, Step};
use extflash_gdb::sim::{Faults, SimBoard, SimConfig};
use extflash_stub_abi::{
    crc32_update, stream, Config, EraseKind, PinCfg, Slots, Status, Timeouts, Words, CONFIG_MAGIC,
    CRC32_INIT, PIN_GPIO_OUTPUT, STACK_CANARY, SYM_BKPT, SYM_CRC32, SYM_ERASE, SYM_INIT, SYM_READ,
    SYM_READ_SFDP, SYM_READ_STATUS, SYM_STREAM, SYM_WRITE_STATUS,
};
use probe_rs::{CoreStatus, HaltReason, MemoryInterface, Permissions, RegisterId};
use xmas_elf::program::Type;
use xmas_elf::sections::SectionData;
use xmas_elf::symbol_table::Entry;
use xmas_elf::ElfFile;

const DEMCR: u64 = 0xE000_EDFC;
const DWT_CTRL: u64 = 0xE000_1000;

/// The board file's work area: 0x2001C000 + 16 KiB.
const WORK_AREA: u32 = 0x2001_C000;
const CONFIG_ADDR: u32 = WORK_AREA + 0x1400;
const SLOTS_ADDR: u32 = WORK_AREA + 0x14C0;
const BUF: u32 = WORK_AREA + 0x1500;
const _: () = assert!(CONFIG_ADDR + Config::SIZE as u32 <= SLOTS_ADDR);
const _: () = assert!(SLOTS_ADDR + Slots::SIZE as u32 <= BUF);
const BUF_SIZE: u32 = 0x1C00;
/// A stream decodes `lz` pages at BUF; its slots follow.
const PAGE_BUF: u32 = BUF;
const SLOT_AREA: u32 = BUF + 0x100;
/// 2 KiB of stack at the top of the work area, canary at its lowest word.
const STACK_BOTTOM: u32 = WORK_AREA + 0x3800;
const STACK_TOP: u32 = WORK_AREA + 0x4000;

const GPIOB: u32 = 0x4002_0400;
const SPI1: u32 = 0x4001_3000;

fn stub_elf() -> Vec<u8> {
    crate::support::elf::read(crate::support::elf::STUB)
}

/// The stub's one PT_LOAD segment and its symbols (offsets from the load
/// address; functions keep the Thumb bit).
struct StubImage {
    bytes: Vec<u8>,
    symbols: Vec<(String, u32)>,
}

impl StubImage {
    fn parse(elf: &[u8]) -> Self {
        let file = ElfFile::new(elf).expect("the stub is an ELF file");
        let loads: Vec<_> = file
            .program_iter()
            .filter(|ph| ph.get_type() == Ok(Type::Load))
            .collect();
        assert_eq!(loads.len(), 1, "one PT_LOAD segment");
        let ph = loads[0];
        assert_eq!(ph.virtual_addr(), 0, "linked at 0");
        assert_eq!(ph.file_size(), ph.mem_size(), "no .bss");
        let off = ph.offset() as usize;
        let bytes = elf[off..off + ph.file_size() as usize].to_vec();
        assert!(
            bytes.len() as u32 <= CONFIG_ADDR - WORK_AREA,
            "the stub ({} bytes) overlaps this test's config block at +{:#x}: move the layout",
            bytes.len(),
            CONFIG_ADDR - WORK_AREA
        );
        let mut symbols = Vec::new();
        for section in file.section_iter() {
            if let Ok(SectionData::SymbolTable32(entries)) = section.get_data(&file) {
                for e in entries {
                    if let Ok(name) = e.get_name(&file) {
                        symbols.push((name.to_string(), e.value() as u32));
                    }
                }
            }
        }
        StubImage { bytes, symbols }
    }

    fn symbol(&self, name: &str) -> u32 {
        self.symbols
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no symbol {name} in the stub"))
            .1
    }
}

/// A loaded stub on an attached virtual board.
struct Target {
    board: SimBoard,
    session: probe_rs::Session,
    image: StubImage,
    base: u32,
}

fn sim_config(faults: Faults) -> SimConfig {
    SimConfig {
        // The stub must keep RM0090's rules (a broken one locks it up).
        strict: true,
        faults,
        ..SimConfig::default()
    }
}

/// The board file's SPI1/PB3-PB5/PB0 wiring, as the host will describe it.
fn board_config() -> Config {
    let pin = |pin, af| PinCfg {
        gpio_base: GPIOB,
        pin,
        af,
    };
    Config {
        magic: CONFIG_MAGIC,
        spi_base: SPI1,
        rcc_spi_enr: 0x4002_3844,                  // RCC_APB2ENR
        rcc_spi_bit: 1 << 12,                      // SPI1EN
        rcc_gpio_enr: 0x4002_3830,                 // RCC_AHB1ENR
        rcc_gpio_mask: 1 << 1 | 1 << 12 | 1 << 22, // GPIOBEN, CRCEN, DMA2EN
        pins: [pin(3, 5), pin(4, 5), pin(5, 5), pin(0, PIN_GPIO_OUTPUT)],
        br: 1, // 84 MHz / 4
        cycles_per_ms: 168_000,
        timeouts: Timeouts::W25Q64JV,
        iwdg_kr: 0,
        dma_base: 0x4002_6400, // DMA2: SPI1 RX stream 2, TX stream 3, channel 3
        dma_rx_stream: 2,
        dma_tx_stream: 3,
        dma_channel: 3,
    }
}

/// `steps` packed as the host does, for slots of `slot` bytes.
fn packed(steps: &[Step], slot: u32) -> Stream {
    packed_with(steps, slot, false)
}

/// [`packed`], erases carrying `ERASE_UNLESS_BLANK` or not.
fn packed_with(steps: &[Step], slot: u32, unless_blank: bool) -> Stream {
    let how = Packing {
        capacity: slot - 4,
        page: 256,
        kinds: &[
            EraseKind::Sector4K,
            EraseKind::Block32K,
            EraseKind::Block64K,
        ],
        timeouts: &Timeouts::W25Q64JV,
        compress: true,
        unless_blank,
        blank: &[],
    };
    pack(steps, &how).unwrap()
}

fn chunks(s: &Stream) -> Vec<Vec<u8>> {
    s.chunks.iter().map(|c| c.bytes.clone()).collect()
}

/// A record's three header words.
fn record(op: u32, addr: u32, arg: u32, payload: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = [stream::head(op, payload.len() as u32), addr, arg]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    out.extend_from_slice(payload);
    out.resize(out.len().div_ceil(4) * 4, 0xFF);
    out
}

/// Table-like bytes that compress well.
fn table(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            if i % 4 == 0 {
                (i / 16) as u8
            } else {
                (i % 4) as u8
            }
        })
        .collect()
}

fn config_bytes(cfg: &Config) -> Vec<u8> {
    let mut out = vec![0u8; Config::SIZE];
    cfg.write_le(&mut out);
    out
}

impl Target {
    fn new(faults: Faults) -> Self {
        Self::at(faults, WORK_AREA)
    }

    fn at(faults: Faults, base: u32) -> Self {
        let board = SimBoard::new(sim_config(faults)).expect("virtual board");
        let session = board
            .probe()
            .attach(CHIP, Permissions::default())
            .expect("probe-rs attaches to the virtual board");
        let mut t = Target {
            board,
            session,
            image: StubImage::parse(&stub_elf()),
            base,
        };
        {
            let mut core = t.session.core(0).unwrap();
            core.halt(Duration::from_millis(100)).unwrap();
            let demcr = core.read_word_32(DEMCR).unwrap();
            core.write_word_32(DEMCR, demcr | 1 << 24).unwrap();
            let ctrl = core.read_word_32(DWT_CTRL).unwrap();
            core.write_word_32(DWT_CTRL, ctrl | 1).unwrap();
        }
        t.load(base);
        t.set_config(&board_config());
        t
    }

    /// Copy the stub to `base` and check it by readback.
    fn load(&mut self, base: u32) {
        self.base = base;
        let mut core = self.session.core(0).unwrap();
        core.write(base as u64, &self.image.bytes).unwrap();
        let mut back = vec![0; self.image.bytes.len()];
        core.read(base as u64, &mut back).unwrap();
        assert_eq!(back, self.image.bytes, "stub readback at {base:#x}");
    }

    fn set_config(&mut self, cfg: &Config) {
        let mut core = self.session.core(0).unwrap();
        core.write(CONFIG_ADDR as u64, &config_bytes(cfg)).unwrap();
    }

    fn write(&mut self, addr: u32, data: &[u8]) {
        self.session
            .core(0)
            .unwrap()
            .write(addr as u64, data)
            .unwrap();
    }

    fn read(&mut self, addr: u32, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.session
            .core(0)
            .unwrap()
            .read(addr as u64, &mut v)
            .unwrap();
        v
    }

    /// Set up a call of `entry` with r1-r3 = `args` and start the core.
    fn start(&mut self, entry: &str, args: [u32; 3]) {
        let entry = self.base + self.image.symbol(entry);
        let bkpt = self.base + self.image.symbol(SYM_BKPT);
        assert_eq!(entry & 1, 1, "{entry:#x}: Thumb bit");
        let mut core = self.session.core(0).unwrap();
        core.write_word_32(STACK_BOTTOM as u64, STACK_CANARY)
            .unwrap();
        let regs = [CONFIG_ADDR, args[0], args[1], args[2]];
        for (i, v) in regs.iter().enumerate() {
            core.write_core_reg(RegisterId(i as u16), *v).unwrap();
        }
        let sp = core.stack_pointer().id();
        core.write_core_reg(sp, STACK_TOP).unwrap();
        let lr = core.return_address().id();
        core.write_core_reg(lr, bkpt).unwrap();
        let xpsr = core.registers().psr().unwrap().id();
        core.write_core_reg(xpsr, 0x0100_0000u32).unwrap();
        let pc = core.program_counter().id();
        core.write_core_reg(pc, entry & !1).unwrap();
        core.run().unwrap();
    }

    fn halted(&mut self) -> bool {
        self.session.core(0).unwrap().core_halted().unwrap()
    }

    /// After the halt: check it is the BKPT and the canary, return r0, r1.
    fn finish(&mut self) -> (u32, u32) {
        let bkpt = self.base + self.image.symbol(SYM_BKPT);
        let mut core = self.session.core(0).unwrap();
        match core.status().unwrap() {
            CoreStatus::Halted(HaltReason::Breakpoint(_)) => {}
            other => panic!("stub did not end on its BKPT: {other:?}"),
        }
        let pc: u32 = core.read_core_reg(core.program_counter().id()).unwrap();
        assert_eq!(pc, bkpt & !1, "halted at stub_bkpt");
        assert_eq!(
            core.read_word_32(STACK_BOTTOM as u64).unwrap(),
            STACK_CANARY,
            "stack canary"
        );
        let r0: u32 = core.read_core_reg(RegisterId(0)).unwrap();
        let r1: u32 = core.read_core_reg(RegisterId(1)).unwrap();
        (r0, r1)
    }

    /// Run `entry` to its BKPT (at most `limit` of host time).
    fn call(&mut self, entry: &str, args: [u32; 3], limit: Duration) -> (Status, u32) {
        self.start(entry, args);
        let t0 = Instant::now();
        while !self.halted() {
            assert!(
                t0.elapsed() < limit,
                "{entry} still running after {limit:?} (core fault: {:?})",
                self.board.lock().fault()
            );
        }
        let (r0, r1) = self.finish();
        let status = Status::from_u32(r0).unwrap_or_else(|| panic!("{entry}: r0 = {r0:#x}"));
        (status, r1)
    }

    fn init(&mut self) -> (Status, u32) {
        self.call(SYM_INIT, [0; 3], Duration::from_secs(10))
    }

    fn read_chip(&mut self, addr: u32, len: u32) -> (Status, Vec<u8>) {
        assert!(len <= BUF_SIZE);
        let (s, _) = self.call(SYM_READ, [addr, BUF, len], Duration::from_secs(20));
        (s, self.read(BUF, len as usize))
    }

    fn erase(&mut self, addr: u32, kind: u32) -> Status {
        self.call(SYM_ERASE, [addr, kind, 0], Duration::from_secs(20))
            .0
    }

    /// Run `chunks` through `stub_stream` in `count` slots of `slot` bytes
    /// from `SLOT_AREA`: chunk `k` is written (data, then trailer) once
    /// `rp > k - count`, while the core runs. Returns r0 and r1.
    fn stream(&mut self, chunks: &[Vec<u8>], count: u32, slot: u32) -> (Status, u32) {
        assert!(SLOT_AREA + count * slot <= BUF + BUF_SIZE);
        let hdr = Slots {
            count,
            rp: 0,
            start: SLOT_AREA,
            end: SLOT_AREA + count * slot,
            abort: 0,
        };
        self.write_slots(&hdr);
        for j in 0..count {
            self.write(SLOT_AREA + j * slot + slot - 4, &[0; 4]);
        }
        self.start(SYM_STREAM, [SLOTS_ADDR, chunks.len() as u32, PAGE_BUF]);
        let t0 = Instant::now();
        let mut written = 0usize;
        loop {
            let rp = u32::from_le_bytes(self.read(SLOTS_ADDR + 4, 4).try_into().unwrap());
            while written < chunks.len() && written < rp as usize + count as usize {
                let c = &chunks[written];
                assert!(c.len() as u32 <= slot - 4, "chunk {written} overflows");
                let base = SLOT_AREA + (written as u32 % count) * slot;
                self.write(base, c);
                let t = stream::trailer(written as u32, c.len() as u32);
                self.write(base + slot - 4, &t.to_le_bytes());
                written += 1;
            }
            if self.halted() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "stream hangs");
        }
        let (r0, r1) = self.finish();
        (Status::from_u32(r0).unwrap(), r1)
    }

    /// Program `data` at `addr` as the host packs it (raw and `lz`
    /// records) in `count` slots of `slot` bytes.
    fn program(&mut self, addr: u32, data: &[u8], count: u32, slot: u32) -> Status {
        let steps = [Step::Program(ProgramOp {
            address: addr,
            data: data.to_vec(),
        })];
        self.stream(&chunks(&packed(&steps, slot)), count, slot).0
    }

    fn write_slots(&mut self, r: &Slots) {
        let mut bytes = [0u8; Slots::SIZE];
        r.write_le(&mut bytes);
        self.write(SLOTS_ADDR, &bytes);
    }

    fn rp(&mut self) -> u32 {
        u32::from_le_bytes(self.read(SLOTS_ADDR + 4, 4).try_into().unwrap())
    }

    fn chip_contents(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        self.board.lock().mcu().chip.contents()[range].to_vec()
    }
}

#[test]
fn init_reads_jedec_id_ef4017_and_leaves_cs_high_spi_idle() {
    let mut t = Target::new(Faults::default());
    assert_eq!(t.init(), (Status::Ok, 0x00EF_4017));
    let mut core = t.session.core(0).unwrap();
    let moder = core.read_word_32(GPIOB as u64).unwrap();
    assert_eq!(moder & 0b11, 0b01, "PB0 output");
    assert_eq!(moder >> 6 & 0x3F, 0b10_10_10, "PB3-5 alternate function");
    assert_eq!(
        core.read_word_32(GPIOB as u64 + 0x20).unwrap() >> 12 & 0xFFF,
        0x555
    );
    assert_eq!(
        core.read_word_32(GPIOB as u64 + 0x14).unwrap() & 1,
        1,
        "CS high"
    );
    let sr = core.read_word_32(SPI1 as u64 + 8).unwrap();
    assert_eq!(sr & 0x81, 0, "BSY = 0 and RXNE = 0 (SR = {sr:#x})");
}

#[test]
fn read_returns_preset_chip_contents_at_unaligned_address() {
    let mut t = Target::new(Faults::default());
    let data = pattern(1, 3000);
    t.board.lock().mcu().chip.load(0x12345, &data);
    let (s, got) = t.read_chip(0x12345, 3000);
    assert_eq!(s, Status::Ok);
    assert_eq!(got, data);
    // Zero length is fine and writes nothing.
    t.write(BUF, &[0xAA; 4]);
    let (s, got) = t.read_chip(0x12345, 0);
    assert_eq!((s, got.len()), (Status::Ok, 0));
    assert_eq!(t.read(BUF, 4), [0xAA; 4]);
}

/// Without DMA the stub moves every byte itself: the same results.
#[test]
fn polled_spi_without_dma_reads_crcs_and_programs_the_same() {
    let mut t = Target::new(Faults::default());
    t.set_config(&Config {
        dma_base: 0,
        ..board_config()
    });
    let data = pattern(7, 1500);
    t.board.lock().mcu().chip.load(0x1_0003, &data);
    let (s, got) = t.read_chip(0x1_0003, 1500);
    assert_eq!((s, got), (Status::Ok, data.clone()));
    let (s, crc) = t.call(SYM_CRC32, [0x1_0003, 1500, BUF], Duration::from_secs(20));
    assert_eq!((s, crc), (Status::Ok, crc32_update(CRC32_INIT, &data)));
    assert_eq!(t.erase(0x2000, EraseKind::Sector4K as u32), Status::Ok);
    assert_eq!(t.program(0x2010, &data[..700], 2, 16 + 256), Status::Ok);
    assert_eq!(t.chip_contents(0x2010..0x2010 + 700), data[..700]);
}

#[test]
fn crc32_equals_abi_crc32_update_of_the_same_bytes() {
    let mut t = Target::new(Faults::default());
    let data = pattern(2, 5000);
    t.board.lock().mcu().chip.load(0x7_0001, &data);
    let (s, crc) = t.call(SYM_CRC32, [0x7_0001, 5000, BUF], Duration::from_secs(20));
    assert_eq!(s, Status::Ok);
    assert_eq!(crc, crc32_update(CRC32_INIT, &data));
    // Erased flash: the value the abi crate's test pins for GDB's qCRC.
    let (s, crc) = t.call(SYM_CRC32, [0x40_0000, 4096, BUF], Duration::from_secs(20));
    assert_eq!((s, crc), (Status::Ok, 0xAF19_D570));
}

#[test]
fn read_sfdp_returns_the_sfdp_signature_and_erase_opcodes() {
    let mut t = Target::new(Faults::default());
    let (s, _) = t.call(SYM_READ_SFDP, [0, BUF, 0xC0], Duration::from_secs(10));
    assert_eq!(s, Status::Ok);
    let sfdp = t.read(BUF, 0xC0);
    assert_eq!(&sfdp[..4], b"SFDP");
    assert_eq!(&sfdp[0x9C..0xA2], &[0x0C, 0x20, 0x0F, 0x52, 0x10, 0xD8]);
}

#[test]
fn erase_4k_32k_64k_clears_exactly_their_range() {
    let mut t = Target::new(Faults::default());
    let cases = [
        (EraseKind::Sector4K, 0x0001_1000u32),
        (EraseKind::Block32K, 0x0002_8000),
        (EraseKind::Block64K, 0x0005_0000),
    ];
    for (kind, addr) in cases {
        let size = kind.size() as usize;
        let lo = addr as usize - 0x1000;
        let hi = addr as usize + size + 0x1000;
        t.board.lock().mcu().chip.load(lo, &vec![0u8; hi - lo]);
        assert_eq!(t.erase(addr, kind as u32), Status::Ok, "{kind:?}");
        let c = t.chip_contents(lo..hi);
        let (before, rest) = c.split_at(0x1000);
        let (erased, after) = rest.split_at(size);
        assert!(before.iter().all(|&b| b == 0), "{kind:?}: below untouched");
        assert!(erased.iter().all(|&b| b == 0xFF), "{kind:?}: range erased");
        assert!(after.iter().all(|&b| b == 0), "{kind:?}: above untouched");
    }
}

#[test]
fn erase_rejects_misaligned_address_and_unknown_kind() {
    let mut t = Target::new(Faults::default());
    t.board.lock().mcu().chip.load(0, &[0u8; 0x2_0000]);
    assert_eq!(
        t.erase(0x800, EraseKind::Sector4K as u32),
        Status::BadArgument
    );
    assert_eq!(
        t.erase(0x1000, EraseKind::Block32K as u32),
        Status::BadArgument
    );
    assert_eq!(
        t.erase(0x8000, EraseKind::Block64K as u32),
        Status::BadArgument
    );
    assert_eq!(
        t.erase(0x1_0000, EraseKind::Chip as u32),
        Status::BadArgument
    );
    assert_eq!(t.erase(0, 4), Status::BadArgument);
    assert!(t.chip_contents(0..0x2_0000).iter().all(|&b| b == 0));
}

/// An erase, then raw and `lz` records from an unaligned start to a
/// partial last page, through three small slots the chunks wrap around
/// many times: the chip holds the data, nothing around it changes, and
/// every chunk was consumed.
#[test]
fn stream_erases_and_programs_raw_and_lz_records_through_wrapping_slots() {
    let mut t = Target::new(Faults::default());
    t.board.lock().mcu().chip.load(0x3_0000, &[0u8; 0x1_0000]);
    let mut data = table(2000);
    data.extend(pattern(3, 1001));
    data.extend(table(1000));
    let addr = 0x0003_00F3;
    let steps = [Step::Erase(
        EraseOp {
            address: 0x3_0000,
            size: 0x1_0000,
        },
        Some(ProgramOp {
            address: addr,
            data: data.clone(),
        }),
    )];
    let slot = 16 + 256;
    let s = packed(&steps, slot);
    assert!(s.compressed_bytes >= 2500, "both tables go compressed");
    assert!(
        s.chunks.len() > 6,
        "the three slots wrap: {} chunks",
        s.chunks.len()
    );
    let (st, value) = t.stream(&chunks(&s), 3, slot);
    assert_eq!((st, value), (Status::Ok, 0));
    let a = addr as usize;
    let c = t.chip_contents(0x3_0000..0x4_0000);
    let off = a - 0x3_0000;
    assert_eq!(&c[off..off + data.len()], &data[..]);
    assert!(c[..off].iter().all(|&b| b == 0xFF), "erased before");
    assert!(
        c[off + data.len()..].iter().all(|&b| b == 0xFF),
        "erased after"
    );
    assert_eq!(t.rp(), s.chunks.len() as u32, "every chunk consumed");
    let (s, back) = t.read_chip(addr, data.len() as u32);
    assert_eq!((s, back), (Status::Ok, data));
}

#[test]
fn program_with_full_pages_when_the_host_is_ahead() {
    let mut t = Target::new(Faults::default());
    let data = pattern(4, 4096);
    let st = t.program(0x10_0000, &data, 2, 16 + 8 * 256);
    assert_eq!(st, Status::Ok);
    assert_eq!(t.chip_contents(0x10_0000..0x10_1000), data);
    let pp = t.board.lock().mcu().chip.counters().by_opcode[0x02];
    assert_eq!(pp, 16, "one page program per page");
}

#[test]
fn stream_returns_aborted_when_the_host_gives_up() {
    let mut t = Target::new(Faults::default());
    t.write_slots(&Slots {
        count: 2,
        rp: 0,
        start: SLOT_AREA,
        end: SLOT_AREA + 512,
        abort: 1,
    });
    t.write(SLOT_AREA + 252, &[0; 4]);
    let (s, _) = t.call(
        SYM_STREAM,
        [SLOTS_ADDR, 1, PAGE_BUF],
        Duration::from_secs(10),
    );
    assert_eq!(s, Status::Aborted);
    assert!(t.chip_contents(0..16).iter().all(|&b| b == 0xFF));
}

/// Malformed records and `lz` blocks that do not decode to their page are
/// `BadArgument`, with the record's op and address in r1, and nothing of
/// the bad record is programmed; what came before it is.
#[test]
fn malformed_records_and_lz_blocks_are_refused_with_their_address() {
    let mut t = Target::new(Faults::default());
    let slot = 16 + 4 * 256;
    let good = record(stream::OP_PROGRAM, 0x5000, 4, &[1, 2, 3, 4]);
    // An lz block whose match reaches before the page start: literal "ab",
    // then a match 9 bytes back.
    let bad_lz = [5u8, 0x20, b'a', b'b', 9, 0];
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "unknown op",
            record(9, 0x6000, 0, &[]),
            stream::fail_value(9, 0x6000),
        ),
        (
            "bad match offset",
            record(stream::OP_PROGRAM_LZ, 0x6000, 5, &bad_lz),
            stream::fail_value(stream::OP_PROGRAM_LZ, 0x6000),
        ),
        (
            "block longer than the payload",
            record(stream::OP_PROGRAM_LZ, 0x6000, 256, &[0u8, 1, 2, 3]),
            stream::fail_value(stream::OP_PROGRAM_LZ, 0x6000),
        ),
        (
            "payload left over",
            record(stream::OP_PROGRAM_LZ, 0x6000, 2, &[0u8, 7, 7, 7, 7]),
            stream::fail_value(stream::OP_PROGRAM_LZ, 0x6000),
        ),
        (
            "lz blocks for no pages",
            record(stream::OP_PROGRAM_LZ, 0x6000, 0, &[0u8, 7, 7]),
            stream::fail_value(stream::OP_PROGRAM_LZ, 0x6000),
        ),
        (
            "raw count differs from the payload",
            record(stream::OP_PROGRAM, 0x6000, 8, &[1, 2, 3, 4]),
            stream::fail_value(stream::OP_PROGRAM, 0x6000),
        ),
        (
            "erase with a payload",
            record(
                stream::OP_ERASE,
                0x6000,
                EraseKind::Sector4K as u32,
                &[0; 4],
            ),
            stream::fail_value(stream::OP_ERASE, 0x6000),
        ),
        (
            "misaligned erase",
            record(stream::OP_ERASE, 0x6100, EraseKind::Sector4K as u32, &[]),
            stream::fail_value(stream::OP_ERASE, 0x6100),
        ),
    ];
    for (what, bad, value) in cases {
        t.board.lock().mcu().chip.load(0x5000, &[0xFF; 0x2000]);
        let mut chunk = good.clone();
        chunk.extend(bad);
        let (s, v) = t.stream(&[chunk], 2, slot);
        assert_eq!((s, v), (Status::BadArgument, value), "{what}");
        assert_eq!(t.chip_contents(0x5000..0x5004), [1, 2, 3, 4], "{what}");
        assert!(
            t.chip_contents(0x6000..0x7000).iter().all(|&b| b == 0xFF),
            "{what}: nothing of the bad record programmed"
        );
    }
    // A record header whose payload runs past its chunk.
    let mut long = record(stream::OP_PROGRAM, 0x6000, 64, &[0; 4]);
    long[..4].copy_from_slice(&stream::head(stream::OP_PROGRAM, 64).to_le_bytes());
    let (s, _) = t.stream(&[long], 2, slot);
    assert_eq!(s, Status::BadArgument);
    // Slot counts the ABI does not allow.
    for count in [0u32, 256] {
        t.write_slots(&Slots {
            count,
            rp: 0,
            start: SLOT_AREA,
            end: SLOT_AREA + 0x1000,
            abort: 0,
        });
        let (s, _) = t.call(
            SYM_STREAM,
            [SLOTS_ADDR, 1, PAGE_BUF],
            Duration::from_secs(10),
        );
        assert_eq!(s, Status::BadArgument, "count {count}");
    }
    assert!(t.chip_contents(0x6000..0x7000).iter().all(|&b| b == 0xFF));
}

#[test]
fn protected_chip_refuses_erase_and_program_and_nothing_changes() {
    let mut t = Target::new(Faults::default());
    let data = pattern(5, 0x1000);
    {
        let b = t.board.lock();
        let mut m = b.mcu();
        m.chip.load(0, &data);
        m.chip.set_status_registers([0x1C, 0x02, 0x60]); // BP2..0 = 111: all
    }
    assert_eq!(t.erase(0, EraseKind::Sector4K as u32), Status::Protected);
    assert_eq!(t.erase(0, EraseKind::Chip as u32), Status::Protected);
    let steps = [Step::Program(ProgramOp {
        address: 0x800,
        data: vec![0u8; 100],
    })];
    let (st, value) = t.stream(&chunks(&packed(&steps, 0x400)), 2, 0x400);
    assert_eq!(
        (st, value),
        (
            Status::Protected,
            stream::fail_value(stream::OP_PROGRAM_LZ, 0x800)
        ),
        "the record's op and address come back"
    );
    assert_eq!(t.chip_contents(0..0x1000), data);
    let (s, sr) = t.call(SYM_READ_STATUS, [0; 3], Duration::from_secs(5));
    assert_eq!(
        (s, sr & 0xFF),
        (Status::Ok, 0x1C),
        "WEL cleared after the refusal"
    );
    let c = t.board.lock().mcu().chip.counters().clone();
    assert_eq!(c.bytes_erased + c.bytes_programmed, 0);
}

#[test]
fn absent_chip_gives_no_chip_from_init() {
    let mut t = Target::new(Faults {
        absent: true,
        ..Faults::default()
    });
    assert_eq!(t.init(), (Status::NoChip, 0x00FF_FFFF));
    assert_eq!(t.read_chip(0, 16).0, Status::NoChip);
}

#[test]
fn stuck_busy_erase_gives_busy_timeout_quickly() {
    let mut t = Target::new(Faults::default());
    // CYCCNT ticks at the clock after reset (the 16 MHz HSI), as the host
    // derives them from RCC.
    let hz = t.board.lock().mcu().clock.cpu_hz() as u32;
    t.set_config(&Config {
        cycles_per_ms: hz / 1000,
        ..board_config()
    });
    assert_eq!(t.init().0, Status::Ok);
    t.board.lock().mcu().chip.faults.stuck_busy = true;
    let v0 = t.board.lock().now();
    assert_eq!(
        t.erase(0x1000, EraseKind::Sector4K as u32),
        Status::BusyTimeout
    );
    let virt_ms = (t.board.lock().now() - v0) / 1_000_000_000;
    assert!(
        (400..1000).contains(&virt_ms),
        "gave up after tSE max (400 ms), took {virt_ms} ms of virtual time"
    );
}

#[test]
fn wel_never_set_gives_wel_not_set() {
    let mut t = Target::new(Faults {
        wel_never_sets: true,
        ..Faults::default()
    });
    t.board.lock().mcu().chip.load(0, &[0u8; 16]);
    assert_eq!(t.erase(0, EraseKind::Sector4K as u32), Status::WelNotSet);
    assert_eq!(t.program(0, &[0u8; 8], 2, 16 + 256), Status::WelNotSet);
    assert_eq!(
        t.call(SYM_WRITE_STATUS, [1, 0x1C, 0], Duration::from_secs(5))
            .0,
        Status::WelNotSet
    );
    assert_eq!(t.chip_contents(0..16), [0u8; 16]);
}

#[test]
fn a_page_that_reads_back_wrong_fails_the_stream_with_verify_failed() {
    let mut t = Target::new(Faults {
        worn_bit: true,
        ..Faults::default()
    });
    // Another page programs and reads back fine, raw and lz.
    assert_eq!(t.program(0x100, &[0u8; 8], 2, 16 + 256), Status::Ok);
    assert_eq!(t.program(0x200, &table(600), 2, 16 + 256), Status::Ok);
    // Byte 0 keeps bit 1: the read-back of 0x00 is 0x02. Raw (the last
    // page of its chunk, compared from the page buffer), then lz.
    let mut raw = pattern(3, 64);
    raw[0] = 0;
    for (data, op) in [
        (raw, stream::OP_PROGRAM),
        (vec![0u8; 64], stream::OP_PROGRAM_LZ),
    ] {
        let steps = [Step::Program(ProgramOp {
            address: 0,
            data: data.clone(),
        })];
        let (st, value) = t.stream(&chunks(&packed(&steps, 16 + 256)), 2, 16 + 256);
        assert_eq!(st, Status::VerifyFailed, "op {op}");
        assert_eq!(value, stream::fail_value(op, 0));
        assert_eq!(t.chip_contents(0..1), [0x02]);
    }
}

#[test]
fn verify_blank_passes_only_a_range_that_reads_all_ff() {
    let mut t = Target::new(Faults::default());
    let slot = 16 + 4 * 256;
    // One 0x00 byte at 0x7ABC, the rest of 0x7000..0x9000 erased.
    t.board.lock().mcu().chip.load(0x7000, &[0xFF; 0x2000]);
    t.board.lock().mcu().chip.load(0x7ABC, &[0x00]);
    let verify = |addr, len| record(stream::OP_VERIFY_BLANK, addr, len, &[]);
    // Unaligned ends, pieces of a page and a tail of 3 bytes, both sides
    // of the byte.
    let mut ok = verify(0x7001, 0xABB);
    ok.extend(verify(0x7ABD, 0x1000 - 0xABD + 0x103));
    assert_eq!(t.stream(&[ok], 2, slot), (Status::Ok, 0));
    // The byte in the first page, in the last word of a piece, in a tail.
    for (addr, len) in [(0x7A00, 0x200), (0x7001, 0xABC), (0x7ABA, 3)] {
        let (s, v) = t.stream(&[verify(addr, len)], 2, slot);
        assert_eq!(
            (s, v),
            (
                Status::VerifyFailed,
                stream::fail_value(stream::OP_VERIFY_BLANK, addr)
            ),
            "{addr:#x}+{len:#x}"
        );
    }
    // A range past the 24-bit address space, or with a payload: malformed.
    let (s, _) = t.stream(&[verify(0xFF_FF00, 0x200)], 2, slot);
    assert_eq!(s, Status::BadArgument);
    let (s, _) = t.stream(
        &[record(stream::OP_VERIFY_BLANK, 0x7000, 4, &[0; 4])],
        2,
        slot,
    );
    assert_eq!(s, Status::BadArgument);
}

#[test]
fn erase_unless_blank_reads_first_and_skips_only_blank_sectors() {
    let mut t = Target::new(Faults::default());
    // Sector 0x1000 blank, sector 0x2000 with one 0x00 byte at its end.
    t.board.lock().mcu().chip.load(0x2FFF, &[0x00]);
    let erases = |addr| {
        Step::Erase(
            EraseOp {
                address: addr,
                size: 0x1000,
            },
            None,
        )
    };
    let steps = [erases(0x1000), erases(0x2000)];
    let before = t.board.lock().mcu().chip.counters().bytes_erased;
    let (st, value) = t.stream(&chunks(&packed_with(&steps, 16 + 256, true)), 2, 16 + 256);
    assert_eq!((st, value), (Status::Ok, 1), "one 4 KiB sector skipped");
    assert_eq!(
        t.board.lock().mcu().chip.counters().bytes_erased - before,
        0x1000
    );
    assert_eq!(t.chip_contents(0x2FFF..0x3000), [0xFF]);
    // Without the flag both are erased, and nothing is reported skipped.
    let (st, value) = t.stream(&chunks(&packed_with(&steps, 16 + 256, false)), 2, 16 + 256);
    assert_eq!((st, value), (Status::Ok, 0));
    assert_eq!(
        t.board.lock().mcu().chip.counters().bytes_erased - before,
        0x3000
    );
}

#[test]
fn status_registers_read_and_written_volatile_and_non_volatile() {
    let mut t = Target::new(Faults::default());
    let s = |t: &mut Target| t.call(SYM_READ_STATUS, [0; 3], Duration::from_secs(5));
    assert_eq!(s(&mut t), (Status::Ok, 0x60_02_00));
    // Volatile SR1 = BP0: survives until power cycle only.
    let w = t.call(SYM_WRITE_STATUS, [1, 0x04, 1], Duration::from_secs(5));
    assert_eq!(w.0, Status::Ok);
    assert_eq!(s(&mut t), (Status::Ok, 0x60_02_04));
    t.board.lock().mcu().chip.power_cycle();
    assert_eq!(s(&mut t), (Status::Ok, 0x60_02_00));
    // Non-volatile SR3 (DRV bits): survives.
    let w = t.call(SYM_WRITE_STATUS, [3, 0x20, 0], Duration::from_secs(5));
    assert_eq!(w.0, Status::Ok);
    t.board.lock().mcu().chip.power_cycle();
    assert_eq!(s(&mut t), (Status::Ok, 0x20_02_00));
    // SRL = 1 refuses status writes: Protected.
    t.board
        .lock()
        .mcu()
        .chip
        .set_status_registers([0, 0x03, 0x60]);
    let w = t.call(SYM_WRITE_STATUS, [1, 0x1C, 0], Duration::from_secs(5));
    assert_eq!(w.0, Status::Protected);
    assert_eq!(
        t.call(SYM_WRITE_STATUS, [4, 0, 0], Duration::from_secs(5))
            .0,
        Status::BadArgument
    );
}

#[test]
fn bad_magic_or_stopped_cyccnt_gives_bad_config_and_touches_nothing() {
    let mut t = Target::new(Faults::default());
    let mut cfg = board_config();
    cfg.magic = 0;
    t.set_config(&cfg);
    assert_eq!(t.init().0, Status::BadConfig);
    t.set_config(&board_config());
    {
        let mut core = t.session.core(0).unwrap();
        core.write_word_32(DWT_CTRL, 0).unwrap();
    }
    assert_eq!(t.init().0, Status::BadConfig);
    let mut core = t.session.core(0).unwrap();
    assert_eq!(
        core.read_word_32(0x4002_3830).unwrap() & 2,
        0,
        "GPIOB clock untouched"
    );
}

#[test]
fn stub_runs_at_two_base_addresses_position_independent() {
    for base in [WORK_AREA, 0x2000_0104] {
        let mut t = Target::at(Faults::default(), base);
        let data = pattern(base, 600);
        t.board.lock().mcu().chip.load(0x2345, &data);
        assert_eq!(t.init(), (Status::Ok, 0x00EF_4017), "at {base:#x}");
        let (s, got) = t.read_chip(0x2345, 600);
        assert_eq!((s, got), (Status::Ok, data.clone()), "at {base:#x}");
        let (s, crc) = t.call(SYM_CRC32, [0x2345, 600, BUF], Duration::from_secs(10));
        assert_eq!((s, crc), (Status::Ok, crc32_update(CRC32_INIT, &data)));
        assert_eq!(t.erase(0x2000, EraseKind::Sector4K as u32), Status::Ok);
        assert!(t.chip_contents(0x2000..0x3000).iter().all(|&b| b == 0xFF));
        let st = t.program(0x2400, &data, 2, 16 + 256);
        assert_eq!(st, Status::Ok, "at {base:#x}");
        assert_eq!(t.chip_contents(0x2400..0x2400 + 600), data);
    }
}

#[test]
fn stub_uses_less_than_768_bytes_of_stack() {
    let mut t = Target::new(Faults::default());
    let fill = vec![0xA5u8; (STACK_TOP - STACK_BOTTOM) as usize];
    t.write(STACK_BOTTOM, &fill);
    t.board.lock().mcu().chip.load(0, &pattern(6, 64));
    assert_eq!(t.init().0, Status::Ok);
    assert_eq!(t.read_chip(0, 64).0, Status::Ok);
    assert_eq!(
        t.call(SYM_CRC32, [0, 64, BUF], Duration::from_secs(5)).0,
        Status::Ok
    );
    assert_eq!(t.erase(0x1000, 0), Status::Ok);
    assert_eq!(t.program(0x1000, &[1, 2, 3], 2, 16 + 256), Status::Ok);
    // An lz record too: the decoder's frame counts.
    assert_eq!(t.program(0x1100, &table(600), 2, 16 + 256), Status::Ok);
    assert_eq!(t.chip_contents(0x1100..0x1100 + 600), table(600));
    assert_eq!(
        t.call(SYM_WRITE_STATUS, [3, 0x60, 1], Duration::from_secs(5))
            .0,
        Status::Ok
    );
    let stack = t.read(STACK_BOTTOM + 4, (STACK_TOP - STACK_BOTTOM - 4) as usize);
    let used = stack.len() - stack.iter().position(|&b| b != 0xA5).unwrap();
    eprintln!("stub stack use: {used} bytes");
    // The stream reads each page back into a page on the stack.
    assert!(used < 768, "stub used {used} bytes of stack");
}

#[test]
fn spi_clock_not_enabled_gives_spi_timeout_after_one_frame_timeout() {
    let mut t = Target::new(Faults::default());
    let mut cfg = board_config();
    cfg.rcc_spi_bit = 0; // the SPI1 clock stays off: SR reads 0, RXNE never comes
    t.set_config(&cfg);
    let v0 = t.board.lock().now();
    assert_eq!(t.init().0, Status::SpiTimeout);
    assert_eq!(t.erase(0, EraseKind::Sector4K as u32), Status::SpiTimeout);
    assert_eq!(t.read_chip(0, 1000).0, Status::SpiTimeout);
    // CYCCNT timeouts assume 168 MHz; the core runs on the 16 MHz HSI.
    let slower = 168_000_000 / t.board.lock().mcu().clock.cpu_hz();
    let virt_ms = (t.board.lock().now() - v0) / 1_000_000_000 / slower;
    assert!(
        virt_ms < 20,
        "sticky: one frame timeout per call, took {virt_ms} ms"
    );
}
