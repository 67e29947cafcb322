//! `control_decode`: the daemon's control-protocol decoder
//! ([`umacvlan::daemon::control::decode`]) on arbitrary bytes. No panic; a refusal is always a
//! [`Response::Error`] with a positive errno (what the daemon writes back); an accepted request
//! survives a JSON round trip unchanged (so what the manager applies is what the client sent).

use umacvlan::daemon::control::decode;
use umacvlan::proto::{Envelope, Response, PROTOCOL_VERSION};

/// The fuzz target's body.
pub fn check(data: &[u8]) {
    match decode(data) {
        Ok(req) => {
            let env = Envelope {
                version: PROTOCOL_VERSION,
                request: req.clone(),
            };
            let line = serde_json::to_vec(&env).expect("a decoded request serializes");
            assert_eq!(decode(&line).expect("re-encoded request decodes"), req);
        }
        Err(Response::Error { errno, .. }) => assert!(errno > 0, "errno {errno}"),
        Err(other) => panic!("decode refused with a non-error response: {other:?}"),
    }
}
