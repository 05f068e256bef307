//! `extflash-gdb bench --sim --json` at a small size, for the `ideal` and
//! `stlink-v2` link profiles: its figures must obey the relations the
//! benchmark's definitions promise. No timing of the host: virtual time is
//! deterministic, and the goals themselves are read from the benchmark.

use std::process::Command;

use serde_json::Value;

const SIZE: u64 = 65536;
const JOBS: [&str; 7] = [
    "load",
    "reload",
    "assets",
    "crc",
    "dump",
    "read-cold",
    "read-warm",
];

fn bench(link: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_extflash-gdb"))
        .args(["bench", "--sim", "--json", "--size", &SIZE.to_string()])
        .args(["--sim-link", link])
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
        assert!(virtual_s > 0.0 && f(j, "host_s") > 0.0, "{j}");
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
