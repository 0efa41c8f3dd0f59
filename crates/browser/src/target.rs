//! What `node.download(x)` was given, understood once at the boundary (issue 10): a share link,
//! a 40-hex hash_name or BitTorrent infohash, a magnet link, or an `http(s)://` URL. Plain Rust
//! (no browser), so it is unit-tested natively.
//!
//! | input | hash_name asked for | `DB_SOURCE` sent on each source stream |
//! |---|---|---|
//! | `…#<40 hex>` (a share link) | the 40 hex | none: it names onionmesh content |
//! | `<40 hex>` | the 40 hex | `MAGNET` `magnet:?xt=urn:btih:<hex>`: found in the mesh if anyone holds it, else a facilitator tries BitTorrent |
//! | `magnet:?xt=urn:btih:<40 hex or 32 base32>&tr=…` | the infohash | `MAGNET`, rebuilt as `xt` then as many `tr` as fit |
//! | `http://…`, `https://…` | [`DbSource::web_hash_name`] of the URL (fragment dropped) | `WEB` with the URL |
//!
//! Parsing uses crates, never hand-written grammar: `form_urlencoded` for a magnet's query,
//! `base32` for a base32 infohash, `http::Uri` for web URLs. Every refusal is a
//! [`TargetError`] whose `Display` is a sentence for the person who typed it.

use onionmesh_wire::db::{DbSource, SourceKind, SourceUri, MAX_SOURCE_URI};
use onionmesh_wire::HashName;

/// A download target, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A share link: onionmesh content, asked for in the mesh only.
    Content(HashName),
    /// A BitTorrent v1 infohash (from a magnet link or 40 bare hex digits); `uri` is the
    /// magnet link sent in `DB_SOURCE` (at most [`MAX_SOURCE_URI`] bytes).
    Magnet { infohash: HashName, uri: SourceUri },
    /// A web file; `url` is sent in `DB_SOURCE` and names the request
    /// (`DbSource::web_hash_name(url)`).
    Web { url: SourceUri },
}

/// Why a target was refused. `Display` is a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    #[error("Nothing to open: paste a share link, a magnet link, a 40-character hash or infohash, or a web address.")]
    Empty,
    #[error("This magnet link is malformed ({0}); copy it again from where you found it.")]
    BadMagnet(String),
    #[error("This magnet link names no BitTorrent v1 infohash (no xt=urn:btih:…); only v1 or hybrid torrents can be opened.")]
    NoInfohash,
    #[error("This web address is malformed ({0}); check it and try again.")]
    BadUrl(String),
    #[error("This web address is {0} bytes long; at most {max} bytes fit in a request through the mesh.", max = MAX_SOURCE_URI)]
    UrlTooLong(usize),
    #[error("\"{0}\" is not something this page can open: paste a share link (ending in # and 40 hex characters), a magnet link, a 40-character hash or infohash, or an http(s) web address.")]
    Unknown(String),
}

impl Target {
    /// The hash_name the download is asked for in the mesh.
    pub fn hash_name(&self) -> HashName {
        match self {
            Target::Content(h) => *h,
            Target::Magnet { infohash, .. } => *infohash,
            Target::Web { url } => DbSource::web_hash_name(url),
        }
    }

    /// The `DB_SOURCE` to send first on every source stream, if any.
    pub fn source(&self) -> Option<DbSource> {
        match self {
            Target::Content(_) => None,
            Target::Magnet { infohash, uri } => Some(DbSource {
                hash_name: *infohash,
                kind: SourceKind::MAGNET,
                uri: uri.clone(),
            }),
            Target::Web { url } => Some(DbSource {
                hash_name: DbSource::web_hash_name(url),
                kind: SourceKind::WEB,
                uri: url.clone(),
            }),
        }
    }
}

fn hex40(s: &str) -> Option<HashName> {
    if s.len() == 40 {
        HashName::from_hex(s)
    } else {
        None
    }
}

fn has_scheme(s: &str, scheme: &str) -> bool {
    s.len() > scheme.len()
        && s.is_char_boundary(scheme.len())
        && s[..scheme.len()].eq_ignore_ascii_case(scheme)
}

