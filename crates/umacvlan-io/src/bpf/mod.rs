//! The eBPF fast path's kernel side: loads `bpf/umacvlan_tc.c` (compiled by `build.rs`),
//! attaches its programs (a lower's with a tcx link, which detaches when the daemon's fds close,
//! so a killed daemon leaves no program on it; a hidden end's as a `cls_bpf` filter, which goes
//! with the device), and reads and writes its maps. Built on `aya`.
//!
//! The map contents are computed elsewhere (`umacvlan_core::engine::fastpath`); this module
//! only moves them into the kernel.

mod apply;
pub mod maps;

pub use apply::{Applied, HiddenEnd};

use aya::maps::{Array, HashMap as BpfHash, MapData, PerCpuHashMap, PerCpuValues, RingBuf};
use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
use aya::programs::SocketFilter;
use aya::programs::{LinkOrder, ProgramError, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use maps::{Ctl, DevEntry, Event, MacKey, PortEntry, Stats};
use std::collections::HashMap;

/// The compiled object (empty when clang was missing at build time).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/umacvlan_tc.o"));

/// The program on a lower's ingress (`macvlan_handle_frame` for unicast).
pub const PROG_LOWER: &str = "umv_lower_ingress";
/// The program on a macvlan's hidden end's ingress (`macvlan_queue_xmit`).
pub const PROG_XMIT: &str = "umv_macvlan_xmit";
/// The socket filter on the slow path's lower sockets.
pub const PROG_SLOW_FILTER: &str = "umv_slow_filter";

/// What went wrong, naming the program or map concerned.
#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    /// The crate was built without the object.
    #[error("the eBPF fast path was not built into this binary (clang was missing at build time)")]
    NotBuilt,
    /// The object could not be loaded (maps created), e.g. no BPF permission.
    #[error("cannot load the eBPF object: {0}")]
    Load(String),
    /// The verifier (or the kernel) refused a program.
    #[error("the kernel refused eBPF program {program}: {detail}")]
    Program {
        /// The program's name.
        program: &'static str,
        /// Why (the verifier's log for a rejection).
        detail: String,
    },
    /// Attaching failed.
    #[error("cannot attach eBPF program {program} to {ifname}: {detail}")]
    Attach {
        /// The program's name.
        program: &'static str,
        /// The device.
        ifname: String,
        /// Why.
        detail: String,
    },
    /// A map operation failed.
    #[error("eBPF map {map}: {detail}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// Why.
        detail: String,
    },
}

type Result<T> = std::result::Result<T, FastPathError>;

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> FastPathError {
    move |e| FastPathError::Map {
        map,
        detail: e.to_string(),
    }
}

/// The loaded programs and maps. Dropping it detaches every program.
pub struct FastPath {
    bpf: Ebpf,
    macs: BpfHash<MapData, MacKey, DevEntry>,
    devs: BpfHash<MapData, u32, DevEntry>,
    ports: BpfHash<MapData, u32, PortEntry>,
    sources: BpfHash<MapData, MacKey, u32>,
    stats: PerCpuHashMap<MapData, u32, Stats>,
    /// The ring buffer and the switch, until [`FastPath::take_tracer`] takes them.
    tracer: Option<Tracer>,
    /// Attached links by (program, ifindex).
    links: HashMap<(&'static str, u32), aya::programs::tc::SchedClassifierLinkId>,
    ncpus: usize,
}

impl FastPath {
    /// Whether this binary carries the programs.
    pub fn built() -> bool {
        !OBJECT.is_empty()
    }

    /// Loads the object and both programs (nothing attached yet). `trace`: the programs start
    /// emitting every decision to the `umv_events` ring buffer ([`FastPath::take_events`]);
    /// the switch can be flipped at any time ([`Tracer::set`]). Off, a program pays one
    /// inlined array lookup and a branch per frame.
    pub fn load(trace: bool) -> Result<FastPath> {
        Self::load_with(trace, false)
    }

