//! Test firmware for extflash-gdb.
//!
//! Target: STM32F407VE with a Winbond W25Q64JV on SPI1
//! (SCK PB3, MISO PB4, MOSI PB5 = AF5; CS = PB0 GPIO output, active low).
//! It runs on real boards and on the virtual board (armagnac core), so it uses
//! no interrupts, no exceptions, no FPU, no SCB/NVIC/SysTick registers and no
//! special-register instructions (MSR/MRS/CPS): only RAM, RCC, GPIOB and SPI1.
//! Every wait on a hardware flag is bounded; a timeout bumps `SPI_ERRORS`.
//!
//! The globals and functions below are `#[no_mangle]` so the tests can find
//! them by name; see README.md for the contract.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::panic::PanicInfo;
use core::ptr::addr_of;

// ---------------------------------------------------------------------------
// Globals the tests read (and a few they may write) through symbols.
// ---------------------------------------------------------------------------

/// Set to 0xB007_C0DE as the first thing `main` does (.bss, so 0 before).
#[no_mangle]
pub static mut BOOT_MARKER: u32 = 0;
/// Initialised data (.data): proves Reset copied .data from its flash LMA.
#[no_mangle]
pub static mut DATA_WORD: u32 = 0x1234_5678;
/// Copy of DATA_WORD as read by `main` right after reset (.bss).
#[no_mangle]
pub static mut DATA_CHECK: u32 = 0;
/// Progress of `main`: 1 clocks+GPIO+SPI set up, 2 JEDEC ID and head read,
/// 3 asset CRC done (`assets_checked` about to be called), 4 in the tick loop.
#[no_mangle]
pub static mut STAGE: u32 = 0;

/// JEDEC ID (0x9F) read once at start-up; W25Q64JV: EF 40 17.
#[no_mangle]
pub static mut JEDEC_ID: [u8; 3] = [0; 3];
/// Status register 1 (0x05) read once at start-up.
#[no_mangle]
pub static mut FLASH_SR1: u8 = 0;
/// First 16 bytes of the chip (0x03 read at address 0).
#[no_mangle]
pub static mut FLASH_HEAD: [u8; 16] = [0; 16];

/// Chip-offset ranges [start, end) that were CRC'd with fast read (0x0B).
/// `assets` build: [font range, table range]; default build: [[0, 4096], [0, 0]].
#[no_mangle]
pub static mut ASSET_RANGES: [[u32; 2]; 2] = [[0; 2]; 2];
/// GDB-qCRC (CRC-32, poly 0x04C11DB7, MSB first, init 0xFFFFFFFF, no final
/// xor) of each range in ASSET_RANGES on its own (init for each range).
#[no_mangle]
pub static mut ASSET_RANGE_CRCS: [u32; 2] = [0; 2];
/// Same CRC run over all ranges in order, continued from one to the next
/// (for a single range this equals ASSET_RANGE_CRCS[0]).
#[no_mangle]
pub static mut ASSET_CRC: u32 = 0;

/// TICKS value of the most recent `spi_transaction` (set after it returns;
/// also keeps `tick` from tail-calling it, so backtraces show tick).
#[no_mangle]
pub static mut LAST_SPI_TICK: u32 = 0;
/// Incremented by every `tick()` (watchpoint target).
#[no_mangle]
pub static mut TICKS: u32 = 0;
/// Last return value of `compute(TICKS)`.
#[no_mangle]
pub static mut COMPUTE_LAST: u32 = 0;
/// A JEDEC-ID transaction (`spi_transaction`) runs when TICKS % SPI_PERIOD
/// == 0. Lives in .data; a test may change it (0 = never).
#[no_mangle]
pub static mut SPI_PERIOD: u32 = 1000;
/// 1 from just before `spi_transaction` drives CS low until just after it
/// drives CS high again, else 0.
#[no_mangle]
pub static mut IN_TRANSACTION: u32 = 0;
/// JEDEC ID read by the most recent `spi_transaction`.
#[no_mangle]
pub static mut LAST_ID: [u8; 3] = [0; 3];
/// Number of completed `spi_transaction`s.
#[no_mangle]
pub static mut SPI_ROUNDS: u32 = 0;
/// Number of `spi_transaction`s whose LAST_ID differed from JEDEC_ID.
#[no_mangle]
pub static mut ID_MISMATCHES: u32 = 0;
/// Number of SPI timeouts (TXE / RXNE / BSY wait that ran out).
#[no_mangle]
pub static mut SPI_ERRORS: u32 = 0;