/// Understand what the person typed (surrounding whitespace ignored).
pub fn parse(text: &str) -> Result<Target, TargetError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(TargetError::Empty);
    }
    if let Some(h) = hex40(s) {
        return Ok(Target::Magnet {
            infohash: h,
            uri: bare_magnet(&h),
        });
    }
    if has_scheme(s, "magnet:") {
        return parse_magnet(s);
    }
    // A share link is the page's own address with the hash_name as fragment; the fragment
    // never reaches a web server, so any address ending in #<40 hex> is one.
    if let Some((_, tail)) = s.rsplit_once('#') {
        if let Some(h) = hex40(tail) {
            return Ok(Target::Content(h));
        }
    }
    if has_scheme(s, "http://") || has_scheme(s, "https://") {
        return parse_web(s);
    }
    Err(TargetError::Unknown(s.chars().take(60).collect()))
}

/// The magnet link 40 bare hex digits stand for: the infohash alone, no tracker.
pub(crate) fn bare_magnet(h: &HashName) -> SourceUri {
    // 60 ASCII bytes: always fits.
    SourceUri::new(format!("magnet:?xt=urn:btih:{}", h.to_hex()))
        .unwrap_or_else(|_| unreachable!("a 60-byte magnet link fits {MAX_SOURCE_URI} bytes"))
}

/// The infohash of an `xt` value `urn:btih:<40 hex | 32 base32>`, `None` for other `xt` kinds
/// (such as v2's `urn:btmh:`).
fn btih(xt: &str) -> Option<Result<HashName, TargetError>> {
    const PREFIX: &str = "urn:btih:";
    if !has_scheme(xt, PREFIX) {
        return None;
    }
    let id = &xt[PREFIX.len()..];
    Some(match id.len() {
        40 => HashName::from_hex(id).ok_or_else(|| {
            TargetError::BadMagnet("its infohash has characters that are not hexadecimal".into())
        }),
        32 => base32::decode(
            base32::Alphabet::Rfc4648 { padding: false },
            &id.to_ascii_uppercase(),
        )
        .and_then(|b| <[u8; 20]>::try_from(b.as_slice()).ok())
        .map(HashName)
        .ok_or_else(|| TargetError::BadMagnet("its base32 infohash does not decode".into())),
        n => Err(TargetError::BadMagnet(format!(
            "its infohash has {n} characters, not 40 hexadecimal or 32 base32"
        ))),
    })
}

fn parse_magnet(s: &str) -> Result<Target, TargetError> {
    let query = s["magnet:".len()..]
        .strip_prefix('?')
        .ok_or_else(|| TargetError::BadMagnet("there is no '?' after 'magnet:'".into()))?;
    let mut infohash = None;
    let mut trackers = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "xt" => {
                if let Some(h) = btih(&value) {
                    let h = h?;
                    match infohash {
                        Some(other) if other != h => {
                            return Err(TargetError::BadMagnet(
                                "it names two different BitTorrent infohashes".into(),
                            ))
                        }
                        _ => infohash = Some(h),
                    }
                }
            }
            "tr" => trackers.push(value.into_owned()),
            _ => {}
        }
    }
    let infohash = infohash.ok_or(TargetError::NoInfohash)?;
    // Rebuilt rather than forwarded: canonical hex infohash first, then the trackers that fit
    // one DB_SOURCE cell (a facilitator uses its own trackers and the DHT besides).
    let mut uri = format!("magnet:?xt=urn:btih:{}", infohash.to_hex());
    for tr in trackers {
        let pair = form_urlencoded::Serializer::new(String::new())
            .append_pair("tr", &tr)
            .finish();
        if uri.len() + 1 + pair.len() <= MAX_SOURCE_URI {
            uri.push('&');
            uri.push_str(&pair);
        }
    }
    let uri = SourceUri::new(uri)
        .unwrap_or_else(|_| unreachable!("built to at most {MAX_SOURCE_URI} bytes"));
    Ok(Target::Magnet { infohash, uri })
}