    /// [`FastPath::load`], and `bridge_direct`: bridge-to-bridge unicast goes straight into
    /// the destination (`bpf_redirect_peer`) instead of through the lower's receive path (an
    /// experiment: packet taps on the lower then miss it, unlike the kernel's).
    pub fn load_with(trace: bool, bridge_direct: bool) -> Result<FastPath> {
        if !Self::built() {
            return Err(FastPathError::NotBuilt);
        }
        let direct_flag: u32 = bridge_direct as u32;
        let mut bpf = EbpfLoader::new()
            .override_global("UMV_BRIDGE_DIRECT", &direct_flag, true)
            .load(OBJECT)
            .map_err(|e| FastPathError::Load(full_chain(&e)))?;
        for program in [PROG_LOWER, PROG_XMIT] {
            let p: &mut SchedClassifier = program_of(&mut bpf, program)?;
            p.load().map_err(|e| FastPathError::Program {
                program,
                detail: program_error(&e),
            })?;
        }
        let f: &mut SocketFilter = program_of(&mut bpf, PROG_SLOW_FILTER)?;
        f.load().map_err(|e| FastPathError::Program {
            program: PROG_SLOW_FILTER,
            detail: program_error(&e),
        })?;
        let take = |bpf: &mut Ebpf, name: &'static str| {
            bpf.take_map(name).ok_or(FastPathError::Map {
                map: name,
                detail: "missing from the object".into(),
            })
        };
        let macs = BpfHash::try_from(take(&mut bpf, "umv_macs")?).map_err(map_err("umv_macs"))?;
        let devs = BpfHash::try_from(take(&mut bpf, "umv_devs")?).map_err(map_err("umv_devs"))?;
        let ports =
            BpfHash::try_from(take(&mut bpf, "umv_ports")?).map_err(map_err("umv_ports"))?;
        let sources =
            BpfHash::try_from(take(&mut bpf, "umv_sources")?).map_err(map_err("umv_sources"))?;
        let stats =
            PerCpuHashMap::try_from(take(&mut bpf, "umv_stats")?).map_err(map_err("umv_stats"))?;
        let events =
            RingBuf::try_from(take(&mut bpf, "umv_events")?).map_err(map_err("umv_events"))?;
        let ctl = Array::try_from(take(&mut bpf, "umv_ctl")?).map_err(map_err("umv_ctl"))?;
        let mut tracer = Tracer { events, ctl };
        tracer.set(trace, 0)?;
        let ncpus = aya::util::nr_cpus().map_err(|(_, e)| FastPathError::Map {
            map: "umv_stats",
            detail: format!("cannot count the possible CPUs: {e}"),
        })?;
        Ok(FastPath {
            bpf,
            macs,
            devs,
            ports,
            sources,
            stats,
            tracer: Some(tracer),
            links: HashMap::new(),
            ncpus,
        })
    }

    fn program(&mut self, program: &'static str) -> &mut SchedClassifier {
        self.bpf
            .program_mut(program)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load")
    }

    /// Attaches `program` ([`PROG_LOWER`] or [`PROG_XMIT`]) at the ingress of device
    /// `ifname` (ifindex `ifindex`, in the calling thread's namespace): a lower with a tcx link
    /// (it detaches when the daemon's descriptors close, leaving the lower as it was); a
    /// hidden end with clsact and a direct-action `cls_bpf` filter, which go with the device.
    /// A tcx attach waits a full RCU grace period while holding RTNL (9–30 ms measured here,
    /// once per macvlan); a filter swap, by the kernel source, at most an expedited one (~0.07 ms measured).
    pub fn attach(&mut self, program: &'static str, ifname: &str, ifindex: u32) -> Result<()> {
        if self.links.contains_key(&(program, ifindex)) {
            return Ok(());
        }
        let err = |detail: String| FastPathError::Attach {
            program,
            ifname: ifname.into(),
            detail,
        };
        let options = if program == PROG_XMIT {
            match aya::programs::tc::qdisc_add_clsact(ifname) {
                Ok(()) => {}
                Err(aya::programs::tc::TcError::NetlinkError(e))
                    if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(err(full_chain(&e))),
            }
            TcAttachOptions::Netlink(aya::programs::tc::NlOptions::default())
        } else {
            TcAttachOptions::TcxOrder(LinkOrder::default())
        };
        let id = self
            .program(program)
            .attach_with_options(ifname, TcAttachType::Ingress, options)
            .map_err(|e| err(program_error(&e)))?;
        self.links.insert((program, ifindex), id);
        Ok(())
    }