// ---------------------------------------------------------------------------
// Assets (feature `assets` only): deterministic xorshift32 bytes, placed by
// extflash.x in .extflash.font (0x90000003) and .extflash.table (0x9000F123).
// ---------------------------------------------------------------------------

#[cfg(feature = "assets")]
mod assets {
    pub const FONT_LEN: usize = 4099;
    pub const TABLE_LEN: usize = 70001;
    /// Table bytes [FF_RUN_START, FF_RUN_START + FF_RUN_LEN) are 0xFF (an
    /// "already erased looking" run that crosses 256-byte page boundaries).
    pub const FF_RUN_START: usize = 0x3000;
    pub const FF_RUN_LEN: usize = 600;

    /// xorshift32 (13, 17, 5) from `seed`; byte i = low 8 bits of state i+1.
    pub const fn xorshift_bytes<const N: usize>(seed: u32) -> [u8; N] {
        let mut out = [0u8; N];
        let mut s = seed;
        let mut i = 0;
        while i < N {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            out[i] = s as u8;
            i += 1;
        }
        out
    }

    pub const fn table_bytes() -> [u8; TABLE_LEN] {
        let mut t = xorshift_bytes::<TABLE_LEN>(0x7AB1_E5ED);
        let mut i = FF_RUN_START;
        while i < FF_RUN_START + FF_RUN_LEN {
            t[i] = 0xFF;
            i += 1;
        }
        t
    }

    extern "C" {
        pub static __extflash_font_start: u8;
        pub static __extflash_font_end: u8;
        pub static __extflash_table_start: u8;
        pub static __extflash_table_end: u8;
    }
}

/// "Font" asset: 4099 xorshift32 bytes (seed 0xF0175EED) at 0x90000003.
#[cfg(feature = "assets")]
#[used]
#[no_mangle]
#[link_section = ".extflash.font"]
pub static ASSET_FONT: [u8; assets::FONT_LEN] =
    assets::xorshift_bytes::<{ assets::FONT_LEN }>(0xF017_5EED);

/// "Table" asset: 70001 xorshift32 bytes (seed 0x7AB1E5ED) at 0x9000F123,
/// with bytes 0x3000..0x3258 of it forced to 0xFF.
#[cfg(feature = "assets")]
#[used]
#[no_mangle]
#[link_section = ".extflash.table"]
pub static ASSET_TABLE: [u8; assets::TABLE_LEN] = assets::table_bytes();

// ---------------------------------------------------------------------------
// Registers
// ---------------------------------------------------------------------------

const RCC_AHB1ENR: u32 = 0x4002_3830;
const RCC_APB2ENR: u32 = 0x4002_3844;
const RCC_AHB1ENR_GPIOBEN: u32 = 1 << 1;
const RCC_APB2ENR_SPI1EN: u32 = 1 << 12;

const GPIOB: u32 = 0x4002_0400;
const GPIOB_MODER: u32 = GPIOB;
const GPIOB_OTYPER: u32 = GPIOB + 0x04;
const GPIOB_OSPEEDR: u32 = GPIOB + 0x08;
const GPIOB_PUPDR: u32 = GPIOB + 0x0C;
const GPIOB_BSRR: u32 = GPIOB + 0x18;
const GPIOB_AFRL: u32 = GPIOB + 0x20;

const SPI1: u32 = 0x4001_3000;
const SPI1_CR1: u32 = SPI1;
const SPI1_CR2: u32 = SPI1 + 0x04;
const SPI1_SR: u32 = SPI1 + 0x08;
const SPI1_DR: u32 = SPI1 + 0x0C;

