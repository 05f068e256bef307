//! The flash loaders `extflash-gdb loader` generates, built from this
//! stub's driver (one home for the SPI code): cargo feature `stldr` gives
//! an STM32CubeProgrammer external loader, feature `flm` a CMSIS-Pack flash
//! algorithm (Keil, pyOCD; probe-rs takes its code for a target
//! description). `target-stub/build.sh` builds both as templates
//! (`loader-stldr.elf`, `loader-flm.elf`).
//!
//! Board-specific data lives in one block, [`EXTFLASH_BOARD`] (abi
//! `loader::Board`: window, size, JEDEC ID, the stub `Config` for the
//! wiring), which the generator overwrites in the ELF file; `StorageInfo` /
//! `FlashDevice` are filled in by the generator as well. The code reads the
//! block through an opaque reference, so no value of the template's
//! placeholder is folded into the code.
//!
//! Facts relied on:
//! - STM32CubeProgrammer (and ST-LINK_gdbserver) loads the ELF's segments
//!   at their addresses (code from 0x20000004), sets SP above the image and
//!   LR to a breakpoint, and calls `Init` before every operation; entry
//!   points return 1 on success, 0 on failure (ST's external-loader
//!   sources, `Loader_Src.c` / `Dev_Inf.h`).
//! - CMSIS-Pack hosts (Keil, pyOCD, probe-rs) copy `PrgCode`/`PrgData` to
//!   any RAM address, call `Init` once, then the operations; 0 is success,
//!   `Verify` returns `adr + sz` (CMSIS-Pack "Flash Programming
//!   Algorithms"). The code is ropi and has no writable data, so the static
//!   base in R9 is never used.
//! - Neither host enables the DWT cycle counter that the driver's
//!   timeouts count: every entry point enables it first.
//!
//! There is no `.data` or `.bss` (the linker scripts assert it), so there
//! is nothing to zero at `Init`; buffers live on the stack (under 1 KiB).

use core::ptr::addr_of;

use extflash_stub_abi::loader::{Board, BOARD_MAGIC, SECTOR};
use extflash_stub_abi::{Config, EraseKind, Status};

use crate::{clock, erase, modify, program_raw, rd, Bus, Fail, Op, Res};

/// The board block the generator patches (abi `loader::Board`, symbol
/// `loader::SYM_BOARD`). Magic 0 here: an unpatched template fails `Init`.
#[no_mangle]
#[used]
#[link_section = ".rodata.extflash_board"]
pub static EXTFLASH_BOARD: Board = Board {
    magic: 0,
    window: 0,
    size: 0,
    jedec_id: 0,
    config: Config {
        magic: 0,
        spi_base: 0,
        rcc_spi_enr: 0,
        rcc_spi_bit: 0,
        rcc_gpio_enr: 0,
        rcc_gpio_mask: 0,
        pins: [extflash_stub_abi::PinCfg {
            gpio_base: 0,
            pin: 0,
            af: 0,
        }; 4],
        br: 0,
        cycles_per_ms: 0,
        timeouts: extflash_stub_abi::Timeouts {
            page_program_ms: 0,
            sector_erase_ms: 0,
            block32_erase_ms: 0,
            block64_erase_ms: 0,
            chip_erase_ms: 0,
            write_status_ms: 0,
            spi_frame_ms: 0,
        },
        iwdg_kr: 0,
        dma_base: 0,
        dma_rx_stream: 0,
        dma_tx_stream: 0,
        dma_channel: 0,
    },
};

/// DEMCR.TRCENA and DWT_CTRL.CYCCNTENA (ARMv7-M ARM C1.6.5, C1.8.7).
const DEMCR: u32 = 0xE000_EDFC;
const DEMCR_TRCENA: u32 = 1 << 24;
const DWT_CTRL: u32 = 0xE000_1000;

/// Bytes per stack buffer of `Verify`, `CheckSum` and `BlankCheck`.
const CHUNK: usize = 128;

/// The patched board block, with the cycle counter running; `None` for an
/// unpatched template.
#[inline(never)]
fn board() -> Option<&'static Board> {
    // While DEMCR.TRCENA is 0, DWT reads are UNKNOWN and whether writes are
    // ignored is IMPLEMENTATION DEFINED (ARMv7-M ARM C1.6.5): a CYCCNTENA
    // that reads back set does not mean CYCCNT counts. So test TRCENA
    // itself (DEMCR always reads true) and only set it, leaving a
    // debugger's other DEMCR bits alone.
    if rd(DEMCR) & DEMCR_TRCENA == 0 {
        modify(DEMCR, DEMCR_TRCENA, DEMCR_TRCENA);
    }
    modify(DWT_CTRL, 1, 1);
    // SAFETY: a static's address; `black_box` hides its initializer so the
    // generator's values are read from memory.
    let b: &'static Board = unsafe { &*core::hint::black_box(addr_of!(EXTFLASH_BOARD)) };
    (b.magic == BOARD_MAGIC).then_some(b)
}

