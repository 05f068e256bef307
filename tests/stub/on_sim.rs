//! The committed SPI stub (`target-stub/extflash-stub.elf`) on the virtual
//! board: every entry point, the ring-buffer program protocol, the chip's
//! refusals and faults, and position independence.
//!
//! The stub is loaded and called here with a deliberately small loader (the
//! production one lives in `src/extflash/`): copy the PT_LOAD segment to a
//! work-area address, set r0-r3, sp, lr = `stub_bkpt`, pc = entry, run, wait
//! for the halt on the BKPT, read r0/r1, check the stack canary.

use std::time::{Duration, Instant};

use crate::support::sim::{pattern, CHIP};
use extflash_gdb::sim::{Faults, SimBoard, SimConfig};
use extflash_stub_abi::{
    crc32_update, Config, EraseKind, PinCfg, Ring, Status, Timeouts, Words, CONFIG_MAGIC,
    CRC32_INIT, PIN_GPIO_OUTPUT, STACK_CANARY, SYM_BKPT, SYM_CRC32, SYM_ERASE, SYM_INIT,
    SYM_PROGRAM, SYM_READ, SYM_READ_SFDP, SYM_READ_STATUS, SYM_WRITE_STATUS,
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
const CONFIG_ADDR: u32 = WORK_AREA + 0x1000;
const RING_ADDR: u32 = WORK_AREA + 0x10C0;
const BUF: u32 = WORK_AREA + 0x1100;
const _: () = assert!(CONFIG_ADDR + Config::SIZE as u32 <= RING_ADDR);
const _: () = assert!(RING_ADDR + Ring::SIZE as u32 <= BUF);
const BUF_SIZE: u32 = 0x1C00;
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
                "{entry} still running after {limit:?}"
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

    /// Program `data` at `addr` through a ring at `[start, start+size)`:
    /// the host adds at most `chunk` bytes at a time, while the core runs.
    fn program(&mut self, addr: u32, data: &[u8], start: u32, size: u32, chunk: u32) -> Status {
        let mut ring = Ring {
            wp: start,
            rp: start,
            start,
            end: start + size,
            abort: 0,
        };
        self.write_ring(&ring);
        self.start(SYM_PROGRAM, [addr, RING_ADDR, data.len() as u32]);
        let t0 = Instant::now();
        let mut sent = 0usize;
        loop {
            if self.halted() {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "program hangs");
            let mut core = self.session.core(0).unwrap();
            ring.rp = core.read_word_32(RING_ADDR as u64 + 4).unwrap();
            let n = ring.writable().min(chunk).min((data.len() - sent) as u32);
            if n == 0 {
                continue;
            }
            let first = n.min(ring.end - ring.wp);
            core.write(ring.wp as u64, &data[sent..sent + first as usize])
                .unwrap();
            if n > first {
                let rest = &data[sent + first as usize..sent + n as usize];
                core.write(ring.start as u64, rest).unwrap();
            }
            sent += n as usize;
            ring.wp = ring.advance(ring.wp, n);
            core.write_word_32(RING_ADDR as u64, ring.wp).unwrap();
        }
        let (r0, _) = self.finish();
        Status::from_u32(r0).unwrap()
    }

    fn write_ring(&mut self, r: &Ring) {
        let words = [r.wp, r.rp, r.start, r.end, r.abort];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.write(RING_ADDR, &bytes);
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
    assert_eq!(t.program(0x2010, &data[..700], BUF, 300, 300), Status::Ok);
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

#[test]
fn program_through_wrapping_ring_unaligned_start_and_partial_last_page() {
    let mut t = Target::new(Faults::default());
    let data = pattern(3, 3001);
    let addr = 0x0003_00F3;
    // A 1000-byte ring wraps three times, mid-page; chunks of 333 bytes
    // make the stub program partial pages too.
    let st = t.program(addr, &data, BUF + 0x100, 1000, 333);
    assert_eq!(st, Status::Ok);
    let a = addr as usize;
    let c = t.chip_contents(a - 0x100..a + data.len() + 0x100);
    assert_eq!(&c[0x100..0x100 + data.len()], &data[..]);
    assert!(c[..0x100].iter().all(|&b| b == 0xFF), "before untouched");
    assert!(
        c[0x100 + data.len()..].iter().all(|&b| b == 0xFF),
        "after untouched"
    );
    let rp = u32::from_le_bytes(t.read(RING_ADDR + 4, 4).try_into().unwrap());
    assert_eq!(rp, BUF + 0x100 + (3001 % 1000), "rp consumed every byte");
    // And the stub reads back what it programmed.
    let (s, back) = t.read_chip(addr, data.len() as u32);
    assert_eq!((s, back), (Status::Ok, data));
}

#[test]
fn program_with_full_pages_when_the_host_is_ahead() {
    let mut t = Target::new(Faults::default());
    let data = pattern(4, 4096);
    let st = t.program(0x10_0000, &data, BUF, 0x1000, 0x1000);
    assert_eq!(st, Status::Ok);
    assert_eq!(t.chip_contents(0x10_0000..0x10_1000), data);
    let pp = t.board.lock().mcu().chip.counters().by_opcode[0x02];
    assert!(pp <= 17, "{pp} page programs for 16 pages");
}

#[test]
fn program_returns_aborted_and_ring_timeout_without_data() {
    let mut t = Target::new(Faults::default());
    let ring = Ring {
        wp: BUF,
        rp: BUF,
        start: BUF,
        end: BUF + 256,
        abort: 1,
    };
    t.write_ring(&ring);
    let (s, _) = t.call(SYM_PROGRAM, [0, RING_ADDR, 16], Duration::from_secs(10));
    assert_eq!(s, Status::Aborted);
    let mut cfg = board_config();
    cfg.timeouts.ring_ms = 1;
    t.set_config(&cfg);
    t.write_ring(&Ring { abort: 0, ..ring });
    let (s, _) = t.call(SYM_PROGRAM, [0, RING_ADDR, 16], Duration::from_secs(10));
    assert_eq!(s, Status::RingTimeout);
    assert!(t.chip_contents(0..16).iter().all(|&b| b == 0xFF));
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
    let st = t.program(0x800, &[0u8; 100], BUF, 0x400, 0x400);
    assert_eq!(st, Status::Protected);
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
    let t0 = Instant::now();
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
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[test]
fn wel_never_set_gives_wel_not_set() {
    let mut t = Target::new(Faults {
        wel_never_sets: true,
        ..Faults::default()
    });
    t.board.lock().mcu().chip.load(0, &[0u8; 16]);
    assert_eq!(t.erase(0, EraseKind::Sector4K as u32), Status::WelNotSet);
    assert_eq!(t.program(0, &[0u8; 8], BUF, 64, 64), Status::WelNotSet);
    assert_eq!(
        t.call(SYM_WRITE_STATUS, [1, 0x1C, 0], Duration::from_secs(5))
            .0,
        Status::WelNotSet
    );
    assert_eq!(t.chip_contents(0..16), [0u8; 16]);
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
        let st = t.program(0x2400, &data, BUF, 300, 300);
        assert_eq!(st, Status::Ok, "at {base:#x}");
        assert_eq!(t.chip_contents(0x2400..0x2400 + 600), data);
    }
}

#[test]
fn stub_uses_less_than_512_bytes_of_stack() {
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
    assert_eq!(t.program(0x1000, &[1, 2, 3], BUF, 64, 64), Status::Ok);
    assert_eq!(
        t.call(SYM_WRITE_STATUS, [3, 0x60, 1], Duration::from_secs(5))
            .0,
        Status::Ok
    );
    let stack = t.read(STACK_BOTTOM + 4, (STACK_TOP - STACK_BOTTOM - 4) as usize);
    let used = stack.len() - stack.iter().position(|&b| b != 0xA5).unwrap();
    eprintln!("stub stack use: {used} bytes");
    assert!(used < 512, "stub used {used} bytes of stack");
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
