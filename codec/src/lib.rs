//! Self-describing wasmshard payloads: an unsigned-varint [multicodec] code, then
//! the value encoded in that codec. The guest SDK (`wasmshard-guest`) and the
//! runtime's typed host helpers both use this crate, so a payload written by one
//! is read by the other.
//!
//! | codec | code | prefix bytes | what it carries |
//! |---|---|---|---|
//! | [`Codec::Raw`] | `0x55` | `55` | bytes, as they are ([`Bytes`], `&[u8]`, `&str`) |
//! | [`Codec::Json`] | `0x0200` | `80 04` | any serde value, as JSON text |
//! | [`Codec::Cbor`] | `0x51` | `51` | any serde value, as CBOR |
//! | [`Codec::MessagePack`] | `0x0201` | `81 04` | any serde value, as MessagePack (structs as maps) |
//!
//! A receiver decodes by the prefix, whatever the sender chose: [`decode`] reads
//! the code and then the body in that codec. A body from anyone may be
//! decoded: nesting deeper than 256 levels (JSON: 128) is refused, and no
//! claimed length is trusted beyond the bytes that could hold it. [`DEFAULT`] is the codec the SDK
//! writes unless told otherwise.
//!
//! ```
//! use wasmshard_codec::{Codec, decode, encode};
//!
//! let bytes = encode(Codec::Json, &("add", 5u32)).unwrap();
//! assert_eq!(&bytes[..2], &[0x80, 0x04]);
//! let back: (String, u32) = decode(&bytes).unwrap();
//! assert_eq!(back, ("add".to_string(), 5));
//! ```
//!
//! [multicodec]: https://github.com/multiformats/multicodec

mod cbor;
mod msgpack;
mod raw;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use raw::Bytes;

/// A payload codec the runtime and the SDK know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// Bytes with no encoding (`0x55`).
    Raw,
    /// JSON text (`0x0200`).
    Json,
    /// CBOR (`0x51`).
    Cbor,
    /// MessagePack (`0x0201`); structs are written as maps, so they are
    /// self-describing as in the other codecs.
    MessagePack,
}

/// The codec the SDK writes unless told otherwise: MessagePack, the cheapest of
/// the self-describing codecs for the small structs actors exchange (see the
/// guide to writing guests for the measurement).
pub const DEFAULT: Codec = Codec::MessagePack;

impl Codec {
    /// Every codec, in the order of [`Codec::bit`].
    pub const ALL: [Codec; 4] = [Codec::Raw, Codec::Json, Codec::Cbor, Codec::MessagePack];

    /// The multicodec code.
    pub const fn code(self) -> u64 {
        match self {
            Codec::Raw => 0x55,
            Codec::Json => 0x0200,
            Codec::Cbor => 0x51,
            Codec::MessagePack => 0x0201,
        }
    }

