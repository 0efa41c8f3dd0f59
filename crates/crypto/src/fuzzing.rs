//! Entry points for the fuzz targets in `crates/crypto/fuzz`. Compiled only with the `fuzzing`
//! feature or in this crate's own tests, where proptest feeds them arbitrary bytes.
//!
//! Each function must simply return, whatever the input: a panic is the bug being looked for.

use crate::channel::{ClientHandshake, ServerHandshake};
use crate::Identity;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn identity(seed: u8) -> Identity {
    Identity::from_seed([seed; 32]).expect("a valid scalar")
}

/// `data` as every message of the link channel: m1 at a server, m2 at a client, m3 after a real
/// m2, then as a run of frames (split at every 0xff byte) on an established channel.
pub fn channel(data: &[u8]) {
    let (client_id, server_id) = (identity(1), identity(2));
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let _ = ServerHandshake::respond(&mut rng, &server_id, data);
    let (c, _) = ClientHandshake::start(&mut rng, None);
    let _ = c.finish(&client_id, data);

    let (c, m1) = ClientHandshake::start(&mut rng, Some(server_id.id()));
    let Ok((s, m2)) = ServerHandshake::respond(&mut rng, &server_id, &m1) else {
        return;
    };
    let _ = ServerHandshake::respond(&mut rng, &server_id, &m1).map(|(s, _)| s.finish(data));
    let Ok((mut client, m3)) = c.finish(&client_id, &m2) else {
        return;
    };
    let Ok(mut server) = s.finish(&m3) else {
        return;
    };
    for frame in data.split(|&b| b == 0xff) {
        let _ = server.open(frame);
        let _ = client.open(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn channel_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            channel(&data);
        }
    }
}
