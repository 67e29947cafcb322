//! `umacvlan-bench tapfwd`: the minimal TAP→TAP forwarder — the floor of any TAP-based
//! switch. Two TAPs (created straight in the endpoints' namespaces, with the same options as
//! umacvlan's TAPs: `IFF_VNET_HDR` and offloads, so the same super-frames pass), and per
//! direction one thread that reads a frame and writes it to the other TAP: one read and one
//! write per frame, no logic, no copies beyond the kernel's. Runs until SIGTERM/SIGINT;
//! the TAPs disappear with the process.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use umacvlan_io::epoll::{Epoll, Events, Interest};
use umacvlan_io::netns::NetnsHandle;
use umacvlan_io::tap::{Tap, TapOptions};

/// Where one TAP goes: `NETNS/IFNAME`.
#[derive(Clone, Debug)]
pub struct Side {
    /// Network namespace name (`ip netns` name).
    pub netns: String,
    /// Interface name.
    pub ifname: String,
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        let (n, i) = s
            .split_once('/')
            .ok_or_else(|| format!("expected NETNS/IFNAME, got {s:?}"))?;
        Ok(Side {
            netns: n.into(),
            ifname: i.into(),
        })
    }
}

/// Creates the two TAPs, prints `ready`, forwards until a termination signal.
pub fn main(a: &Side, b: &Side, vnet_hdr: bool) -> io::Result<()> {
    let opts = TapOptions {
        vnet_hdr,
        ..Default::default()
    };
    let ta = Arc::new(Tap::create_in(
        Some(&NetnsHandle::from_name(&a.netns)?),
        &a.ifname,
        opts,
    )?);
    let tb = Arc::new(Tap::create_in(
        Some(&NetnsHandle::from_name(&b.netns)?),
        &b.ifname,
        opts,
    )?);
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])?;
    for (src, dst, name) in [(ta.clone(), tb.clone(), "a>b"), (tb, ta, "b>a")] {
        std::thread::Builder::new()
            .name(format!("tapfwd {name}"))
            .spawn(move || {
                if let Err(e) = pump(&src, &dst) {
                    eprintln!("tapfwd {name}: {e}");
                    std::process::exit(1);
                }
            })?;
    }
    println!("ready");
    io::stdout().flush()?;
    let mut signals = signals;
    let _ = signals.forever().next();
    Ok(())
}

/// Moves frames from `src` to `dst` until an error: wait, then read/write until empty.
fn pump(src: &Tap, dst: &Tap) -> io::Result<()> {
    let ep = Epoll::new()?;
    ep.add(src.as_raw_fd(), 0, Interest::READABLE)?;
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; 65_536 + 256];
    loop {
        match ep.wait(&mut events, None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        loop {
            match src.read(&mut buf) {
                // A write can fail while the other side is down: the frame is lost, as on a
                // wire.
                Ok(n) => {
                    let _ = dst.write(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO while our own side is down: wait for the next readiness.
                Err(e) if e.raw_os_error() == Some(5) => break,
                Err(e) => return Err(e),
            }
        }
    }
}
