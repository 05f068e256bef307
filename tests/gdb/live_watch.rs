//! cortex-debug's Live Watch, replayed (issue 12): the controlling
//! `gdb-multiarch` loads the test firmware and continues; a second one in
//! MI mode with `interrupt-on-connect off` connects as an observer and
//! reads the firmware's tick counter while the core runs, as Live Watch
//! samples; then it leaves and the controller interrupts as usual. The
//! server runs in this process so the test can count the core's halts.

use std::time::{Duration, Instant};

use crate::ide::Mi;
use crate::support::elf::FIRMWARE;
use crate::support::server::in_process;
use extflash_gdb::board::Board;
use extflash_gdb::sim::{LinkProfile, SimBoard, SimConfig};

/// `^done,value="N"` → N.
fn value(line: &str) -> u64 {
    let v = line
        .split("value=\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("no value in {line}"));
    v.parse()
        .unwrap_or_else(|_| panic!("not a number: {v} in {line}"))
}

#[test]
fn live_watch_observer_reads_a_rising_counter_while_the_controllers_continue_runs() {
    // As `serve --sim`: ST-Link round trips pass virtual time, in which the
    // running core runs.
    let sim = SimBoard::new(SimConfig {
        link: LinkProfile::StlinkV2,
        ..SimConfig::default()
    })
    .expect("virtual board");
    let board = sim.clone();
    let addr = in_process(
        sim,
        Board::builtin(),
        extflash_gdb::flash::progress::no_events(),
    );
    let short = Duration::from_secs(30);
    let long = Duration::from_secs(240);

    let mut ctl = Mi::start();
    ctl.wait("(gdb)", short);
    ctl.expect("-gdb-set mi-async on", "^done", short);
    ctl.expect(
        &format!("-file-exec-and-symbols {FIRMWARE}"),
        "^done",
        short,
    );
    ctl.expect(
        &format!("-target-select extended-remote {}", addr),
        "^connected",
        short,
    );
    ctl.expect(
        "-interpreter-exec console \"monitor reset halt\"",
        "^done",
        short,
    );
    ctl.expect("-target-download", "^done", long);
    ctl.expect(
        "-interpreter-exec console \"monitor reset halt\"",
        "^done",
        short,
    );
    ctl.expect("-exec-continue", "^running", short);
    // `^running` comes before the server resumes the core (probe-rs steps
    // first, one halt): count from when it runs.
    let deadline = Instant::now() + short;
    while board.lock().is_halted() {
        assert!(
            Instant::now() < deadline,
            "the controller's continue did not run the core"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let halts = board.lock().halts();

    // What cortex-debug's Live Watch GDB does: its own connection, no
    // interrupt on connect, then periodic evaluation.
    let mut watch = Mi::start();
    watch.wait("(gdb)", short);
    watch.expect("-gdb-set mi-async on", "^done", short);
    watch.expect(
        "-interpreter-exec console \"set remote interrupt-on-connect off\"",
        "^done",
        short,
    );
    watch.expect(
        &format!("-file-exec-and-symbols {FIRMWARE}"),
        "^done",
        short,
    );
    watch.expect(
        &format!("-target-select extended-remote {}", addr),
        "^connected",
        short,
    );
    let first = value(&watch.expect(
        "-data-evaluate-expression firmware::TICKS",
        "^done,value=",
        short,
    ));
    std::thread::sleep(Duration::from_millis(500));
    let second = value(&watch.expect(
        "-data-evaluate-expression firmware::TICKS",
        "^done,value=",
        short,
    ));
    assert!(
        second > first,
        "the counter rises while observed: {first} then {second}\n{}",
        watch.log()
    );
    // The observer cannot stop the program.
    let refused = watch.expect(
        "-interpreter-exec console \"monitor halt\"",
        "^error",
        short,
    );
    assert!(
        watch
            .log()
            .contains("monitor halt: refused, this connection only observes"),
        "{refused}\n{}",
        watch.log()
    );
    assert_eq!(
        board.lock().halts(),
        halts,
        "the core halted while observed:\n{}",
        watch.log()
    );
    watch.expect("-target-disconnect", "^done", short);
    watch.expect("-gdb-exit", "^exit", short);
    drop(watch);

    // Nor when the observer left; the controller's continue never stopped.
    assert_eq!(
        board.lock().halts(),
        halts,
        "the observer's disconnect halted the core"
    );
    assert!(!board.lock().is_halted());
    let seen = ctl.drain(Duration::from_millis(300));
    assert!(
        !seen.iter().any(|l| l.starts_with("*stopped")),
        "the core halted while observed:\n{}",
        ctl.log()
    );
    ctl.expect("-exec-interrupt", "^done", short);
    let stop = ctl.wait("*stopped", short);
    assert!(stop.contains("signal-name=\"SIGINT\""), "{stop}");
    let after = value(&ctl.expect(
        "-data-evaluate-expression firmware::TICKS",
        "^done,value=",
        short,
    ));
    assert!(after >= second, "{after} < {second}");
    ctl.expect("-target-disconnect", "^done", short);
    ctl.expect("-gdb-exit", "^exit", short);
}