    /// Detaches `program` from device `ifindex` (nothing if it was not attached).
    pub fn detach(&mut self, program: &'static str, ifindex: u32) {
        if let Some(id) = self.links.remove(&(program, ifindex)) {
            // A deleted device took its link with it; detaching a defunct link may fail.
            let _ = self.program(program).detach(id);
        }
    }

    /// Makes `sock` (a slow-path packet socket on a lower) keep only what the lower's program
    /// leaves to userspace (`SO_ATTACH_BPF` with [`PROG_SLOW_FILTER`]).
    pub fn filter_socket(&self, sock: &crate::LowerSocket) -> Result<()> {
        let program = PROG_SLOW_FILTER;
        let f: &SocketFilter = self
            .bpf
            .program(program)
            .and_then(|p| p.try_into().ok())
            .expect("checked at load");
        f.attach(sock).map_err(|e| FastPathError::Attach {
            program,
            ifname: "a lower's packet socket".into(),
            detail: program_error(&e),
        })?;
        sock.set_ebpf_filter();
        Ok(())
    }

    /// Marks a source address some source-mode macvlan listens to.
    pub fn set_source(&mut self, k: MacKey) -> Result<()> {
        self.sources.insert(k, 1, 0).map_err(map_err("umv_sources"))
    }
    /// Unmarks a source address.
    pub fn remove_source(&mut self, k: &MacKey) {
        let _ = self.sources.remove(k);
    }

    /// Sets one macvlan address entry.
    pub fn set_mac(&mut self, k: MacKey, v: DevEntry) -> Result<()> {
        self.macs.insert(k, v, 0).map_err(map_err("umv_macs"))
    }
    /// Removes one macvlan address entry (absent: nothing).
    pub fn remove_mac(&mut self, k: &MacKey) {
        let _ = self.macs.remove(k);
    }
    /// Sets one macvlan entry, keyed by its hidden end.
    pub fn set_dev(&mut self, hidden: u32, v: DevEntry) -> Result<()> {
        self.devs.insert(hidden, v, 0).map_err(map_err("umv_devs"))
    }
    /// Removes one macvlan entry.
    pub fn remove_dev(&mut self, hidden: u32) {
        let _ = self.devs.remove(&hidden);
    }
    /// Sets one port entry.
    pub fn set_port(&mut self, lower: u32, v: PortEntry) -> Result<()> {
        self.ports.insert(lower, v, 0).map_err(map_err("umv_ports"))
    }
    /// Removes one port entry.
    pub fn remove_port(&mut self, lower: u32) {
        let _ = self.ports.remove(&lower);
    }
    /// The current address entries.
    pub fn macs(&self) -> Vec<(MacKey, DevEntry)> {
        self.macs.iter().filter_map(|r| r.ok()).collect()
    }
    /// The current macvlan entries.
    pub fn devs(&self) -> Vec<(u32, DevEntry)> {
        self.devs.iter().filter_map(|r| r.ok()).collect()
    }
    /// The current port entries.
    pub fn ports(&self) -> Vec<(u32, PortEntry)> {
        self.ports.iter().filter_map(|r| r.ok()).collect()
    }