const CR1_MSTR: u32 = 1 << 2;
const CR1_BR_DIV4: u32 = 0b001 << 3;
const CR1_SPE: u32 = 1 << 6;
const CR1_SSI: u32 = 1 << 8;
const CR1_SSM: u32 = 1 << 9;
const SR_RXNE: u32 = 1 << 0;
const SR_TXE: u32 = 1 << 1;
const SR_BSY: u32 = 1 << 7;

/// Polls of a status flag before giving up (bounded waits only).
const SPI_TIMEOUT: u32 = 10_000;

const CMD_RELEASE_PD: u8 = 0xAB;
const CMD_JEDEC_ID: u8 = 0x9F;
const CMD_READ_SR1: u8 = 0x05;
const CMD_READ: u8 = 0x03;
const CMD_FAST_READ: u8 = 0x0B;

// Register and global accesses are macros around `asm!` / plain loads and
// stores, not calls to `read_volatile`/`write_volatile`: that way no inlined
// core function appears in the debug info, and `step` never wanders into
// core's sources. `collapse_debuginfo` attributes their code to the line that
// uses them.

/// Compiler barrier: an empty `asm!` that may read or write any memory, so
/// every store to a global before it is done and every load after it is
/// fresh. Emits no instruction.
#[collapse_debuginfo(yes)]
macro_rules! barrier {
    () => {
        unsafe { asm!("", options(nostack, preserves_flags)) }
    };
}

/// 32-bit load from a peripheral register (one `ldr`, never merged/elided).
#[collapse_debuginfo(yes)]
macro_rules! rd {
    ($addr:expr) => {{
        let v: u32;
        unsafe { asm!("ldr {v}, [{a}]", a = in(reg) $addr, v = lateout(reg) v, options(nostack, preserves_flags)) };
        v
    }};
}

/// 32-bit store to a peripheral register (one `str`, never merged/elided).
#[collapse_debuginfo(yes)]
macro_rules! wr {
    ($addr:expr, $val:expr) => {{
        let v: u32 = $val;
        unsafe { asm!("str {v}, [{a}]", a = in(reg) $addr, v = in(reg) v, options(nostack, preserves_flags)) }
    }};
}

/// Read-modify-write of a peripheral register.
#[collapse_debuginfo(yes)]
macro_rules! modify {
    ($addr:expr, $clear:expr, $set:expr) => {{
        let v = rd!($addr);
        wr!($addr, (v & !($clear)) | ($set))
    }};
}

/// Reads a global, fresh from memory.
#[collapse_debuginfo(yes)]
macro_rules! get {
    ($g:ident) => {{
        barrier!();
        unsafe { $g }
    }};
}

/// Writes a global, exactly here: not before the preceding code, and done
/// before the next statement runs.
#[collapse_debuginfo(yes)]
macro_rules! set {
    ($g:ident, $v:expr) => {{
        let v = $v;
        barrier!();
        unsafe { $g = v };
        barrier!();
    }};
}

/// Keeps local `$v` in its stack slot: its address escapes into an empty
/// `asm!` (emits no instruction), so the debugger can print the variable at
/// every line of its scope despite -Os.
#[collapse_debuginfo(yes)]
macro_rules! keep {
    ($v:ident) => {
        unsafe { asm!("/* keep {0} */", in(reg) addr_of!($v), options(nostack, preserves_flags)) }
    };
}

// ---------------------------------------------------------------------------
// Vector table, reset, fault/panic handlers
// ---------------------------------------------------------------------------

extern "C" {
    fn Reset() -> !;
}

/// Vector table words 1..=15 (word 0, the initial SP 0x2001C000, comes from
/// link.x): Reset, then NMI..SysTick (incl. reserved slots) -> DefaultHandler.
#[used]
#[no_mangle]
#[link_section = ".vector_table.exceptions"]
pub static __VECTORS: [unsafe extern "C" fn() -> !; 15] = [
    Reset,
    DefaultHandler, // NMI
    DefaultHandler, // HardFault
    DefaultHandler, // MemManage
    DefaultHandler, // BusFault
    DefaultHandler, // UsageFault
    DefaultHandler, // reserved
    DefaultHandler, // reserved
    DefaultHandler, // reserved
    DefaultHandler, // reserved
    DefaultHandler, // SVCall
    DefaultHandler, // DebugMonitor
    DefaultHandler, // reserved
    DefaultHandler, // PendSV
    DefaultHandler, // SysTick
];

