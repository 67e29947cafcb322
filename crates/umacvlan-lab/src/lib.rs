//! umacvlan's labs, kept out of the product library: throw-away network namespaces with a
//! umacvlan daemon ([`lab`]), the demo built on them ([`demo`], run as `umacvlan demo`) and the
//! soak run ([`soak`], `umacvlan demo --soak MINUTES`). The root tests and the benchmarks build
//! their topologies with [`lab::Lab`].

#![forbid(unsafe_code)]

pub mod demo;
pub mod lab;
pub mod soak;
