//! `umacvlan-demo`: what `umacvlan demo …` runs (the product binary hands its arguments over,
//! and its own path in `UMACVLAN_BIN` for the lab's daemon).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(umacvlan_lab::demo::main(args));
}