// Reset: set SP (in case a debugger jumped here without reloading it), copy
// .data from flash to RAM, zero .bss, call main. Plain Thumb-2 only.
global_asm!(
    ".section .text.Reset,\"ax\",%progbits",
    ".global Reset",
    ".type Reset,%function",
    ".thumb_func",
    "Reset:",
    "    ldr r0, =_stack_top",
    "    mov sp, r0",
    "    ldr r0, =__sdata",
    "    ldr r1, =__edata",
    "    ldr r2, =__sidata",
    "1:  cmp r0, r1",
    "    bhs 2f",
    "    ldr r3, [r2], #4",
    "    str r3, [r0], #4",
    "    b 1b",
    "2:  ldr r0, =__sbss",
    "    ldr r1, =__ebss",
    "    movs r2, #0",
    "3:  cmp r0, r1",
    "    bhs 4f",
    "    str r2, [r0], #4",
    "    b 3b",
    "4:  bl main",
    "5:  bkpt #0",
    "    b 5b",
    ".ltorg",
    ".size Reset, . - Reset",
);

/// Every system vector except Reset: stop here for the debugger.
#[no_mangle]
pub unsafe extern "C" fn DefaultHandler() -> ! {
    loop {
        asm!("bkpt #0", options(nomem, nostack));
    }
}

#[panic_handler]
fn panic(_info: &PanicInfo) -> ! {
    loop {
        unsafe { asm!("bkpt #1", options(nomem, nostack)) };
    }
}

// ---------------------------------------------------------------------------
// CRC-32 exactly as GDB's qCRC: poly 0x04C11DB7, MSB first, init 0xFFFFFFFF,
// no reflection, no final xor.
// ---------------------------------------------------------------------------

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04C1_1DB7
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

#[inline(always)]
fn crc32_byte(crc: u32, byte: u8) -> u32 {
    (crc << 8) ^ CRC_TABLE[(((crc >> 24) as u8) ^ byte) as usize]
}

// ---------------------------------------------------------------------------
// Hardware set-up and SPI
// ---------------------------------------------------------------------------

fn spi_error() {
    set!(SPI_ERRORS, get!(SPI_ERRORS) + 1);
}

/// Waits until `SPI1_SR & mask == want`; false (and SPI_ERRORS += 1) on timeout.
fn spi_wait(mask: u32, want: u32) -> bool {
    let mut n = 0;
    while n < SPI_TIMEOUT {
        if rd!(SPI1_SR) & mask == want {
            return true;
        }
        n += 1;
    }
    spi_error();
    false
}

fn setup_hardware() {
    // Clocks: GPIOB (AHB1), SPI1 (APB2); read back once as the RM advises.
    modify!(RCC_AHB1ENR, 0, RCC_AHB1ENR_GPIOBEN);
    modify!(RCC_APB2ENR, 0, RCC_APB2ENR_SPI1EN);
    let _ = rd!(RCC_APB2ENR);

    // PB0: CS, drive high before making it an output (no glitch low).
    wr!(GPIOB_BSRR, 1 << 0);
    // PB3/PB4/PB5 -> AF5 (SPI1).
    modify!(
        GPIOB_AFRL,
        (0xF << 12) | (0xF << 16) | (0xF << 20),
        (5 << 12) | (5 << 16) | (5 << 20)
    );
    // Push-pull, very high speed, no pulls on PB0/3/4/5.
    modify!(GPIOB_OTYPER, (1 << 0) | (1 << 3) | (1 << 4) | (1 << 5), 0);
    modify!(
        GPIOB_OSPEEDR,
        (3 << 0) | (3 << 6) | (3 << 8) | (3 << 10),
        (3 << 0) | (3 << 6) | (3 << 8) | (3 << 10)
    );
    modify!(GPIOB_PUPDR, (3 << 0) | (3 << 6) | (3 << 8) | (3 << 10), 0);
    // MODER: PB0 output (01), PB3/4/5 alternate (10).
    modify!(
        GPIOB_MODER,
        (3 << 0) | (3 << 6) | (3 << 8) | (3 << 10),
        (1 << 0) | (2 << 6) | (2 << 8) | (2 << 10)
    );

    // SPI1: master, fPCLK/4, CPOL=0 CPHA=0, 8-bit, MSB first, software NSS.
    wr!(SPI1_CR1, 0);
    wr!(SPI1_CR2, 0);
    wr!(SPI1_CR1, CR1_MSTR | CR1_BR_DIV4 | CR1_SSI | CR1_SSM);
    wr!(
        SPI1_CR1,
        CR1_MSTR | CR1_BR_DIV4 | CR1_SSI | CR1_SSM | CR1_SPE
    );
}

