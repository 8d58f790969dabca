//! A MessagePack reader for serde over a borrowed slice: what [`decode`]
//! uses for [`Codec::MessagePack`] bodies (writing stays with `rmp-serde`).
//!
//! Why not `rmp-serde`'s reader: it reads through `std::io::Read` with an
//! error type that carries an `io::Error`, and routes every value through its
//! generic path; inside a guest (wasm32) that made decoding a one-field enum
//! cost about four times the rest of an SDK actor's work per message. This
//! one reads the slice directly, with a two-word error.
//!
//! It reads everything `rmp-serde` writes with the configuration this crate
//! uses (structs as maps, binary `is_human_readable`) up to [`MAX_DEPTH`]
//! levels of nesting, and the other forms
//! its reader accepts for serde types: structs as arrays, enum variants by
//! name or index, a unit struct as `nil` or `[]`, `i128`/`u128` as 16-byte
//! `bin`. It is stricter in three ways, each a sign of a payload that is not
//! what the type says: bytes after the value, elements a sequence or map has
//! beyond what the type reads, and the extension types (serde has no model
//! for them) are errors. Nesting deeper than [`MAX_DEPTH`] (each array, map,
//! enum, `Some` and newtype struct is a level, so a recursive type cannot
//! recurse without reading) is an error, not a stack overflow.
//!
//! Written for a wasm guest, where every access to linear memory is a bounds
//! check and every loop turn an interruption check: the commonest forms (a
//! `fixstr` name, a positive `fixint`, an enum as a one-entry map) are read
//! inline, everything else out of line on a copy of the reader's state, so
//! that on those paths the reader's address is not taken and it lives in
//! registers; a short name is
//! checked as ASCII without a loop. On a typed tell, that took decoding from
//! about 490 instructions to about 210.
//!
//! [`decode`]: crate::decode
//! [`Codec::MessagePack`]: crate::Codec::MessagePack

use serde::de::{self, DeserializeSeed, Visitor};

/// How deeply values may nest: arrays, maps, enums, `Some` and newtype
/// structs each count (an enum variant with an array or map as its content
/// counts twice).
pub(crate) const MAX_DEPTH: u16 = 256;
/// The most elements a sequence or map tells its visitor to expect.
const MAX_HINT: usize = 256;

/// Why a MessagePack body did not decode.
#[derive(Debug, PartialEq)]
pub(crate) struct Error(Kind);

#[derive(Debug, PartialEq)]
enum Kind {
    /// The body ends inside a value.
    Eof,
    /// A byte that starts no value here (`0xc1`, an extension type, or a
    /// marker the type cannot take).
    Marker(u8),
    /// Bytes follow the value.
    Trailing,
    /// A sequence or map has more elements than the type reads.
    Extra,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// What the type's `Deserialize` said.
    Custom(Box<str>),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Kind::Eof => f.write_str("the body ends inside a value"),
            Kind::Marker(m) => write!(f, "marker {m:#04x} starts no value the type takes here"),
            Kind::Trailing => f.write_str("bytes follow the value"),
            Kind::Extra => f.write_str("a sequence or map has more elements than the type reads"),
            Kind::TooDeep => write!(f, "nested deeper than {MAX_DEPTH}"),
            Kind::Custom(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(Kind::Custom(msg.to_string().into_boxed_str()))
    }
}

type Result<T> = std::result::Result<T, Error>;

/// Decodes one value from `body`, which must hold exactly that value.
///
/// # Errors
///
/// The body is not MessagePack of a `T` (see the module doc).
#[inline(always)]
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(body: &'de [u8]) -> Result<T> {
    let mut de = Deserializer {
        input: body,
        depth: 0,
    };
    let value = T::deserialize(&mut de)?;
    if de.input.is_empty() {
        Ok(value)
    } else {
        Err(Error(Kind::Trailing))
    }
}

/// [`from_slice`] with the error as the crate's: the value is written once,
/// where the caller keeps it, rather than moved from one result to another.
pub(crate) fn decode<'de, T: de::Deserialize<'de>>(
    body: &'de [u8],
) -> std::result::Result<T, crate::DecodeError> {
    from_slice(body).map_err(|e| crate::DecodeError::body(crate::Codec::MessagePack, e))
}

struct Deserializer<'de> {
    input: &'de [u8],
    depth: u16,
}

