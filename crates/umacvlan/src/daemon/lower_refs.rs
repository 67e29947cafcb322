//! Promiscuity and allmulti references on a lower, one per macvlan that holds one, as the
//! kernel macvlan takes them (`dev_set_promiscuity`/`dev_set_allmulti` per macvlan: two
//! allmulti macvlans show `allmulti 2` on the lower).
//!
//! A packet socket's membership is counted once per socket however often it is added
//! (`packet_mc_add` bumps a per-socket count), so N references need N sockets. The port's
//! membership socket holds the first; [`LowerRefs`] holds the rest, one membership-only
//! socket (no packet hook, receives nothing) per further reference. Closing a socket drops
//! its references, so they vanish with the daemon like every other membership.

use std::io;
use umacvlan_io::afpacket::{LowerSocket, Membership};
use umacvlan_io::netns::NetnsHandle;

/// The references beyond the first.
#[derive(Default)]
pub struct LowerRefs {
    /// Socket i holds promisc if i + 1 < promisc references are wanted, allmulti likewise.
    socks: Vec<(LowerSocket, bool, bool)>,
}

impl LowerRefs {
    pub fn new() -> Self {
        LowerRefs::default()
    }

    /// Forgets every socket (dropping its references), e.g. when the lower moved.
    pub fn clear(&mut self) {
        self.socks.clear();
    }

    /// Makes the lower `ifindex` of namespace `ns` (`None`: the caller's) carry `promisc`
    /// and `allmulti` references in total, the first of each being held elsewhere. Says
    /// whether it changed any.
    pub fn sync(
        &mut self,
        ns: Option<&NetnsHandle>,
        ifindex: u32,
        promisc: u32,
        allmulti: u32,
    ) -> io::Result<bool> {
        let want_p = promisc.saturating_sub(1) as usize;
        let want_a = allmulti.saturating_sub(1) as usize;
        let n = want_p.max(want_a);
        let mut changed = self.socks.len() > n;
        self.socks.truncate(n);
        while self.socks.len() < n {
            // Created in the lower's namespace (by the broker when it is another one).
            let s = LowerSocket::open_membership_holder_in(ns, ifindex)?;
            self.socks.push((s, false, false));
        }
        for (i, (s, p, a)) in self.socks.iter_mut().enumerate() {
            for (held, want, m) in [
                (p, i < want_p, Membership::Promisc),
                (a, i < want_a, Membership::AllMulti),
            ] {
                if *held != want {
                    if want {
                        s.add_membership(m)?;
                    } else {
                        s.drop_membership(m)?;
                    }
                    *held = want;
                    changed = true;
                }
            }
        }
        Ok(changed)
    }
}