/// CS (PB0) low.
#[inline(never)]
#[no_mangle]
pub extern "C" fn flash_select() {
    wr!(GPIOB_BSRR, 1 << 16);
}

/// Waits (bounded) for the last frame to finish, then CS (PB0) high.
#[inline(never)]
#[no_mangle]
pub extern "C" fn flash_deselect() {
    spi_wait(SR_TXE, SR_TXE);
    spi_wait(SR_BSY, 0);
    wr!(GPIOB_BSRR, 1 << 0);
}

/// One full-duplex byte: write DR, wait RXNE (bounded), read DR.
/// Returns 0xFF after a timeout (SPI_ERRORS is incremented).
#[inline(never)]
#[no_mangle]
pub extern "C" fn spi_xfer(byte: u8) -> u8 {
    xfer(byte)
}

/// Body of `spi_xfer`, inlined into the bulk fast-read loop so that a
/// breakpoint on `spi_xfer` is not hit 70 000 times at boot (and boot is
/// quicker on the emulator).
#[inline(always)]
fn xfer(byte: u8) -> u8 {
    // Drop a stale received byte (e.g. left over after an earlier timeout).
    if rd!(SPI1_SR) & SR_RXNE != 0 {
        let _ = rd!(SPI1_DR);
    }
    if !spi_wait(SR_TXE, SR_TXE) {
        return 0xFF;
    }
    wr!(SPI1_DR, byte as u32);
    if !spi_wait(SR_RXNE, SR_RXNE) {
        return 0xFF;
    }
    rd!(SPI1_DR) as u8
}

fn send_addr(addr: u32) {
    spi_xfer((addr >> 16) as u8);
    spi_xfer((addr >> 8) as u8);
    spi_xfer(addr as u8);
}

/// Short busy delay (tRES1 after 0xAB is 3 us).
fn short_delay() {
    let mut i = 0u32;
    while i < 2000 {
        barrier!();
        i += 1;
    }
}

/// JEDEC ID (0x9F), one CS-framed transaction: manufacturer, type, capacity.
#[inline(never)]
#[no_mangle]
pub fn read_jedec_id() -> [u8; 3] {
    let mut id = [0u8; 3];
    flash_select();
    spi_xfer(CMD_JEDEC_ID);
    id[0] = spi_xfer(0);
    id[1] = spi_xfer(0);
    id[2] = spi_xfer(0);
    flash_deselect();
    id
}

/// Reads chip bytes [start, end) once with 0x0B and returns their CRC
/// (init 0xFFFFFFFF), while also continuing the running CRC `chained`.
fn crc_chip_range(start: u32, end: u32, chained: &mut u32) -> u32 {
    let mut crc = 0xFFFF_FFFF;
    if end <= start {
        return crc;
    }
    let mut run = *chained;
    let errors_before = get!(SPI_ERRORS);
    flash_select();
    spi_xfer(CMD_FAST_READ);
    send_addr(start);
    spi_xfer(0); // dummy byte
    let mut a = start;
    while a < end {
        let b = xfer(0);
        crc = crc32_byte(crc, b);
        run = crc32_byte(run, b);
        a += 1;
        if get!(SPI_ERRORS) != errors_before {
            break; // SPI is not answering: give up on this range (bounded time)
        }
    }
    flash_deselect();
    *chained = run;
    crc
}