impl<'de> Deserializer<'de> {
    #[inline(always)]
    fn peek(&self) -> Result<u8> {
        self.input.first().copied().ok_or(Error(Kind::Eof))
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self.input.split_first().ok_or(Error(Kind::Eof))?;
        self.input = rest;
        Ok(b)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(Error(Kind::Eof));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn len8(&mut self) -> Result<usize> {
        self.byte().map(usize::from)
    }

    fn len16(&mut self) -> Result<usize> {
        self.array().map(|b| usize::from(u16::from_be_bytes(b)))
    }

    fn len32(&mut self) -> Result<usize> {
        // A length past the address space is past the body's end too.
        self.array()
            .map(|b| usize::try_from(u32::from_be_bytes(b)).unwrap_or(usize::MAX))
    }

    /// The length of the array or map that `marker` starts, if it starts one:
    /// `(is_map, len)`.
    fn container(&mut self, marker: u8) -> Result<Option<(bool, usize)>> {
        Ok(Some(match marker {
            0x80..=0x8f => (true, usize::from(marker & 0x0f)),
            0x90..=0x9f => (false, usize::from(marker & 0x0f)),
            0xdc => (false, self.len16()?),
            0xdd => (false, self.len32()?),
            0xde => (true, self.len16()?),
            0xdf => (true, self.len32()?),
            _ => return Ok(None),
        }))
    }

    /// The string that `marker` starts, if it starts one.
    #[inline(always)]
    fn str_after(&mut self, marker: u8) -> Result<Option<&'de [u8]>> {
        let len = match marker {
            0xa0..=0xbf => usize::from(marker & 0x1f),
            0xd9 => self.len8()?,
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => return Ok(None),
        };
        self.take(len).map(Some)
    }

    /// The `bin` that `marker` starts, if it starts one.
    #[inline(always)]
    fn bin_after(&mut self, marker: u8) -> Result<Option<&'de [u8]>> {
        let len = match marker {
            0xc4 => self.len8()?,
            0xc5 => self.len16()?,
            0xc6 => self.len32()?,
            _ => return Ok(None),
        };
        self.take(len).map(Some)
    }

    #[inline(always)]
    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(Error(Kind::TooDeep));
        }
        self.depth += 1;
        Ok(())
    }

    /// Visits an array or map of `len` elements (pairs), then checks that the
    /// visitor read them all.
    fn compound<V: Visitor<'de>>(
        &mut self,
        is_map: bool,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.enter()?;
        let mut access = Compound {
            de: self,
            left: len,
        };
        let value = if is_map {
            visitor.visit_map(&mut access)
        } else {
            visitor.visit_seq(&mut access)
        }?;
        let left = access.left;
        self.depth -= 1;
        if left == 0 {
            Ok(value)
        } else {
            Err(Error(Kind::Extra))
        }
    }
}