/// Chip offset of `len` bytes at `addr` (a window address, or an offset
/// below the window), if they lie in the chip.
#[inline(never)]
fn offset(b: &Board, addr: u32, len: u32) -> Option<u32> {
    let off = if addr >= b.window { addr - b.window } else { addr };
    (off <= b.size && len <= b.size - off).then_some(off)
}

/// Run `f` on the configured bus as `dispatch` does: set-up, the
/// operation, the bus left clean; the `Status` code. (Generic, not `dyn`:
/// a vtable would hold absolute addresses.)
fn run(cfg: &Config, f: impl Fn(&Bus) -> Res<()>) -> u32 {
    run_value(cfg, f).0
}

/// [`run`], and the operation's result value (JEDEC ID).
fn run_value(cfg: &Config, f: impl Fn(&Bus) -> Res<()>) -> (u32, u32) {
    let bus = Bus::setup(cfg);
    let r = f(&bus);
    bus.finish();
    let status = match r {
        _ if bus.dead.get() => Status::SpiTimeout as u32,
        Ok(()) => Status::Ok as u32,
        Err(Fail(s)) => s as u32,
    };
    (status, bus.value.get())
}

/// Core clock up (when still on the reset clock), chip woken and
/// identified (and matched against the board's JEDEC ID).
#[inline(never)]
fn init() -> bool {
    let Some(b) = board() else { return false };
    if run(&b.config, clock) != 0 {
        return false;
    }
    let (status, id) = run_value(&b.config, crate::init);
    status == 0 && (b.jedec_id == 0 || id == b.jedec_id)
}

/// Program `len` bytes at `addr` from `src`.
#[inline(never)]
fn write(addr: u32, len: u32, src: u32) -> bool {
    let Some(b) = board() else { return false };
    let Some(off) = offset(b, addr, len) else { return false };
    run(&b.config, |bus| {
        bus.ready()?;
        // The host's verify reads back (no scratch page here).
        program_raw(bus, off, src, len, None, core::ptr::null_mut(), core::ptr::null_mut())
    }) == 0
}

/// Read `len` bytes at `addr` into `dst`.
#[inline(never)]
fn read(addr: u32, len: u32, dst: u32) -> bool {
    let Some(b) = board() else { return false };
    let Some(off) = offset(b, addr, len) else { return false };
    len == 0 || run(&b.config, |bus| bus.read_into(Op::FastRead, off, dst as *mut u8, len)) == 0
}

/// Erase every 4 KiB sector that `[start, end)` touches, by 64 KiB blocks
/// where a whole block lies in the range.
#[inline(never)]
fn erase_range(start: u32, end: u32) -> bool {
    let Some(b) = board() else { return false };
    let Some(first) = offset(b, start, 0) else { return false };
    let first = first & !(SECTOR - 1);
    let Some(last) = offset(b, end, 0) else { return false };
    let last = last.min(b.size);
    run(&b.config, |bus| {
        let mut at = first;
        while at < last {
            let (kind, size) = if at & 0xFFFF == 0 && last - at >= 0x1_0000 {
                (EraseKind::Block64K, 0x1_0000)
            } else {
                (EraseKind::Sector4K, SECTOR)
            };
            erase(bus, at, kind as u32, None)?;
            at += size;
        }
        Ok(())
    }) == 0
}

#[inline(never)]
fn erase_chip() -> bool {
    let Some(b) = board() else { return false };
    run(&b.config, |bus| erase(bus, 0, EraseKind::Chip as u32, None)) == 0
}

/// Walk `len` chip bytes at `addr` in chunks read into a stack buffer:
/// `visit(offset in the range, bytes)` returns false to stop. Err: the
/// range is outside the chip or a read failed.
fn walk(addr: u32, len: u32, mut visit: impl FnMut(u32, &[u8]) -> bool) -> Result<(), ()> {
    let b = board().ok_or(())?;
    let off = offset(b, addr, len).ok_or(())?;
    let mut buf = [0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK as u32);
        let p = buf.as_mut_ptr();
        if run(&b.config, |bus| bus.read_into(Op::FastRead, off + done, p, n)) != 0 {
            return Err(());
        }
        if !visit(done, &buf[..n as usize]) {
            return Ok(());
        }
        done += n;
    }
    Ok(())
}