/// Chip-offset ranges to check.
#[cfg(feature = "assets")]
fn asset_ranges() -> [[u32; 2]; 2] {
    use assets::*;
    const WINDOW: u32 = 0x9000_0000;
    [
        [
            addr_of!(__extflash_font_start) as u32 - WINDOW,
            addr_of!(__extflash_font_end) as u32 - WINDOW,
        ],
        [
            addr_of!(__extflash_table_start) as u32 - WINDOW,
            addr_of!(__extflash_table_end) as u32 - WINDOW,
        ],
    ]
}

#[cfg(not(feature = "assets"))]
fn asset_ranges() -> [[u32; 2]; 2] {
    [[0, 4096], [0, 0]]
}

/// Tests break here once the asset CRC is known (`crc` == ASSET_CRC).
#[inline(never)]
#[no_mangle]
pub extern "C" fn assets_checked(crc: u32) {
    keep!(crc);
}

/// A complete JEDEC-ID transaction: CS low, 0x9F, 3 bytes, CS high.
/// Stores LAST_ID, increments SPI_ROUNDS (and ID_MISMATCHES if the ID differs
/// from JEDEC_ID). IN_TRANSACTION is 1 while CS is low.
#[inline(never)]
#[no_mangle]
pub extern "C" fn spi_transaction() {
    set!(IN_TRANSACTION, 1);
    let id = read_jedec_id();
    set!(IN_TRANSACTION, 0);

    set!(LAST_ID, id);
    if get!(JEDEC_ID) != id {
        set!(ID_MISMATCHES, get!(ID_MISMATCHES) + 1);
    }
    set!(SPI_ROUNDS, get!(SPI_ROUNDS) + 1);
}

/// Pure function with named locals for step/next/finish/print tests:
/// doubled = x*2; mixed = doubled ^ 0xA5A5A5A5;
/// returns rotate_left(mixed, 5) + x (all wrapping; overflow checks are off).
/// Plain operators only, so no inlined core functions show up when stepping.
#[inline(never)]
#[no_mangle]
pub fn compute(x: u32) -> u32 {
    let doubled = x * 2;
    keep!(doubled);
    let mixed = doubled ^ 0xA5A5_A5A5;
    keep!(mixed);
    let result = ((mixed << 5) | (mixed >> 27)) + x;
    result
}

/// One iteration of the main loop: TICKS += 1; COMPUTE_LAST = compute(TICKS);
/// every SPI_PERIOD ticks, spi_transaction() then LAST_SPI_TICK = TICKS.
#[inline(never)]
#[no_mangle]
pub extern "C" fn tick() {
    let t = get!(TICKS) + 1;
    set!(TICKS, t);
    set!(COMPUTE_LAST, compute(t));
    let period = get!(SPI_PERIOD);
    if period != 0 && t % period == 0 {
        spi_transaction();
        set!(LAST_SPI_TICK, t);
    }
}

#[no_mangle]
pub extern "C" fn main() -> ! {
    set!(BOOT_MARKER, 0xB007_C0DE);
    set!(DATA_CHECK, get!(DATA_WORD));

    setup_hardware();
    set!(STAGE, 1);

    // Release power-down (framed on its own), then give the chip tRES1.
    flash_select();
    spi_xfer(CMD_RELEASE_PD);
    flash_deselect();
    short_delay();

    set!(JEDEC_ID, read_jedec_id());

    flash_select();
    spi_xfer(CMD_READ_SR1);
    set!(FLASH_SR1, spi_xfer(0));
    flash_deselect();

    flash_select();
    spi_xfer(CMD_READ);
    send_addr(0);
    let mut head = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        head[i] = spi_xfer(0);
        i += 1;
    }
    flash_deselect();
    set!(FLASH_HEAD, head);
    set!(STAGE, 2);

    let ranges = asset_ranges();
    set!(ASSET_RANGES, ranges);
    let mut chained = 0xFFFF_FFFF;
    let mut crcs = [0u32; 2];
    let mut r = 0;
    while r < 2 {
        let [start, end] = ranges[r];
        crcs[r] = crc_chip_range(start, end, &mut chained);
        r += 1;
    }
    set!(ASSET_RANGE_CRCS, crcs);
    set!(ASSET_CRC, chained);
    set!(STAGE, 3);
    assets_checked(chained);

    set!(STAGE, 4);
    loop {
        tick();
    }
}
