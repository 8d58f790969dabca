//! The `raw` codec: bytes as they are. Writes what serializes as bytes or a
//! string; reads into anything that takes bytes, a string or a sequence of `u8`.

use serde::de::{self, Visitor};
use serde::ser::{self, Impossible, Serialize};

/// Bytes that serialize as bytes (not as a sequence of numbers): the payload of
/// [`Codec::Raw`](crate::Codec::Raw), read from any codec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> de::Deserialize<'de> for Bytes {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().to_vec()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Bytes(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// What went wrong writing or reading `raw`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RawError(String);

impl ser::Error for RawError {
    fn custom<T: std::fmt::Display>(msg: T) -> RawError {
        RawError(msg.to_string())
    }
}

impl de::Error for RawError {
    fn custom<T: std::fmt::Display>(msg: T) -> RawError {
        RawError(msg.to_string())
    }
}

/// Writes `value` (bytes or a string) to `out`.
pub(crate) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), RawError> {
    value.serialize(Writer(out))
}

struct Writer<'a>(&'a mut Vec<u8>);

fn only_bytes<T>() -> Result<T, RawError> {
    Err(RawError(
        "the raw codec carries bytes or a string only".into(),
    ))
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $name(self $(, _: $arg)*) -> Result<$ret, RawError> { only_bytes() })*
    };
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = RawError;
    type SerializeSeq = Impossible<(), RawError>;
    type SerializeTuple = Impossible<(), RawError>;
    type SerializeTupleStruct = Impossible<(), RawError>;
    type SerializeTupleVariant = Impossible<(), RawError>;
    type SerializeMap = Impossible<(), RawError>;
    type SerializeStruct = Impossible<(), RawError>;
    type SerializeStructVariant = Impossible<(), RawError>;

    fn serialize_bytes(self, v: &[u8]) -> Result<(), RawError> {
        self.0.extend_from_slice(v);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), RawError> {
        self.0.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RawError> {
        value.serialize(self)
    }
    refuse! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_u8(u8) -> ();
        serialize_u16(u16) -> ();
        serialize_u32(u32) -> ();
        serialize_u64(u64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct(&'static str, usize) -> Self::SerializeStruct;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), RawError> {
        only_bytes()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RawError> {
        only_bytes()
    }
}

/// Reads a raw body: bytes to whatever asks for them.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'de, 'a> de::Deserializer<'de> for Reader<'a> {
    type Error = RawError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        v.visit_bytes(self.0)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        v.visit_byte_buf(self.0.to_vec())
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        match std::str::from_utf8(self.0) {
            Ok(s) => v.visit_str(s),
            Err(e) => Err(RawError(format!("a string was asked for: {e}"))),
        }
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        self.deserialize_str(v)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, RawError> {
        v.visit_seq(de::value::SeqDeserializer::new(self.0.iter().copied()))
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, RawError> {
        v.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes
        option unit unit_struct tuple tuple_struct map struct enum identifier ignored_any
    }
}
