//! The `.FLM` through pyOCD (from PyPI; `scripts/test-all.sh` installs
//! it): its own CMSIS-Pack parser (`PackFlashAlgo`) reads the FlashDevice
//! and entry points, and lays the algorithm out in RAM as pyOCD does
//! (`get_pyocd_flash_algo`: BKPT header, stack, page buffers, static base);
//! the algorithm then runs at that layout on the virtual board: Init,
//! EraseSector, ProgramPage, Verify, BlankCheck, EraseChip, UnInit, checked
//! against the chip's contents.

use std::process::Command;

use crate::{board, generate, pattern, Target, TempDir, SPI3_BOARD};

/// Prints what pyOCD makes of the FLM as JSON.
const PYOCD: &str = r#"
import json, sys
from pyocd.target.pack.flash_algo import PackFlashAlgo
from pyocd.core.memory_map import RamRegion
a = PackFlashAlgo(sys.argv[1])
i = a.flash_info
algo = a.get_pyocd_flash_algo(0x1000, RamRegion(start=0x20000000, length=0x1C000))
print(json.dumps({
    "name": i.name.decode(), "version": i.version, "type": i.type,
    "start": i.start, "size": i.size, "page_size": i.page_size,
    "value_empty": i.value_empty, "prog_timeout_ms": i.prog_timeout_ms,
    "erase_timeout_ms": i.erase_timeout_ms, "sectors": i.sector_info_list,
    "symbols": a.symbols, "ro_size": a.ro_size, "rw_size": a.rw_size,
    "algo": algo,
}))
"#;

fn pyocd(flm: &std::path::Path) -> serde_json::Value {
    let out = Command::new("python3")
        .args(["-c", PYOCD])
        .arg(flm)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pyOCD could not parse the FLM (install it with `pip install pyocd`; \
         scripts/test-all.sh does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the pyOCD script")
}

fn u(v: &serde_json::Value) -> u32 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")) as u32
}

fn parse_and_run(name: &str, board_file: Option<&str>) {
    let dir = TempDir::new(name);
    let path = dir.0.join("extflash.FLM");
    generate("flm", board_file, &path);
    let j = pyocd(&path);
    let b = board(board_file);
    let ext = b.external_flash.clone().unwrap();
    let desc = extflash_gdb::extflash::wiring::describe(&ext);
    let name = j["name"].as_str().unwrap();
    assert!(name.contains(&desc), "{name} names the wiring {desc}");
    assert_eq!(u(&j["version"]), 0x0101);
    assert_eq!(u(&j["type"]), 5, "EXTSPI");
    assert_eq!(u(&j["start"]), ext.window);
    assert_eq!(u(&j["size"]), 8 << 20);
    assert_eq!(u(&j["page_size"]), 4096);
    assert_eq!(u(&j["value_empty"]), 0xFF);
    assert_eq!(
        (u(&j["prog_timeout_ms"]), u(&j["erase_timeout_ms"])),
        (48, 400)
    );
    assert_eq!(j["sectors"], serde_json::json!([[0, 4096]]));
    for s in [
        "Init",
        "UnInit",
        "EraseSector",
        "ProgramPage",
        "EraseChip",
        "Verify",
        "BlankCheck",
    ] {
        assert!(
            j["symbols"][s].is_u64(),
            "pyOCD finds {s}: {}",
            j["symbols"]
        );
    }
    assert_eq!(u(&j["rw_size"]), 4, "PrgData: one word");

    // Run it as pyOCD laid it out.
    let algo = &j["algo"];
    let load = u(&algo["load_address"]);
    let code: Vec<u8> = algo["instructions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| u(w).to_le_bytes())
        .collect();
    let code_start = load + 4;
    let sym = |s: &str| code_start + u(&j["symbols"][s]);
    let sp = u(&algo["begin_stack"]);
    let r9 = Some(u(&algo["static_base"]));
    let buf = u(&algo["page_buffers"][0]);
    let mut t = Target::new(&b);
    t.write(load, &code);
    let call = |t: &mut Target, pc: u32, args: &[u32]| t.call(pc, args, load, sp, r9).0;
    assert_eq!(
        call(&mut t, u(&algo["pc_init"]), &[ext.window, 0, 1]),
        0,
        "Init"
    );
    let addr = ext.window + 0x3000;
    let data = pattern(7, 4096);
    assert_eq!(
        call(&mut t, u(&algo["pc_erase_sector"]), &[addr]),
        0,
        "EraseSector"
    );
    assert_eq!(
        call(&mut t, sym("BlankCheck"), &[addr, 4096, 0xFF]),
        0,
        "blank after erase"
    );
    t.write(buf, &data);
    assert_eq!(
        call(&mut t, u(&algo["pc_program_page"]), &[addr, 4096, buf]),
        0,
        "ProgramPage"
    );
    assert_eq!(t.chip(0x3000, 4096), data, "the chip holds the page");
    assert_eq!(
        call(&mut t, sym("BlankCheck"), &[addr, 4096, 0xFF]),
        1,
        "not blank"
    );
    assert_eq!(
        call(&mut t, sym("Verify"), &[addr, 4096, buf]),
        addr + 4096,
        "Verify"
    );
    let mut other = data.clone();
    other[100] ^= 1;
    t.write(buf, &other);
    assert_eq!(
        call(&mut t, sym("Verify"), &[addr, 4096, buf]),
        addr + 100,
        "first difference"
    );
    assert_eq!(call(&mut t, u(&algo["pc_eraseAll"]), &[]), 0, "EraseChip");
    assert_eq!(t.chip(0x3000, 4096), vec![0xFF; 4096], "chip erased");
    assert_eq!(call(&mut t, u(&algo["pc_unInit"]), &[3]), 0, "UnInit");
}

#[test]
fn pyocd_parses_the_flm_and_runs_it_at_its_own_layout() {
    parse_and_run("flm-spi1", None);
}

#[test]
fn pyocd_flm_for_spi3_board_runs_on_a_board_wired_to_spi3() {
    parse_and_run("flm-spi3", Some(SPI3_BOARD));
}