fn parse_web(s: &str) -> Result<Target, TargetError> {
    // The fragment is the browser's business, never sent to the server.
    let url = s.split_once('#').map_or(s, |(u, _)| u);
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| TargetError::BadUrl(e.to_string()))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(TargetError::BadUrl("it has no host name".into()));
    }
    let len = url.len();
    let url = SourceUri::new(url.to_owned()).map_err(|_| TargetError::UrlTooLong(len))?;
    Ok(Target::Web { url })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c9e15763f722f23e98a29decdfae341b98d53056";

    fn h() -> HashName {
        HashName::from_hex(HEX).unwrap()
    }

    #[test]
    fn share_links_and_bare_hashes() {
        assert_eq!(
            parse(&format!(" http://127.0.0.1:8080/#{HEX} ")).unwrap(),
            Target::Content(h())
        );
        assert_eq!(
            parse(&format!("#{}", HEX.to_uppercase())).unwrap(),
            Target::Content(h())
        );
        let bare = parse(HEX).unwrap();
        assert_eq!(bare.hash_name(), h());
        let src = bare.source().unwrap();
        assert_eq!(src.kind, SourceKind::MAGNET);
        assert_eq!(&*src.uri, format!("magnet:?xt=urn:btih:{HEX}"));
        assert!(Target::Content(h()).source().is_none());
    }

    #[test]
    fn magnet_hex_and_base32_agree() {
        let hex = parse(&format!(
            "magnet:?xt=urn:btih:{}&dn=Big+Buck&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce",
            HEX.to_uppercase()
        ))
        .unwrap();
        let b32 = data_encoding::BASE32.encode(&h().0).to_lowercase();
        let from_b32 = parse(&format!("MAGNET:?xt=urn:btih:{b32}")).unwrap();
        assert_eq!(hex.hash_name(), h());
        assert_eq!(from_b32.hash_name(), h());
        let src = hex.source().unwrap();
        assert_eq!(src.hash_name, h());
        assert_eq!(
            &*src.uri,
            format!("magnet:?xt=urn:btih:{HEX}&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce")
        );
        // The rebuilt link parses back to the same thing.
        assert_eq!(parse(&src.uri).unwrap(), hex);
    }

    #[test]
    fn magnet_trackers_are_kept_only_while_they_fit() {
        let long = format!("http://{}.example/announce", "a".repeat(300));
        let m = format!("magnet:?xt=urn:btih:{HEX}&tr=http://t1/a&tr={long}&tr={long}");
        let Target::Magnet { uri, .. } = parse(&m).unwrap() else {
            panic!("a magnet")
        };
        assert!(uri.len() <= MAX_SOURCE_URI);
        assert!(uri.contains("t1"));
        assert_eq!(uri.matches(&"a".repeat(300)).count(), 1);
    }

    #[test]
    fn bad_magnets_are_sentences() {
        for (m, want) in [
            ("magnet:xt=urn:btih:00", "no '?'"),
            ("magnet:?dn=film", "no BitTorrent v1 infohash"),
            ("magnet:?xt=urn:btmh:1220abcd", "no BitTorrent v1 infohash"),
            ("magnet:?xt=urn:btih:1234", "4 characters"),
            (
                "magnet:?xt=urn:btih:zz9e15763f722f23e98a29decdfae341b98d5305",
                "not hexadecimal",
            ),
            (
                "magnet:?xt=urn:btih:11111111111111111111111111111111",
                "base32",
            ),
        ] {
            let e = parse(m).unwrap_err().to_string();
            assert!(e.contains(want), "{m}: {e}");
            assert!(e.ends_with('.'), "{e}");
        }
        let two = format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}", "0".repeat(40));
        assert!(parse(&two)
            .unwrap_err()
            .to_string()
            .contains("two different"));
    }

    #[test]
    fn web_urls() {
        let t = parse("https://example.org/video.webm?x=1#t=10").unwrap();
        assert_eq!(
            t,
            Target::Web {
                url: SourceUri::new("https://example.org/video.webm?x=1").unwrap()
            }
        );
        assert_eq!(
            t.hash_name(),
            DbSource::web_hash_name("https://example.org/video.webm?x=1")
        );
        let src = t.source().unwrap();
        assert_eq!(src.kind, SourceKind::WEB);
        assert_eq!(src.hash_name, t.hash_name());
        assert!(matches!(parse("http:///x"), Err(TargetError::BadUrl(_))));
        assert!(matches!(
            parse("http://exa mple.org/"),
            Err(TargetError::BadUrl(_))
        ));
        let long = format!("http://example.org/{}", "a".repeat(500));
        assert_eq!(parse(&long), Err(TargetError::UrlTooLong(long.len())));
    }

    #[test]
    fn other_text_is_refused() {
        for s in ["", "  ", "ftp://example.org/x", "hello", "c9e157"] {
            let e = parse(s).unwrap_err();
            assert!(
                matches!(e, TargetError::Empty | TargetError::Unknown(_)),
                "{s}"
            );
        }
    }
}
