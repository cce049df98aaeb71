//! Percent-encoding, with the `percent-encoding` crate: which characters stay as they are in
//! object keys, path segments and query values, and the two ways URLs in settings are decoded.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 unreserved characters (`A-Z a-z 0-9 - _ . ~`) stay; everything else is `%XX`, as
/// SigV4, the GCS JSON API and Azure's canonical resource want it.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// [`UNRESERVED`] plus `/`: an object key used as a URL path.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// RFC 3986 `pchar`s (unreserved, sub-delims, `:` and `@`): one WebDAV path segment.
const PCHAR: &AsciiSet = &UNRESERVED
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Encodes everything but unreserved characters (query values, names in a path segment).
pub(crate) fn component(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Encodes an object key as a path: like [`component`], but `/` stays.
pub(crate) fn key_path(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED_AND_SLASH).to_string()
}

/// Encodes one path segment, keeping what RFC 3986 allows in it.
pub(crate) fn segment(s: &str) -> String {
    utf8_percent_encode(s, PCHAR).to_string()
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8 (a
/// URL that names a bucket or path we could not write back the same way).
pub(crate) fn decode_strict(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || (b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Decodes `%XX` escapes, keeping malformed ones as written and replacing bytes that are not
/// UTF-8 (they cannot name anything we write).
pub(crate) fn decode_lossy(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding() {
        assert_eq!(key_path("a b/c+d~"), "a%20b/c%2Bd~");
        assert_eq!(component("a/b"), "a%2Fb");
        assert_eq!(component("db/ltx/0/a b.ltx"), "db%2Fltx%2F0%2Fa%20b.ltx");
        assert_eq!(segment("a/b?#%é"), "a%2Fb%3F%23%25%C3%A9");
        assert_eq!(segment("x:y@z!$&'()*+,;="), "x:y@z!$&'()*+,;=");
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_strict("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(decode_strict("a%zz"), None);
        assert_eq!(decode_strict("a%4"), None);
        assert_eq!(decode_strict("%ff"), None);
        assert_eq!(decode_lossy("a%20b/c%zz%4"), "a b/c%zz%4");
        assert_eq!(decode_lossy("%C3%A9"), "é");
    }
}