/// STM32CubeProgrammer external loader (`.stldr`): entry points and
/// `StorageInfo`. Every function returns 1 on success, 0 on failure.
#[cfg(feature = "stldr")]
#[allow(non_snake_case, non_upper_case_globals)]
pub mod stldr {
    use super::*;

    /// One run of sectors of `StorageInfo`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct DeviceSectors {
        pub count: u32,
        pub size: u32,
    }

    /// ST's `struct StorageInfo` (`Dev_Inf.h`): 200 bytes.
    #[repr(C)]
    pub struct StorageInfo {
        pub device_name: [u8; 100],
        /// 7: SPI_FLASH.
        pub device_type: u16,
        pub device_start_address: u32,
        pub device_size: u32,
        pub page_size: u32,
        pub erase_value: u8,
        /// Runs of equal sectors, ended by an all-zero entry.
        pub sectors: [DeviceSectors; 10],
    }

    const _: () = assert!(core::mem::size_of::<StorageInfo>() == 200);

    /// Filled in by the generator (name, start, size, page size, sectors).
    #[no_mangle]
    #[used]
    #[link_section = ".Dev_info"]
    pub static StorageInfo: StorageInfo = StorageInfo {
        device_name: [0; 100],
        device_type: 7,
        device_start_address: 0,
        device_size: 0,
        page_size: 0,
        erase_value: 0xFF,
        sectors: [DeviceSectors { count: 0, size: 0 }; 10],
    };

    fn ok(b: bool) -> u32 {
        b as u32
    }

    /// `int Init(void)`: clocks, pins, SPI, chip identified.
    #[no_mangle]
    pub extern "C" fn Init() -> u32 {
        ok(init())
    }

    /// `int Write(uint32_t Address, uint32_t Size, uint8_t *buffer)`.
    #[no_mangle]
    pub extern "C" fn Write(address: u32, size: u32, buffer: *const u8) -> u32 {
        ok(write(address, size, buffer as u32))
    }

    /// `int Read(uint32_t Address, uint32_t Size, uint8_t *buffer)`.
    #[no_mangle]
    pub extern "C" fn Read(address: u32, size: u32, buffer: *mut u8) -> u32 {
        ok(read(address, size, buffer as u32))
    }

    /// `int SectorErase(uint32_t EraseStartAddress, uint32_t EraseEndAddress)`:
    /// every sector from the one holding the start to the one holding the
    /// end, inclusive.
    #[no_mangle]
    pub extern "C" fn SectorErase(start: u32, end: u32) -> u32 {
        ok(end >= start && erase_range(start, end.saturating_add(1)))
    }

    /// `int MassErase(uint32_t Parallelism)`: the whole chip.
    #[no_mangle]
    pub extern "C" fn MassErase(_parallelism: u32) -> u32 {
        ok(erase_chip())
    }

    /// `uint32_t CheckSum(uint32_t StartAddress, uint32_t Size, uint32_t
    /// InitVal)`: `InitVal` plus the sum of the bytes.
    #[no_mangle]
    pub extern "C" fn CheckSum(start: u32, size: u32, init: u32) -> u32 {
        let mut sum = init;
        let _ = walk(start, size, |_, bytes| {
            for &x in bytes {
                sum = sum.wrapping_add(x as u32);
            }
            true
        });
        sum
    }

    /// `uint64_t Verify(uint32_t MemoryAddr, uint32_t RAMBufferAddr,
    /// uint32_t Size, uint32_t missalignement)`: `Size` is in words;
    /// `missalignement` bits 0-3 the bytes before the data in the first
    /// word, bits 16-19 after it in the last. Returns the checksum
    /// (`CheckSum` of the data bytes) in the upper word and, in the lower,
    /// 0 when every byte matches or else the address of the first
    /// difference (of a failed read: `MemoryAddr`).
    #[no_mangle]
    pub extern "C" fn Verify(memory: u32, ram: *const u8, size: u32, misalignment: u32) -> u64 {
        let len = size.wrapping_mul(4);
        let (lead, tail) = (misalignment & 0xF, (misalignment >> 16) & 0xF);
        let mut sum = 0u32;
        let mut bad = 0u32;
        let r = walk(memory, len, |at, bytes| {
            for (i, &x) in bytes.iter().enumerate() {
                let k = at + i as u32;
                // SAFETY: the host's buffer holds `Size` words.
                let want = unsafe { ram.add(k as usize).read_volatile() };
                if x != want {
                    bad = memory + k;
                    return false;
                }
                if k >= lead && k < len.saturating_sub(tail) {
                    sum = sum.wrapping_add(x as u32);
                }
            }
            true
        });
        if r.is_err() {
            bad = memory;
        }
        (sum as u64) << 32 | bad as u64
    }
}

