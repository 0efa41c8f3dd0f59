//! The DTLS certificate fingerprint carried in an SDP (`a=fingerprint:sha-256 AB:CD:...`).

/// A DTLS certificate fingerprint: hash algorithm name (lower case) and digest bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub algorithm: String,
    pub digest: Vec<u8>,
}

impl Fingerprint {
    /// A canonical byte encoding used inside signatures: `len(alg) alg len(digest) digest`.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.algorithm.len() + self.digest.len());
        out.push(self.algorithm.len().min(255) as u8);
        out.extend_from_slice(&self.algorithm.as_bytes()[..self.algorithm.len().min(255)]);
        out.push(self.digest.len().min(255) as u8);
        out.extend_from_slice(&self.digest[..self.digest.len().min(255)]);
        out
    }
}

/// The first `a=fingerprint:` attribute of `sdp` (session or media level). WebRTC puts the same
/// certificate on every m-line, so the first is the one. Returns `None` when there is none or it
/// is malformed.
pub fn fingerprint(sdp: &str) -> Option<Fingerprint> {
    let line = sdp
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("a=fingerprint:"))?;
    let (alg, hexpart) = line.trim().split_once(' ')?;
    let mut digest = Vec::with_capacity(64);
    for part in hexpart.trim().split(':') {
        if part.len() != 2 {
            return None;
        }
        digest.push(u8::from_str_radix(part, 16).ok()?);
        if digest.len() > 64 {
            return None;
        }
    }
    if digest.is_empty() {
        return None;
    }
    Some(Fingerprint {
        algorithm: alg.to_ascii_lowercase(),
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chromium_sdp() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                   a=fingerprint:sha-256 0A:1B:FF:00\r\na=setup:actpass\r\n";
        let fp = fingerprint(sdp).unwrap();
        assert_eq!(fp.algorithm, "sha-256");
        assert_eq!(fp.digest, vec![0x0a, 0x1b, 0xff, 0x00]);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(fingerprint("v=0\r\n"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256 0G:11"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256"), None);
        assert_eq!(fingerprint("a=fingerprint:sha-256 123:45"), None);
    }
}
