//! Compiles the fast path's eBPF programs (`bpf/*.c` at the repository root) with clang.
//!
//! Without clang the crate still builds, with no object: `umacvlan daemon --datapath auto`
//! then falls back to the TAP path and `--datapath bpf` fails saying why. Set
//! `UMACVLAN_REQUIRE_BPF=1` to make a missing clang a build error instead.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let bpf_dir = manifest.join("../../bpf");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("umacvlan_tc.o");
    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-env-changed=UMACVLAN_REQUIRE_BPF");
    println!("cargo:rerun-if-env-changed=CLANG");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let multiarch = format!(
        "-I/usr/include/{}-linux-gnu",
        std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into())
    );
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", &multiarch, "-c",
        ])
        .arg(bpf_dir.join("umacvlan_tc.c"))
        .arg("-o")
        .arg(&out)
        .status();
    let error = match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("{clang} failed on bpf/umacvlan_tc.c ({s})")),
        Err(e) => Some(format!(
            "cannot run {clang} ({e}); install clang and libbpf-dev (.ci/setup does)"
        )),
    };
    if let Some(e) = error {
        if std::env::var_os("UMACVLAN_REQUIRE_BPF").is_some() {
            panic!("{e}");
        }
        println!("cargo:warning=eBPF fast path not built: {e}");
        // An empty object: the loader reports the fast path as unavailable.
        std::fs::write(&out, []).unwrap();
    }
}
