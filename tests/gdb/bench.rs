//! `extflash-gdb bench --sim --json` at a small size, for the `ideal` and
//! `stlink-v2` link profiles: its figures must obey the relations the
//! benchmark's definitions promise. No timing of the host: virtual time is
//! deterministic, and the goals themselves are read from the benchmark.

use std::process::Command;

use serde_json::Value;

const SIZE: u64 = 65536;
const JOBS: [&str; 8] = [
    "load",
    "reload",
    "overwrite",
    "assets",
    "crc",
    "dump",
    "read-cold",
    "read-warm",
];

fn bench(link: &str) -> Value {
    bench_with(&["--sim-link", link, "--size", &SIZE.to_string()])
}

fn bench_with(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["bench", "--sim", "--json"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run extflash-gdb bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn job<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

fn f(job: &Value, key: &str) -> f64 {
    job[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {job}"))
}

fn trips(report: &Value, name: &str) -> u64 {
    job(report, name)["round_trips"].as_u64().unwrap()
}

fn check_relations(link: &str) {
    let r = bench(link);
    assert_eq!(r["link"], link);
    let names: Vec<&str> = r["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, JOBS);
    // The limits assume SPI1 at the board file's 84 MHz / 2.
    assert_eq!(r["spi_hz"], 42_000_000);
    for name in JOBS {
        let j = job(&r, name);
        let bytes = j["bytes"].as_u64().unwrap();
        assert_eq!(bytes, if name.starts_with("read") { 4 } else { SIZE });
        let virtual_s = f(j, "virtual_s");
        // A warm read may come from the server's cache: no probe traffic.
        let least = if name == "read-warm" {
            0.0
        } else {
            f64::MIN_POSITIVE
        };
        assert!(virtual_s >= least && f(j, "host_s") > 0.0, "{j}");
        if name.starts_with("read") {
            assert!(j["limit_s"].is_null() && j["ratio"].is_null(), "{j}");
            continue;
        }
        let limit = f(j, "limit_s");
        let chip = f(j, "chip_s");
        // Nothing beats the chip's own time; only compression (the
        // `assets` job) may beat the link's share of a limit.
        assert!(
            chip > 0.0 && chip <= limit && virtual_s >= chip,
            "{link} {name}: {j}"
        );
        if name != "assets" {
            assert!(virtual_s >= limit, "{link} {name}: {j}");
        }
        let ratio = f(j, "ratio");
        assert!(
            (ratio - virtual_s / limit).abs() <= 1e-9 * ratio,
            "ratio = virtual / limit: {j}"
        );
    }
    // The CRC limit is the SPI time for the image at 42 MHz.
    let crc_limit = f(job(&r, "crc"), "limit_s");
    assert!(
        (crc_limit - SIZE as f64 * 8.0 / 42e6).abs() < 1e-9,
        "{crc_limit}"
    );
    // The overwrite erases every 64 KiB block and programs every page.
    let blocks = SIZE.div_ceil(65536) as f64;
    let overwrite_chip = f(job(&r, "overwrite"), "chip_s");
    let want = blocks * 0.150 + (SIZE / 256) as f64 * 0.0004;
    assert!(
        (overwrite_chip - want).abs() < 1e-9,
        "{overwrite_chip} vs {want}"
    );
    // This design's floor is a true lower bound: never above what a job
    // took, never below the chip's own time.
    for name in ["load", "overwrite", "assets"] {
        let j = job(&r, name);
        let floor = f(j, "floor_s");
        assert!(
            floor <= f(j, "virtual_s") && floor >= f(j, "chip_s"),
            "{link} {name}: {j}"
        );
    }
    // Every goal has its figure and verdict.
    for g in r["goals"].as_array().unwrap() {
        let (v, max) = (g["value"].as_f64().unwrap(), g["max"].as_f64().unwrap());
        assert_eq!(g["met"].as_bool().unwrap(), v <= max, "{g}");
    }
    // Skip-unchanged: the reload moves no image data.
    assert!(trips(&r, "reload") < trips(&r, "load"), "{r}");
    assert!(f(job(&r, "reload"), "virtual_s") < f(job(&r, "load"), "virtual_s"));
    // A cold read is a few hundred round trips at most; a warm one, with
    // the stub resident, at most 3.
    let cold = trips(&r, "read-cold");
    assert!(cold > 0 && cold < 1000, "read-cold round trips {cold}");
    assert!(trips(&r, "read-warm") <= 3, "{r}");
}

#[test]
fn bench_sim_json_obeys_the_limits_on_the_ideal_link() {
    check_relations("ideal");
}

#[test]
fn bench_sim_json_obeys_the_limits_on_stlink_v2() {
    check_relations("stlink-v2");
}

#[test]
fn bench_speeds_runs_every_job_at_each_st_link_clock() {
    let size = 16 * 1024;
    let v = bench_with(&["--sim-link", "stlink-v2", "--size", "16K", "--speeds"]);
    let runs = v["runs"].as_array().unwrap();
    let clocks: Vec<u64> = runs.iter().map(|r| r["swd_hz"].as_u64().unwrap()).collect();
    assert_eq!(clocks, [4_600_000, 1_800_000, 950_000]);
    let virt = |r: &Value, name| f(job(r, name), "virtual_s");
    for r in runs {
        assert_eq!(r["size"], size);
        assert_eq!(r["jobs"].as_array().unwrap().len(), JOBS.len());
    }
    // A faster clock moves the image and the dump faster, and the limits
    // follow the clock.
    for name in ["load", "dump"] {
        let t: Vec<f64> = runs.iter().map(|r| virt(r, name)).collect();
        assert!(t[0] < t[1] && t[1] < t[2], "{name}: {t:?}");
        let l: Vec<f64> = runs.iter().map(|r| f(job(r, name), "limit_s")).collect();
        assert!(l[0] < l[1] && l[1] < l[2], "{name} limits: {l:?}");
    }
}

#[test]
fn bench_speeds_refuses_a_clock_the_probe_cannot_make() {
    let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["bench", "--sim", "--size", "4K", "--speeds", "4600,50"])
        .env("RUST_LOG", "off")
        .output()
        .expect("run extflash-gdb bench");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("50 kHz"), "{err}");
}

#[test]
fn bench_speeds_on_a_real_board_needs_the_clocks_named() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
            .arg("bench")
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .expect("run extflash-gdb bench");
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["--speeds", "--range", "0x90000000", "4K", "--yes"]);
    assert!(err.contains("--speeds 4600,1800"), "{err}");
    let err = run(&["--sim", "--speeds", "--speed", "4600"]);
    assert!(err.contains("cannot be used with"), "{err}");
}