    /// The code as the unsigned varint a payload starts with.
    pub const fn prefix(self) -> &'static [u8] {
        match self {
            Codec::Raw => &[0x55],
            Codec::Json => &[0x80, 0x04],
            Codec::Cbor => &[0x51],
            Codec::MessagePack => &[0x81, 0x04],
        }
    }

    /// The codec's name in the multicodec table (`raw`, `json`, `cbor`,
    /// `messagepack`), as manifests and the `wasmshard:accepts` section write it.
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Json => "json",
            Codec::Cbor => "cbor",
            Codec::MessagePack => "messagepack",
        }
    }

    /// The codec called `name` (as [`Codec::name`]; `msgpack` is taken too).
    pub fn from_name(name: &str) -> Option<Codec> {
        match name.trim() {
            "raw" => Some(Codec::Raw),
            "json" => Some(Codec::Json),
            "cbor" => Some(Codec::Cbor),
            "messagepack" | "msgpack" => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// The codec with multicodec code `code`.
    pub const fn from_code(code: u64) -> Option<Codec> {
        match code {
            0x55 => Some(Codec::Raw),
            0x0200 => Some(Codec::Json),
            0x51 => Some(Codec::Cbor),
            0x0201 => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// A bit of its own (1, 2, 4, 8), for sets of codecs kept in one integer.
    pub const fn bit(self) -> u8 {
        match self {
            Codec::Raw => 1,
            Codec::Json => 2,
            Codec::Cbor => 4,
            Codec::MessagePack => 8,
        }
    }

    /// The codec whose payloads start like `payload`, if any (see
    /// [`Codec::bit_of`]).
    #[inline]
    pub fn of(payload: &[u8]) -> Option<Codec> {
        match Codec::bit_of(payload) {
            1 => Some(Codec::Raw),
            2 => Some(Codec::Json),
            4 => Some(Codec::Cbor),
            8 => Some(Codec::MessagePack),
            _ => None,
        }
    }

    /// The [`Codec::bit`] of the codec whose payloads start like `payload`, or 0
    /// if none: a table lookup on the first byte and, for two-byte codes, a
    /// compare of the second; no allocation (the runtime's admission check).
    #[inline]
    pub fn bit_of(payload: &[u8]) -> u8 {
        let Some(&first) = payload.first() else {
            return 0;
        };
        let t = FIRST_BYTE[first as usize];
        if t & TWO_BYTES == 0 || payload.get(1) == Some(&0x04) {
            t & 0xf
        } else {
            0
        }
    }
}

/// For a payload's first byte: the [`Codec::bit`] of the codec it begins (0:
/// none), and [`TWO_BYTES`] if the code goes on in a second byte, which must be
/// `0x04` (the prefixes in the table above).
static FIRST_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    t[0x55] = Codec::Raw.bit();
    t[0x51] = Codec::Cbor.bit();
    t[0x80] = Codec::Json.bit() | TWO_BYTES;
    t[0x81] = Codec::MessagePack.bit() | TWO_BYTES;
    t
};

/// In [`FIRST_BYTE`]: the code's varint has a second byte (`0x04`).
const TWO_BYTES: u8 = 0x10;

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads the unsigned varint at the start of `payload`: the code and how many
/// bytes it took. `None` if the payload is empty, the varint is longer than 9
/// bytes (the multiformats limit) or is cut off.
pub fn read_code(payload: &[u8]) -> Option<(u64, usize)> {
    let mut code = 0u64;
    for (i, &b) in payload.iter().take(9).enumerate() {
        code |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((code, i + 1));
        }
    }
    None
}

/// A value could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the value as {codec}")]
#[non_exhaustive]
pub struct EncodeError {
    /// The codec asked for.
    pub codec: Codec,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// A payload could not be decoded into the type asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is empty (a typed payload has at least its codec's prefix).
    #[error("the payload is empty")]
    Empty,
    /// The payload does not start with a codec this crate knows.
    #[error("the payload starts with no known codec (code {code:#x})")]
    UnknownCodec {
        /// The code read, or the payload's first byte if no varint could be read.
        code: u64,
    },
    /// The body is not a value of the type in the payload's codec.
    #[error("the {codec} body does not decode into the type asked for")]
    Body {
        /// The payload's codec.
        codec: Codec,
        /// What the codec said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl DecodeError {
    /// A body that did not decode, with what its codec said.
    #[cold]
    pub(crate) fn body(
        codec: Codec,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DecodeError {
        DecodeError::Body {
            codec,
            source: Box::new(source),
        }
    }
}

/// Encodes `value` in `codec`, prefix first, into a new vector.
///
/// # Errors
///
/// A value the codec cannot write (a map with non-string keys in JSON; in raw,
/// anything but bytes or a string).
pub fn encode<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode_into(codec, value, &mut out)?;
    Ok(out)
}

/// Encodes `value` in `codec`, prefix first, appending to `out` (reusing its
/// capacity: a buffer kept between messages makes encoding allocation-free).
/// On error, `out` is left as it was.
///
/// # Errors
///
/// As [`encode`].
pub fn encode_into<T: Serialize + ?Sized>(
    codec: Codec,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(codec.prefix());
    let result = match codec {
        Codec::Raw => raw::write(value, out).map_err(box_err),
        Codec::Json => serde_json::to_writer(&mut *out, value).map_err(box_err),
        Codec::Cbor => value
            .serialize(&mut minicbor_serde::Serializer::new(&mut *out))
            .map_err(box_err),
        Codec::MessagePack => value
            .serialize(&mut rmp_serde::Serializer::new(&mut *out).with_struct_map())
            .map_err(box_err),
    };
    result.map_err(|source| {
        out.truncate(start);
        EncodeError { codec, source }
    })
}

fn box_err(
    e: impl std::error::Error + Send + Sync + 'static,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// Decodes a payload by its prefix.
///
/// # Errors
///
/// An empty payload, an unknown codec, or a body that is not a `T`.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    // The default codec first, in the fewest instructions (calling
    // `decode_body` from two places here costs every codec a call more in a
    // guest: 100 instructions per message more, measured).
    if let [0x81, 0x04, body @ ..] = payload {
        return msgpack::decode(body);
    }
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    let Some(codec) = Codec::of(payload) else {
        let code = read_code(payload).map_or(u64::from(payload[0]), |(c, _)| c);
        return Err(DecodeError::UnknownCodec { code });
    };
    let body = &payload[codec.prefix().len()..];
    decode_body(codec, body)
}

/// Decodes a body (no prefix) written in `codec`.
///
/// # Errors
///
/// A body that is not a `T`.
pub fn decode_body<T: DeserializeOwned>(codec: Codec, body: &[u8]) -> Result<T, DecodeError> {
    match codec {
        Codec::Raw => T::deserialize(raw::Reader(body)).map_err(|e| DecodeError::body(codec, e)),
        Codec::Json => serde_json::from_slice(body).map_err(|e| DecodeError::body(codec, e)),
        Codec::Cbor => {
            cbor::check(body).map_err(|e| DecodeError::body(codec, e))?;
            minicbor_serde::from_slice(body).map_err(|e| DecodeError::body(codec, e))
        }
        Codec::MessagePack => msgpack::decode(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn a_cbor_body_nested_past_the_limit_or_lying_is_refused_not_recursed() {
        // Decoded into a recursive type, this recursed once per byte and
        // overflowed the thread's stack (the process aborted).
        let mut deep = vec![0x51];
        deep.extend(std::iter::repeat_n(0x81, 60_000));
        deep.push(0x00);
        let err = decode::<serde_json::Value>(&deep).unwrap_err();
        let DecodeError::Body { codec, source } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*codec, Codec::Cbor);
        assert_eq!(source.to_string(), "nested deeper than 256");
        // Levels that each claim 2^64 elements reserved memory for them.
        let mut lying = vec![0x51];
        for _ in 0..15 {
            lying.extend([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        }
        let err = decode::<serde_json::Value>(&lying).unwrap_err();
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        // As deep as the limit still decodes.
        let mut deepest = vec![0x51];
        deepest.extend(std::iter::repeat_n(0x81, 200));
        deepest.push(0x07);
        let mut v = decode::<serde_json::Value>(&deepest).unwrap();
        for _ in 0..200 {
            v = v.as_array().unwrap()[0].clone();
        }
        assert_eq!(v, serde_json::json!(7));
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
        side: Side,
        price: f64,
        note: Option<String>,
        tags: Vec<String>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    enum Side {
        Buy,
        Sell,
    }

    #[test]
    fn every_codec_round_trips_and_the_receiver_reads_the_prefix() {
        let order = Order {
            id: 7,
            side: Side::Sell,
            price: 12.5,
            note: Some("rush".into()),
            tags: vec!["a".into(), "b".into()],
        };
        for codec in [Codec::Json, Codec::Cbor, Codec::MessagePack] {
            let bytes = encode(codec, &order).unwrap();
            assert!(bytes.starts_with(codec.prefix()));
            assert_eq!(Codec::of(&bytes), Some(codec));
            assert_eq!(
                read_code(&bytes),
                Some((codec.code(), codec.prefix().len()))
            );
            assert_eq!(decode::<Order>(&bytes).unwrap(), order, "{codec}");
        }
    }

    #[test]
    fn raw_carries_bytes_and_strings_as_they_are() {
        let bytes = encode(Codec::Raw, &Bytes(vec![1, 2, 3])).unwrap();
        assert_eq!(bytes, [0x55, 1, 2, 3]);
        assert_eq!(decode::<Bytes>(&bytes).unwrap(), Bytes(vec![1, 2, 3]));
        assert_eq!(decode::<Vec<u8>>(&bytes).unwrap(), vec![1, 2, 3]);
        let text = encode(Codec::Raw, "hi").unwrap();
        assert_eq!(text, [0x55, b'h', b'i']);
        assert_eq!(decode::<String>(&text).unwrap(), "hi");
        // Bytes read from any codec.
        let cbor = encode(Codec::Cbor, &Bytes(vec![9])).unwrap();
        assert_eq!(decode::<Bytes>(&cbor).unwrap(), Bytes(vec![9]));
        let err = encode(Codec::Raw, &(1u8, 2u8)).unwrap_err();
        assert_eq!(err.codec, Codec::Raw);
    }

    #[test]
    fn bad_payloads_are_errors_never_panics() {
        assert!(matches!(decode::<u32>(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            decode::<u32>(&[0x12, 1]),
            Err(DecodeError::UnknownCodec { code: 0x12 })
        ));
        assert!(matches!(
            decode::<u32>(&[0x80, 0x04, b'{']),
            Err(DecodeError::Body {
                codec: Codec::Json,
                ..
            })
        ));
        assert!(matches!(
            decode::<Order>(&[0x81, 0x04, 0xc1]),
            Err(DecodeError::Body { .. })
        ));
        assert!(matches!(
            decode::<u32>(&[0x51, 0xff, 0xff]),
            Err(DecodeError::Body { .. })
        ));
        assert_eq!(read_code(&[0xff; 12]), None);
        assert_eq!(read_code(&[0x80]), None);
    }

    #[test]
    fn a_failed_encoding_leaves_the_buffer_as_it_was() {
        let mut out = vec![1, 2];
        let mut map = std::collections::BTreeMap::new();
        map.insert(vec![1u8], 1u8);
        assert!(encode_into(Codec::Json, &map, &mut out).is_err());
        assert_eq!(out, [1, 2]);
    }

    /// The first-byte table and [`Codec::of`] agree with the codecs' prefixes on
    /// every payload of up to two bytes (and so on every payload: no prefix is
    /// longer).
    #[test]
    fn the_prefix_table_agrees_with_the_prefixes() {
        let expect = |p: &[u8]| Codec::ALL.into_iter().find(|c| p.starts_with(c.prefix()));
        assert_eq!(Codec::of(&[]), None);
        for a in 0..=255u8 {
            assert_eq!(Codec::of(&[a]), expect(&[a]), "{a:#x}");
            for b in 0..=255u8 {
                for p in [&[a, b][..], &[a, b, 7]] {
                    assert_eq!(Codec::of(p), expect(p), "{p:x?}");
                    assert_eq!(Codec::bit_of(p), expect(p).map_or(0, Codec::bit));
                }
            }
        }
    }

    #[test]
    fn names_and_codes_match_the_table() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_name(c.name()), Some(c));
            assert_eq!(Codec::from_code(c.code()), Some(c));
        }
        assert_eq!(Codec::from_name("msgpack"), Some(Codec::MessagePack));
        assert_eq!(Codec::from_name("yaml"), None);
    }
}
