//! `list`: the debug probes probe-rs can see, as `probe-rs list` shows them.

use probe_rs::probe::list::Lister;

pub fn run() -> anyhow::Result<()> {
    let probes = Lister::new().list_all();
    if probes.is_empty() {
        println!(
            "no probes found (check the USB cable and udev rules / permissions; \
             `--sim` drives the virtual board)"
        );
        return Ok(());
    }
    println!("The following debug probes were found:");
    for (i, p) in probes.iter().enumerate() {
        // probe-rs's own rendering: `NAME -- VID:PID[-IF]:SERIAL (TYPE)`.
        println!("[{i}]: {p}");
    }
    println!("select one with --probe VID:PID[:SERIAL]");
    Ok(())
}
