//! `umacvlan demo` (being written).

/// Entry point.
pub fn main(_args: Vec<String>) -> i32 {
    1
}