/// Whether `bytes` is ASCII, without a loop up to 16 bytes (the names and
/// keys of a message): two overlapping loads cover it. In a wasm guest every
/// loop turn pays an interruption check besides its own work.
#[inline(always)]
fn short_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let n = bytes.len();
    let word = |at: usize| -> u64 {
        let mut w = [0; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |at: usize| -> u64 {
        let mut w = [0; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    match n {
        0 => true,
        1..=3 => (bytes[0] | bytes[n / 2] | bytes[n - 1]) < 0x80,
        4..=7 => (half(0) | half(n - 4)) & HIGH == 0,
        8..=16 => (word(0) | word(n - 8)) & HIGH == 0,
        _ => bytes.is_ascii(),
    }
}

/// Visits `bytes` as a string: borrowed, checked as UTF-8 (ASCII first, which
/// for the short names and keys of a message is most of them and the cheapest
/// check). Bytes that are not UTF-8 are visited as bytes, as `rmp-serde` does.
#[inline(always)]
fn visit_str<'de, V: Visitor<'de>>(bytes: &'de [u8], visitor: V) -> Result<V::Value> {
    if short_ascii(bytes) {
        // SAFETY: ASCII is UTF-8.
        return visitor.visit_borrowed_str(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => visitor.visit_borrowed_str(s),
        Err(_) => visitor.visit_borrowed_bytes(bytes),
    }
}

/// [`Deserializer::any_cold`]'s body: a reader of its own, made from the
/// caller's state and handed back with the result.
#[cold]
#[inline(never)]
fn any_out_of_line<'de, V: Visitor<'de>>(
    input: &'de [u8],
    depth: u16,
    visitor: V,
) -> (Result<V::Value>, &'de [u8], u16) {
    let mut de = Deserializer { input, depth };
    let result = de::Deserializer::deserialize_any(&mut de, visitor);
    (result, de.input, de.depth)
}

/// Integer readers that take a positive `fixint` (`0..=127`, the commonest
/// integer in a message) without the general path's dispatch on every marker.
macro_rules! fast_integers {
    ($($method:ident)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            if let Some((&small @ 0x00..=0x7f, rest)) = self.input.split_first() {
                self.input = rest;
                return visitor.visit_u8(small);
            }
            self.any_cold(visitor)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let marker = self.byte()?;
        match marker {
            // Integers are visited by their width, as `rmp-serde` does: where
            // serde buffers a value (untagged enums, `flatten`) it shows.
            0x00..=0x7f => visitor.visit_u8(marker),
            0xe0..=0xff => visitor.visit_i8(marker as i8),
            0xc0 => visitor.visit_unit(),
            0xc2 => visitor.visit_bool(false),
            0xc3 => visitor.visit_bool(true),
            0xca => visitor.visit_f32(f32::from_be_bytes(self.array()?)),
            0xcb => visitor.visit_f64(f64::from_be_bytes(self.array()?)),
            0xcc => visitor.visit_u8(self.byte()?),
            0xcd => visitor.visit_u16(u16::from_be_bytes(self.array()?)),
            0xce => visitor.visit_u32(u32::from_be_bytes(self.array()?)),
            0xcf => visitor.visit_u64(u64::from_be_bytes(self.array()?)),
            0xd0 => visitor.visit_i8(self.byte()? as i8),
            0xd1 => visitor.visit_i16(i16::from_be_bytes(self.array()?)),
            0xd2 => visitor.visit_i32(i32::from_be_bytes(self.array()?)),
            0xd3 => visitor.visit_i64(i64::from_be_bytes(self.array()?)),
            _ => {
                if let Some(s) = self.str_after(marker)? {
                    return visit_str(s, visitor);
                }
                if let Some(b) = self.bin_after(marker)? {
                    return visitor.visit_borrowed_bytes(b);
                }
                if let Some((is_map, len)) = self.container(marker)? {
                    return self.compound(is_map, len, visitor);
                }
                // 0xc1 (never used) and the extension types.
                Err(Error(Kind::Marker(marker)))
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == 0xc0 {
            self.input = &self.input[1..];
            visitor.visit_none()
        } else {
            self.enter()?;
            let value = visitor.visit_some(&mut *self)?;
            self.depth -= 1;
            Ok(value)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        // `rmp-serde` writes a unit struct as `[]`.
        if self.peek()? == 0x90 {
            self.input = &self.input[1..];
            return visitor.visit_unit();
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.enter()?;
        let value = visitor.visit_newtype_struct(&mut *self)?;
        self.depth -= 1;
        Ok(value)
    }

    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.wide()? {
            Some(b) => visitor.visit_i128(i128::from_be_bytes(b)),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.wide()? {
            Some(b) => visitor.visit_u128(u128::from_be_bytes(b)),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let marker = self.peek()?;
        // `{variant: content}`, or a unit variant alone.
        let with_content = match marker {
            0x81 => {
                self.input = &self.input[1..];
                true
            }
            0xde | 0xdf => {
                self.input = &self.input[1..];
                match self.container(marker)? {
                    Some((true, 1)) => true,
                    _ => return Err(Error(Kind::Marker(marker))),
                }
            }
            _ => false,
        };
        self.enter()?;
        let value = visitor.visit_enum(Enum {
            de: self,
            with_content,
        })?;
        self.depth -= 1;
        Ok(value)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // A variant's or field's name, short: a `fixstr`, read here without
        // the general path's dispatch on every marker.
        if let Some((&marker @ 0xa0..=0xbf, rest)) = self.input.split_first() {
            let len = usize::from(marker & 0x1f);
            if let Some((name, rest)) = rest.split_at_checked(len) {
                self.input = rest;
                return visit_str(name, visitor);
            }
        }
        self.any_cold(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Out of line on a copy, so that a struct's reader is not addressed
        // for the sake of fields it does not know.
        self.any_cold(visitor)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    fast_integers! {
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
    }

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf
        unit seq tuple tuple_struct map struct
    }
}

impl<'de> Deserializer<'de> {
    /// The general path, out of line: what a fast path falls back to. The
    /// reader's state goes by value, so that a caller's reader, not having
    /// its address taken, can live in registers (in a wasm guest, every
    /// access to memory is a bounds check).
    #[inline(always)]
    fn any_cold<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        let (result, input, depth) = any_out_of_line(self.input, self.depth, visitor);
        self.input = input;
        self.depth = depth;
        result
    }

    /// A 16-byte `bin`, the form `rmp-serde` writes 128-bit integers in.
    fn wide(&mut self) -> Result<Option<[u8; 16]>> {
        if self.input.len() >= 2 && self.input[0] == 0xc4 && self.input[1] == 16 {
            self.input = &self.input[2..];
            return self.array().map(Some);
        }
        Ok(None)
    }
}

/// The elements of an array, or the entries of a map.
struct Compound<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Compound<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Each element takes a byte at least: a longer claim is a lie that a
        // visitor must not allocate for. And at most `MAX_HINT`: nested
        // sequences each claiming what the bytes left could hold reserved
        // that much at every level (a megabyte each, 80 levels past a 16 MiB
        // guest); a longer sequence grows as it is read.
        Some(self.left.min(self.de.input.len()).min(MAX_HINT))
    }
}

impl<'de> de::MapAccess<'de> for Compound<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.len() / 2).min(MAX_HINT))
    }
}

/// An enum: its variant, then (`with_content`) what the variant carries.
struct Enum<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    with_content: bool,
}

impl<'de> de::EnumAccess<'de> for Enum<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let variant = seed.deserialize(&mut *self.de)?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Enum<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        if self.with_content {
            // `{variant: nil}`, as other writers put a unit variant.
            match self.de.byte()? {
                0xc0 => {}
                marker => return Err(Error(Kind::Marker(marker))),
            }
        }
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        if !self.with_content {
            return Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a newtype variant",
            ));
        }
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        if !self.with_content {
            return Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a tuple variant",
            ));
        }
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if !self.with_content {
            return Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"a struct variant",
            ));
        }
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;
    use std::fmt::Debug;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Unit;

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Newtype(u32);

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Pair(i8, String);

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    enum Shape {
        Empty,
        Circle(f64),
        Rect(u16, u16),
        Named { name: String, sides: Option<u8> },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
    struct Everything {
        small: u8,
        big: u64,
        neg: i64,
        wide: i128,
        uwide: u128,
        ratio: f32,
        exact: f64,
        yes: bool,
        letter: char,
        text: String,
        bytes: Vec<u8>,
        maybe: Option<Box<Everything>>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        pair: Pair,
        shapes: Vec<Shape>,
        map: BTreeMap<String, i32>,
        tuple: (u8, bool, Option<u8>),
    }

    fn sample(text: &str, shapes: Vec<Shape>) -> Everything {
        Everything {
            small: 200,
            big: u64::MAX,
            neg: i64::MIN,
            wide: i128::MIN + 7,
            uwide: u128::MAX - 9,
            ratio: 1.5,
            exact: -0.1,
            yes: true,
            letter: 'é',
            text: text.to_string(),
            bytes: (0..=255).collect(),
            maybe: Some(Box::new(Everything {
                maybe: None,
                shapes: vec![],
                map: BTreeMap::new(),
                ..Everything::small()
            })),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(70_000),
            pair: Pair(-5, "ü".into()),
            shapes,
            map: [("a".to_string(), -1), ("bb".to_string(), 1 << 20)].into(),
            tuple: (9, false, Some(3)),
        }
    }

    impl Everything {
        fn small() -> Everything {
            Everything {
                small: 0,
                big: 0,
                neg: 0,
                wide: 0,
                uwide: 0,
                ratio: 0.0,
                exact: 0.0,
                yes: false,
                letter: 'a',
                text: String::new(),
                bytes: vec![],
                maybe: None,
                unit: (),
                unit_struct: Unit,
                newtype: Newtype(0),
                pair: Pair(0, String::new()),
                shapes: vec![],
                map: BTreeMap::new(),
                tuple: (0, false, None),
            }
        }
    }

    fn shapes() -> Vec<Shape> {
        vec![
            Shape::Empty,
            Shape::Circle(2.5),
            Shape::Rect(3, 65535),
            Shape::Named {
                name: "hex".into(),
                sides: Some(6),
            },
            Shape::Named {
                name: String::new(),
                sides: None,
            },
        ]
    }

    /// Both ways `rmp-serde` writes structs: as maps (this crate's way) and
    /// as arrays (its default, and other writers').
    fn written<T: Serialize>(value: &T) -> [Vec<u8>; 2] {
        let mut map = Vec::new();
        value
            .serialize(&mut rmp_serde::Serializer::new(&mut map).with_struct_map())
            .unwrap();
        [map, rmp_serde::to_vec(value).unwrap()]
    }

    fn round_trips<T>(value: T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + Debug,
    {
        for bytes in written(&value) {
            let ours: T = from_slice(&bytes).unwrap_or_else(|e| panic!("{value:?}: {e}"));
            assert_eq!(ours, value);
            let theirs: T = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(theirs, value);
        }
    }

    #[test]
    fn reads_what_rmp_serde_writes() {
        for text in [
            "",
            "x",
            &"a".repeat(31),
            &"b".repeat(32),
            &"c".repeat(256),
            &"d".repeat(70_000),
            "ünï",
        ] {
            round_trips(sample(text, shapes()));
        }
        for n in [
            0u64,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u32::MAX.into(),
            u64::MAX,
        ] {
            round_trips(n);
        }
        for n in [
            0i64,
            -1,
            -32,
            -33,
            -128,
            -129,
            -32_768,
            -32_769,
            i32::MIN.into(),
            i64::MIN,
            i64::MAX,
        ] {
            round_trips(n);
        }
        for len in [0usize, 15, 16, 65_535, 65_536] {
            round_trips(vec![Shape::Empty; len]);
            round_trips(
                (0..len)
                    .map(|i| (i as u32, Unit))
                    .collect::<BTreeMap<_, _>>(),
            );
        }
        round_trips(Some(1u8));
        round_trips(Option::<Unit>::None);
        round_trips((Unit, Newtype(1), Pair(1, "p".into())));
        round_trips(f32::MIN_POSITIVE);
        round_trips(u128::MAX);
        round_trips(i128::MIN);
    }

    #[test]
    fn integers_are_visited_by_their_width_as_rmp_serde_does() {
        // Where serde buffers a value (untagged enums, `flatten`), the width
        // shows: a field key written as a `u32` names no field there.
        #[derive(Deserialize, Debug, PartialEq)]
        #[serde(untagged)]
        enum Untagged {
            Number(u8),
            Struct { x: u8 },
        }
        let body = b"\x81\xce\x00\x00\x00\x00\x18";
        let theirs = rmp_serde::from_slice::<Untagged>(body);
        assert!(theirs.is_err(), "{theirs:?}");
        assert!(from_slice::<Untagged>(body).is_err());
        // As a `u8` key it is field 0, for both.
        let body = b"\x81\x00\x18";
        assert_eq!(
            rmp_serde::from_slice::<Untagged>(body).unwrap(),
            Untagged::Struct { x: 24 }
        );
        assert_eq!(from_slice::<Untagged>(body), Ok(Untagged::Struct { x: 24 }));
        // Every width into a wide type still reads.
        for (body, value) in [
            (&b"\x7f"[..], 127i64),
            (b"\xff", -1),
            (b"\xcc\xff", 255),
            (b"\xcd\xff\xff", 65_535),
            (b"\xce\xff\xff\xff\xff", 4_294_967_295),
            (b"\xd0\x80", -128),
            (b"\xd1\x80\x00", -32_768),
            (b"\xd2\x80\x00\x00\x00", -2_147_483_648),
            (b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", i64::MIN),
        ] {
            assert_eq!(from_slice::<i64>(body), Ok(value));
            assert_eq!(rmp_serde::from_slice::<i64>(body).unwrap(), value);
        }
    }

    #[test]
    fn enum_variants_by_index_and_unit_variants_as_maps() {
        // Variant by index (other writers), and `{"Empty": nil}`.
        let by_index = [0x81, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0];
        assert_eq!(from_slice::<Shape>(&by_index), Ok(Shape::Circle(2.5)));
        let unit_as_map = [0x81, 0xa5, b'E', b'm', b'p', b't', b'y', 0xc0];
        assert_eq!(from_slice::<Shape>(&unit_as_map), Ok(Shape::Empty));
        assert_eq!(from_slice::<Shape>(&[0x00]), Ok(Shape::Empty));
        // `{"Empty": []}` is not a unit variant (nor is it to `rmp-serde`).
        let unit_as_array = [0x81, 0xa5, b'E', b'm', b'p', b't', b'y', 0x90];
        assert!(from_slice::<Shape>(&unit_as_array).is_err());
        assert!(rmp_serde::from_slice::<Shape>(&unit_as_array).is_err());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let good = written(&sample("text", shapes()))[0].clone();
        // Every truncation ends inside a value.
        for cut in 0..good.len() {
            assert!(
                from_slice::<Everything>(&good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            from_slice::<Everything>(&trailing),
            Err(Error(Kind::Trailing))
        );
        // A pair read as one u8 from a longer array.
        assert_eq!(from_slice::<(u8,)>(&[0x92, 1, 2]), Err(Error(Kind::Extra)));
        // 0xc1 and the extension types.
        assert_eq!(from_slice::<u8>(&[0xc1]), Err(Error(Kind::Marker(0xc1))));
        assert_eq!(
            from_slice::<u8>(&[0xd4, 1, 2]),
            Err(Error(Kind::Marker(0xd4)))
        );
        // Not the type's shape.
        assert!(from_slice::<u8>(&[0xcd, 1, 0]).is_err());
        assert!(from_slice::<Shape>(&[0x82, 0xa5]).is_err());
        assert!(from_slice::<Shape>(&[0xa6, b'C', b'i', b'r', b'c', b'l', b'e']).is_err());
    }

    #[test]
    fn the_loop_free_ascii_check_agrees_with_the_standard_one() {
        for len in 0..40 {
            let ascii = vec![b'a'; len];
            assert!(short_ascii(&ascii), "{len}");
            for at in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut bytes = ascii.clone();
                    bytes[at] = high;
                    assert!(!short_ascii(&bytes), "{len} bytes, high at {at}");
                }
            }
        }
        // Names that are not ASCII but are UTF-8 are read as strings, and
        // ones that are not UTF-8 as bytes, through the same fast path.
        #[derive(Deserialize, Debug, PartialEq)]
        enum Named {
            #[serde(rename = "größe")]
            Size(u8),
        }
        assert_eq!(
            from_slice::<Named>(b"\x81\xa7gr\xc3\xb6\xc3\x9fe\x07"),
            Ok(Named::Size(7))
        );
        assert!(from_slice::<Named>(b"\x81\xa2\xff\xfe\x07").is_err());
    }

    #[test]
    fn hostile_lengths_and_nesting_end_in_errors() {
        // An array32 and a map32 that claim 4 G elements and hold none: no
        // allocation for the claim, an error at the end of the body.
        assert_eq!(
            from_slice::<Vec<u64>>(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(Error(Kind::Eof))
        );
        assert_eq!(
            from_slice::<BTreeMap<u8, u8>>(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(Error(Kind::Eof))
        );
        assert_eq!(
            from_slice::<String>(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']),
            Err(Error(Kind::Eof))
        );
        // Arrays in arrays, far deeper than the limit.
        let deep = vec![0x91; 100_000];
        assert_eq!(
            from_slice::<de::IgnoredAny>(&deep).map(|_| ()),
            Err(Error(Kind::TooDeep))
        );
        let deep_enums: Vec<u8> = std::iter::repeat_n([0x81, 0x01], 50_000)
            .flatten()
            .collect();
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        enum Nest {
            Leaf,
            Node(Box<Nest>),
        }
        assert_eq!(
            from_slice::<Nest>(&deep_enums).map(|_| ()),
            Err(Error(Kind::TooDeep))
        );
    }

    /// Random and mutated bodies: never a panic, and whatever this reader
    /// accepts `rmp-serde` reads as the same value.
    #[test]
    fn accepts_nothing_rmp_serde_reads_otherwise() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let goods: Vec<Vec<u8>> = shapes()
            .iter()
            .flat_map(written)
            .chain(written(&sample("t", shapes())))
            .collect();
        let mut accepted = 0;
        for i in 0..20_000 {
            let mut bytes = if i % 4 == 0 {
                (0..next() % 24).map(|_| next() as u8).collect()
            } else {
                goods[next() as usize % goods.len()].clone()
            };
            if !bytes.is_empty() {
                for _ in 0..=next() % 3 {
                    let at = next() as usize % bytes.len();
                    bytes[at] = next() as u8;
                }
            }
            if let Ok(ours) = from_slice::<Shape>(&bytes) {
                accepted += 1;
                assert_eq!(
                    rmp_serde::from_slice::<Shape>(&bytes).ok(),
                    Some(ours),
                    "{bytes:02x?}"
                );
            }
            if let Ok(ours) = from_slice::<Everything>(&bytes) {
                accepted += 1;
                let theirs = rmp_serde::from_slice::<Everything>(&bytes).ok();
                assert_eq!(theirs, Some(ours), "{bytes:02x?}");
            }
        }
        assert!(accepted > 100, "only {accepted} mutations decoded");
    }
}