    /// Starts counting for device `ifindex` from zero (the programs count only devices that
    /// have an entry).
    pub fn reset_stats(&mut self, ifindex: u32) -> Result<()> {
        let zero = PerCpuValues::try_from(vec![Stats::default(); self.ncpus]).map_err(|e| {
            FastPathError::Map {
                map: "umv_stats",
                detail: e.to_string(),
            }
        })?;
        self.stats
            .insert(ifindex, zero, 0)
            .map_err(map_err("umv_stats"))
    }
    /// Stops counting for device `ifindex`.
    pub fn remove_stats(&mut self, ifindex: u32) {
        let _ = self.stats.remove(&ifindex);
    }
    /// Every device's counters summed over the CPUs, by ifindex, read in batches
    /// (`BPF_MAP_LOOKUP_BATCH`: one syscall per 1024 devices, where [`FastPath::stats`] takes one
    /// each; aya has no batch call). An error (e.g. a kernel without batch lookups): the caller
    /// asks per device.
    pub fn all_stats(&self) -> std::io::Result<HashMap<u32, Stats>> {
        use aya::maps::IterableMap;
        use std::os::fd::{AsFd, AsRawFd};
        const CHUNK: usize = 1024;
        const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
        /// `union bpf_attr`'s `batch` member.
        #[repr(C)]
        #[derive(Default)]
        struct BatchAttr {
            in_batch: u64,
            out_batch: u64,
            keys: u64,
            values: u64,
            count: u32,
            map_fd: u32,
            elem_flags: u64,
            flags: u64,
        }
        let fd = self.stats.map().fd().as_fd().as_raw_fd();
        let mut keys = vec![0u32; CHUNK];
        let mut values = vec![Stats::default(); CHUNK * self.ncpus];
        let mut out = HashMap::new();
        // A hash map's batch token is its bucket index (a u32; room for a u64 given).
        let (mut token_in, mut token_out) = (0u64, 0u64);
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    &token_in as *const u64 as u64
                },
                out_batch: &mut token_out as *mut u64 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: CHUNK as u32,
                map_fd: fd as u32,
                ..BatchAttr::default()
            };
            // SAFETY: `attr` is the kernel's `batch` layout; the key and value buffers hold
            // `count` entries of the map's key size and of its per-CPU value size (`Stats` is
            // 8-byte aligned, as the kernel rounds it, times the possible CPUs), and both tokens
            // outlive the call.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let err = (r < 0).then(std::io::Error::last_os_error);
            let done = match &err {
                None => false,
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
                Some(_) => return Err(err.expect("set")),
            };
            let n = (attr.count as usize).min(CHUNK);
            for (i, key) in keys[..n].iter().enumerate() {
                let mut sum = Stats::default();
                for s in &values[i * self.ncpus..(i + 1) * self.ncpus] {
                    sum += *s;
                }
                out.insert(*key, sum);
            }
            if done {
                return Ok(out);
            }
            token_in = token_out;
            first = false;
        }
    }

    /// Device `ifindex`'s counters summed over the CPUs (zero if it has none).
    pub fn stats(&self, ifindex: u32) -> Stats {
        let mut sum = Stats::default();
        if let Ok(v) = self.stats.get(&ifindex, 0) {
            for s in v.iter() {
                sum += *s;
            }
        }
        sum
    }

    /// Traced decisions since the last call (empty when tracing is off or the tracer was
    /// taken).
    pub fn take_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some(t) = self.tracer.as_mut() {
            t.drain(|e| out.push(e));
        }
        out
    }

    /// Hands the ring buffer and its switch to a reader of its own (the daemon's monitor),
    /// once.
    pub fn take_tracer(&mut self) -> Option<Tracer> {
        self.tracer.take()
    }

    /// Runs `program` once on `frame` as received on device `ifindex` (BPF_PROG_TEST_RUN; no
    /// redirect is carried out) and returns the program's verdict (`TC_ACT_*`; for
    /// [`PROG_SLOW_FILTER`], the bytes kept).
    pub fn test_run(&mut self, program: &'static str, frame: &[u8], ifindex: u32) -> Result<u32> {
        // struct __sk_buff up to and including `ifindex` (offset 40); the rest zero.
        let mut ctx = [0u8; 192];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        let mut out = vec![0u8; frame.len() + 256];
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        };
        let r = if program == PROG_SLOW_FILTER {
            let f: &SocketFilter = self
                .bpf
                .program(program)
                .and_then(|p| p.try_into().ok())
                .expect("checked at load");
            f.test_run(opts)
        } else {
            self.program(program).test_run(opts)
        }
        .map_err(|e| FastPathError::Program {
            program,
            detail: program_error(&e),
        })?;
        Ok(r.return_value)
    }
}

