//! A walk over a CBOR body before it is decoded: the CBOR decoder recurses
//! once per nested array, map or tag with no limit of its own (a body of
//! tens of thousands of `0x81` overflows the decoding thread's stack), and
//! hands the lengths a body claims to the type's visitor as size hints (a
//! few bytes claiming 2^64 elements, level after level, reserve a megabyte
//! each). The walk, iterative, refuses a body nested deeper than
//! [`MAX_DEPTH`] (as MessagePack's decoder does)
//! or whose array, map or string claims more than the bytes left could
//! hold; what it lets through, the decoder checks as always.

use crate::msgpack::MAX_DEPTH;

/// Why a CBOR body was refused before decoding.
#[derive(Debug, PartialEq)]
pub(crate) enum Error {
    /// The body ends inside a value.
    Eof,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// An array, map or string claims more than the bytes left could hold.
    TooLong(u64),
    /// A byte that starts no data item here.
    Invalid(u8),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Eof => f.write_str("the body ends inside a value"),
            Error::TooDeep => write!(f, "nested deeper than {MAX_DEPTH}"),
            Error::TooLong(n) => write!(f, "a length of {n} is longer than the body"),
            Error::Invalid(b) => write!(f, "byte {b:#04x} starts no data item here"),
        }
    }
}

impl std::error::Error for Error {}

/// Items still expected in an open container of indefinite length.
const INDEFINITE: u64 = u64::MAX;

/// Walks the first data item of `body` (what follows it is the decoder's
/// to refuse).
pub(crate) fn check(body: &[u8]) -> Result<(), Error> {
    // Items each open container still expects (innermost last).
    let mut open: Vec<u64> = Vec::new();
    let mut pos = 0usize;
    let mut started = false;
    // Items claimed by every container so far: each is an item of the body,
    // a byte at least, so together they cannot exceed its length (nested
    // claims of what the bytes left could hold, level after level, would
    // each be a visitor's size hint).
    let mut claimed = 0u64;
    loop {
        while open.last() == Some(&0) {
            open.pop();
        }
        if started && open.is_empty() {
            return Ok(());
        }
        let b = *body.get(pos).ok_or(Error::Eof)?;
        pos += 1;
        if b == 0xff {
            // A break closes the innermost container of indefinite length.
            if open.last() != Some(&INDEFINITE) {
                return Err(Error::Invalid(b));
            }
            open.pop();
            continue;
        }
        started = true;
        if let Some(left) = open.last_mut()
            && *left != INDEFINITE
        {
            *left -= 1;
        }
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => Some(u64::from(info)),
            24..=27 => {
                let n = 1usize << (info - 24);
                let bytes = body.get(pos..pos + n).ok_or(Error::Eof)?;
                pos += n;
                Some(bytes.iter().fold(0u64, |a, &b| a << 8 | u64::from(b)))
            }
            31 => None,
            _ => return Err(Error::Invalid(b)),
        };
        let left = (body.len() - pos) as u64;
        let opens = match (major, arg) {
            // Integers, simple values and floats: their argument was all.
            (0 | 1 | 7, Some(_)) => None,
            (2 | 3, Some(n)) if n > left => return Err(Error::TooLong(n)),
            (2 | 3, Some(n)) => {
                pos += n as usize;
                None
            }
            // Chunks until a break; arrays and maps until a break.
            (2..=5, None) => Some(INDEFINITE),
            // Each element takes a byte at least, each entry two.
            (4, Some(n)) if n > left => return Err(Error::TooLong(n)),
            (4, Some(n)) => Some(n),
            (5, Some(n)) if n > left / 2 => return Err(Error::TooLong(n)),
            (5, Some(n)) => Some(2 * n),
            // A tag holds the one item that follows it.
            (6, Some(_)) => Some(1),
            _ => return Err(Error::Invalid(b)),
        };
        if let Some(n) = opens {
            if open.len() >= usize::from(MAX_DEPTH) {
                return Err(Error::TooDeep);
            }
            if n != INDEFINITE {
                claimed = claimed.saturating_add(n);
                if claimed > body.len() as u64 {
                    return Err(Error::TooLong(n));
                }
            }
            open.push(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_items_pass() {
        for body in [
            &[0x00][..],
            &[0x18, 0xff],
            &[0x80],
            &[0xa0],
            &[0x82, 0x01, 0x82, 0x02, 0x03],
            &[0xa1, 0x61, b'a', 0x9f, 0x01, 0xff],
            &[0x5f, 0x41, 0x00, 0xff],
            &[0xc1, 0x1a, 0, 0, 0, 1],
            &[0xfb, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x9f, 0x9f, 0xff, 0xff],
        ] {
            assert_eq!(check(body), Ok(()), "{body:x?}");
        }
    }

    #[test]
    fn deep_lying_or_broken_items_are_refused() {
        let mut deep = vec![0x81; usize::from(MAX_DEPTH) + 1];
        deep.push(0x00);
        assert_eq!(check(&deep), Err(Error::TooDeep));
        assert_eq!(check(&[0x81; 60_000]), Err(Error::TooDeep));
        let mut deepest = vec![0x81; usize::from(MAX_DEPTH)];
        deepest.push(0x00);
        assert_eq!(check(&deepest), Ok(()));
        assert_eq!(check(&[0xc6; 300]), Err(Error::TooDeep));
        assert_eq!(
            check(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Err(Error::TooLong(u64::MAX))
        );
        assert_eq!(check(&[0x82, 0x01]), Err(Error::TooLong(2)));
        assert_eq!(check(&[0x82, 0x01, 0x82]), Err(Error::TooLong(2)));
        assert_eq!(check(&[0x9f, 0x01]), Err(Error::Eof));
        assert_eq!(check(&[0xa2, 0x01, 0x02, 0x03]), Err(Error::TooLong(2)));
        assert_eq!(check(&[0x45, 0x01]), Err(Error::TooLong(5)));
        assert_eq!(check(&[0xff]), Err(Error::Invalid(0xff)));
        // Each level claims what the bytes left could hold: together they
        // claim more than the body has.
        let mut nested = Vec::new();
        for _ in 0..8 {
            nested.extend([0x99, 0x00, 0x40]);
        }
        nested.extend(vec![0x00; 0x40]);
        assert!(matches!(check(&nested), Err(Error::TooLong(_))));
        assert_eq!(check(&[0x1c]), Err(Error::Invalid(0x1c)));
        assert_eq!(check(&[0x1f]), Err(Error::Invalid(0x1f)));
        assert_eq!(check(&[]), Err(Error::Eof));
    }
}
