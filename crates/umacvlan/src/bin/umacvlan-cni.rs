//! The umacvlan CNI plugin (installed as `umacvlan` in the CNI plugin directories).
fn main() {
    std::process::exit(umacvlan::cni::main());
}