/// The programs' decision tracing: the `umv_events` ring buffer and the `umv_ctl` switch.
pub struct Tracer {
    events: RingBuf<MapData>,
    ctl: Array<MapData, Ctl>,
}

impl Tracer {
    /// Turns tracing on or off (takes effect for the next frame); `snap`: frame bytes each
    /// decision carries (at most [`maps::SNAP`]).
    pub fn set(&mut self, on: bool, snap: u32) -> Result<()> {
        let c = Ctl {
            trace: on as u32,
            snap: if on { snap.min(maps::SNAP as u32) } else { 0 },
            // The programs' count goes on (read it with [`Tracer::lost`]; one counted between
            // this read and the write is dropped, only when switching).
            lost: self.lost(),
        };
        self.ctl.set(0, c, 0).map_err(map_err("umv_ctl"))
    }

    /// Decisions the programs could not put in the full ring buffer, since load.
    pub fn lost(&self) -> u64 {
        self.ctl.get(&0, 0).map_or(0, |c| c.lost)
    }

    /// Passes every decision waiting in the ring buffer to `f`.
    pub fn drain(&mut self, mut f: impl FnMut(Event)) {
        while let Some(item) = self.events.next() {
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // Field by field: the ring buffer's bytes have no alignment guarantee.
            let b = &item[..];
            let u = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
            let h = |i: usize| u16::from_ne_bytes(b[i..i + 2].try_into().unwrap());
            let mut e = Event {
                ifindex: u(0),
                target_ifindex: u(4),
                verdict: u(8),
                len: u(12),
                protocol: h(28),
                vlan: h(30),
                ..Event::default()
            };
            e.dst.copy_from_slice(&b[16..22]);
            e.src.copy_from_slice(&b[22..28]);
            e.cap = u(32).min(maps::SNAP as u32);
            e.data.copy_from_slice(&b[36..36 + maps::SNAP]);
            f(e);
        }
    }
}

/// `TC_ACT_OK`.
pub const TC_ACT_OK: u32 = 0;
/// `TC_ACT_SHOT`.
pub const TC_ACT_SHOT: u32 = 2;
/// `TC_ACT_REDIRECT`.
pub const TC_ACT_REDIRECT: u32 = 7;

fn program_error(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => format!("{io_error}; verifier log:\n{verifier_log}"),
        e => full_chain(e),
    }
}

fn full_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s += &format!(": {x}");
        src = x.source();
    }
    s
}

impl FastPath {
    /// Whether this kernel has what the fast path uses: tcx links (6.6+).
    pub fn supported() -> Result<()> {
        if !Self::built() {
            return Err(FastPathError::NotBuilt);
        }
        match aya::util::KernelVersion::current() {
            Ok(v) if v >= aya::util::KernelVersion::new(6, 6, 0) => Ok(()),
            Ok(v) => Err(FastPathError::Load(format!(
                "kernel {v:?} has no tcx links (6.6 or later needed)"
            ))),
            Err(e) => Err(FastPathError::Load(format!(
                "cannot read the kernel version: {e}"
            ))),
        }
    }
}

/// The names of the programs attached at device `ifname`'s tcx ingress (calling thread's
/// namespace): what a killed daemon must not leave behind.
pub fn tcx_ingress_programs(ifname: &str) -> std::io::Result<Vec<String>> {
    let (_, progs) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress)
        .map_err(|e| std::io::Error::other(full_chain(&e)))?;
    Ok(progs
        .iter()
        .map(|p| p.name_as_str().unwrap_or("?").to_string())
        .collect())
}

/// The object's program `program`, as the kind `T` it must be.
fn program_of<'a, T>(
    bpf: &'a mut Ebpf,
    program: &'static str,
) -> std::result::Result<&'a mut T, FastPathError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    bpf.program_mut(program)
        .ok_or(FastPathError::Program {
            program,
            detail: "missing from the object".into(),
        })?
        .try_into()
        .map_err(|e: ProgramError| FastPathError::Program {
            program,
            detail: e.to_string(),
        })
}