/// CMSIS-Pack flash algorithm (`.FLM`): entry points and `FlashDevice`.
/// 0 is success.
#[cfg(feature = "flm")]
#[allow(non_snake_case, non_upper_case_globals)]
pub mod flm {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct FlashSectors {
        pub size: u32,
        pub address: u32,
    }

    /// `struct FlashDevice` (CMSIS-Pack `FlashOS.h`, version 1.01).
    #[repr(C)]
    pub struct FlashDevice {
        /// 0x0101.
        pub vers: u16,
        pub dev_name: [u8; 128],
        /// 5: EXTSPI.
        pub dev_type: u16,
        pub dev_adr: u32,
        pub sz_dev: u32,
        pub sz_page: u32,
        pub res: u32,
        pub val_empty: u8,
        /// Page program and sector erase timeouts, ms.
        pub to_prog: u32,
        pub to_erase: u32,
        /// Ended by 0xFFFFFFFF, 0xFFFFFFFF.
        pub sectors: [FlashSectors; 512],
    }

    const _: () = assert!(core::mem::size_of::<FlashDevice>() == 160 + 512 * 8);

    /// Filled in by the generator.
    #[no_mangle]
    #[used]
    #[link_section = "DevDscr"]
    pub static FlashDevice: FlashDevice = FlashDevice {
        vers: 0x0101,
        dev_name: [0; 128],
        dev_type: 5,
        dev_adr: 0,
        sz_dev: 0,
        sz_page: 0,
        res: 0,
        val_empty: 0xFF,
        to_prog: 0,
        to_erase: 0,
        sectors: [FlashSectors {
            size: 0xFFFF_FFFF,
            address: 0xFFFF_FFFF,
        }; 512],
    };

    fn code(ok: bool) -> u32 {
        !ok as u32
    }

    /// `int Init(unsigned long adr, unsigned long clk, unsigned long fnc)`.
    #[no_mangle]
    pub extern "C" fn Init(_adr: u32, _clk: u32, _fnc: u32) -> u32 {
        code(init())
    }

    /// `int UnInit(unsigned long fnc)`: nothing to undo.
    #[no_mangle]
    pub extern "C" fn UnInit(_fnc: u32) -> u32 {
        0
    }

    /// `int EraseSector(unsigned long adr)`: the 4 KiB sector at `adr`.
    #[no_mangle]
    pub extern "C" fn EraseSector(adr: u32) -> u32 {
        code(erase_range(adr, adr.saturating_add(1)))
    }

    /// `int EraseChip(void)`.
    #[no_mangle]
    pub extern "C" fn EraseChip() -> u32 {
        code(erase_chip())
    }

    /// `int ProgramPage(unsigned long adr, unsigned long sz, unsigned char *buf)`.
    #[no_mangle]
    pub extern "C" fn ProgramPage(adr: u32, sz: u32, buf: *const u8) -> u32 {
        code(write(adr, sz, buf as u32))
    }

    /// `int ReadFlash(unsigned long adr, unsigned long sz, unsigned char
    /// *buf)`: probe-rs's read function (`pc_read`), for a chip that is
    /// not memory-mapped.
    #[no_mangle]
    pub extern "C" fn ReadFlash(adr: u32, sz: u32, buf: *mut u8) -> u32 {
        code(read(adr, sz, buf as u32))
    }

    /// `unsigned long Verify(unsigned long adr, unsigned long sz, unsigned
    /// char *buf)`: `adr + sz` when the chip holds `buf`, else the address
    /// of the first difference.
    #[no_mangle]
    pub extern "C" fn Verify(adr: u32, sz: u32, buf: *const u8) -> u32 {
        let mut bad = None;
        let r = walk(adr, sz, |at, bytes| {
            for (i, &x) in bytes.iter().enumerate() {
                let k = at + i as u32;
                // SAFETY: the host's buffer holds `sz` bytes.
                if x != unsafe { buf.add(k as usize).read_volatile() } {
                    bad = Some(adr + k);
                    return false;
                }
            }
            true
        });
        match (r, bad) {
            (Ok(()), None) => adr.wrapping_add(sz),
            (_, Some(a)) => a,
            (Err(()), None) => adr,
        }
    }

    /// `int BlankCheck(unsigned long adr, unsigned long sz, unsigned char
    /// pat)`: 0 when every byte is `pat`, 1 otherwise.
    #[no_mangle]
    pub extern "C" fn BlankCheck(adr: u32, sz: u32, pat: u32) -> u32 {
        let mut blank = true;
        let r = walk(adr, sz, |_, bytes| {
            blank = bytes.iter().all(|&x| x == pat as u8);
            blank
        });
        code(r.is_ok() && blank)
    }
}
