//! Replays every committed seed (`seeds/TARGET/`) and every crasher the fuzzers found
//! (`regressions/TARGET/`) through the same checks the fuzz targets run. Runs on the stable
//! toolchain with no fuzzer installed: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::Path;

type Check = fn(&[u8]);

const TARGETS: &[(&str, Check)] = &[
    ("frame_views", umacvlan_fuzz::frame_views::check),
    ("engine_decisions", umacvlan_fuzz::engine_decisions::check),
    ("control_decode", umacvlan_fuzz::control_decode::check),
    ("cli_parse", umacvlan_fuzz::cli_parse::check),
];

fn replay(kind: &str, target: &str, check: Check) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let name = f.display().to_string();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{name} fails {target}");
        }
    }
    files.len()
}

#[test]
fn seeds_pass() {
    for (t, check) in TARGETS {
        let n = replay("seeds", t, *check);
        assert!(n > 0, "no seeds for {t}");
    }
}

#[test]
fn regressions_pass() {
    for (t, check) in TARGETS {
        replay("regressions", t, *check);
    }
}
