fn main() {
    std::process::exit(umacvlan::cli::main_entry(
        std::env::args().skip(1).collect(),
    ));
}
