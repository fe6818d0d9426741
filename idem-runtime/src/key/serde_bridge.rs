//! A `serde::Serializer` that writes the canonical encoding into a [`KeyHasher`].
//!
//! The mapping of serde's data model onto the encoding is part of the spec in the
//! [module docs](crate::key). Nothing here allocates, except the digest list of maps with more
//! than 8 entries and the message of an error.

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

use super::KeyHasher;
use super::hasher::{DigestList, tag};
use super::time_guard;

/// The serializer: a borrowed hasher.
pub(crate) struct Bridge<'a>(pub(crate) &'a mut KeyHasher);

/// Error of a `Serialize` impl (or of a misuse of the serializer protocol).
#[derive(Debug)]
pub(crate) struct BridgeError(String);

impl BridgeError {
    pub(crate) fn into_reason(self) -> String {
        self.0
    }
}

impl fmt::Display for BridgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BridgeError {}

impl ser::Error for BridgeError {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BridgeError(msg.to_string())
    }
}

#[cold]
fn protocol_error(what: &str) -> BridgeError {
    BridgeError(format!(
        "serde protocol violation while hashing key material: {what}"
    ))
}

type Result<T = ()> = std::result::Result<T, BridgeError>;

impl<'a> ser::Serializer for Bridge<'a> {
    type Ok = ();
    type Error = BridgeError;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Tuple<'a>;
    type SerializeTupleStruct = Tuple<'a>;
    type SerializeTupleVariant = Tuple<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Struct<'a>;
    type SerializeStructVariant = Struct<'a>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result {
        self.0.write_bool(v);
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result {
        self.0.write_i8(v);
        Ok(())
    }
    #[inline]
    fn serialize_i16(self, v: i16) -> Result {
        self.0.write_i16(v);
        Ok(())
    }
    #[inline]
    fn serialize_i32(self, v: i32) -> Result {
        self.0.write_i32(v);
        Ok(())
    }
    #[inline]
    fn serialize_i64(self, v: i64) -> Result {
        self.0.write_i64(v);
        Ok(())
    }
    #[inline]
    fn serialize_i128(self, v: i128) -> Result {
        self.0.write_i128(v);
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result {
        self.0.write_u8(v);
        Ok(())
    }
    #[inline]
    fn serialize_u16(self, v: u16) -> Result {
        self.0.write_u16(v);
        Ok(())
    }
    #[inline]
    fn serialize_u32(self, v: u32) -> Result {
        self.0.write_u32(v);
        Ok(())
    }
    #[inline]
    fn serialize_u64(self, v: u64) -> Result {
        self.0.write_u64(v);
        Ok(())
    }
    #[inline]
    fn serialize_u128(self, v: u128) -> Result {
        self.0.write_u128(v);
        Ok(())
    }
    #[inline]
    fn serialize_f32(self, v: f32) -> Result {
        self.0.write_f32(v);
        Ok(())
    }
    #[inline]
    fn serialize_f64(self, v: f64) -> Result {
        self.0.write_f64(v);
        Ok(())
    }
    #[inline]
    fn serialize_char(self, v: char) -> Result {
        self.0.write_char(v);
        Ok(())
    }
    #[inline]
    fn serialize_str(self, v: &str) -> Result {
        self.0.write_str(v);
        Ok(())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result {
        self.0.write_bytes(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result {
        self.0.write_none();
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.0.write_some();
        value.serialize(self)
    }
    #[inline]
    fn serialize_unit(self) -> Result {
        self.0.write_unit();
        Ok(())
    }
    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        self.0.write_unit();
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result {
        self.0.variant(variant);
        self.0.write_unit();
        Ok(())
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result {
        self.0.variant(variant);
        value.serialize(self)
    }
    #[inline]
    fn serialize_seq(self, _len: Option<usize>) -> Result<Seq<'a>> {
        self.0.begin_seq();
        Ok(Seq {
            out: self.0,
            count: 0,
        })
    }
    #[inline]
    fn serialize_tuple(self, len: usize) -> Result<Tuple<'a>> {
        self.0.begin_tuple(len as u64);
        Ok(Tuple {
            out: self.0,
            remaining: len,
        })
    }
    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Tuple<'a>> {
        self.serialize_tuple(len)
    }
    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Tuple<'a>> {
        self.0.variant(variant);
        self.serialize_tuple(len)
    }
    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Map<'a>> {
        Ok(Map {
            out: self.0,
            sub: KeyHasher::bare(),
            digests: DigestList::with_hint(len.unwrap_or(0)),
            key_pending: false,
        })
    }
    #[inline]
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Struct<'a>> {
        self.0.begin_struct();
        Ok(Struct {
            out: self.0,
            name,
            count: 0,
        })
    }
    #[inline]
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Struct<'a>> {
        self.0.variant(variant);
        self.serialize_struct(variant, len)
    }

    /// Written as a string without allocating: the value is formatted twice, once to count its
    /// length and once to stream its bytes. A `Display` whose output changes between the two
    /// passes is an error.
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result {
        time_guard::collected::<T>();
        struct Count(u64);
        impl fmt::Write for Count {
            #[inline]
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0 += s.len() as u64;
                Ok(())
            }
        }
        struct Stream<'h>(&'h mut KeyHasher, u64);
        impl fmt::Write for Stream<'_> {
            #[inline]
            fn write_str(&mut self, s: &str) -> fmt::Result {
                self.0.put(s.as_bytes());
                self.1 += s.len() as u64;
                Ok(())
            }
        }
        let mut count = Count(0);
        if write!(count, "{value}").is_err() {
            return Err(ser::Error::custom("a Display impl failed (collect_str)"));
        }
        self.0.put_len(tag::STR, count.0);
        let mut stream = Stream(self.0, 0);
        if write!(stream, "{value}").is_err() || stream.1 != count.0 {
            return Err(ser::Error::custom(
                "a Display impl failed or was not deterministic (collect_str)",
            ));
        }
        Ok(())
    }
}

/// A sequence: elements, then the count.
pub(crate) struct Seq<'a> {
    out: &'a mut KeyHasher,
    count: u64,
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.count += 1;
        value.serialize(Bridge(self.out))
    }

    #[inline]
    fn end(self) -> Result {
        self.out.end_seq(self.count);
        Ok(())
    }
}

/// A tuple, tuple struct or tuple variant: the arity was written up front and must be met.
pub(crate) struct Tuple<'a> {
    out: &'a mut KeyHasher,
    remaining: usize,
}

impl Tuple<'_> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        if self.remaining == 0 {
            return Err(protocol_error("more tuple elements than announced"));
        }
        self.remaining -= 1;
        value.serialize(Bridge(self.out))
    }

    #[inline]
    fn finish(self) -> Result {
        if self.remaining != 0 {
            return Err(protocol_error("fewer tuple elements than announced"));
        }
        Ok(())
    }
}

impl ser::SerializeTuple for Tuple<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Tuple<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Tuple<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.element(value)
    }

    #[inline]
    fn end(self) -> Result {
        self.finish()
    }
}

/// A map: each entry is hashed on its own, the sorted digests are written at the end.
pub(crate) struct Map<'a> {
    out: &'a mut KeyHasher,
    sub: KeyHasher,
    digests: DigestList,
    key_pending: bool,
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        if self.key_pending {
            return Err(protocol_error("map key without a value"));
        }
        self.key_pending = true;
        key.serialize(Bridge(&mut self.sub))
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        if !self.key_pending {
            return Err(protocol_error("map value without a key"));
        }
        self.key_pending = false;
        value.serialize(Bridge(&mut self.sub))?;
        let digest = self.sub.take_digest(&mut None);
        self.digests.push(digest);
        Ok(())
    }

    #[inline]
    fn end(mut self) -> Result {
        if self.key_pending {
            return Err(protocol_error("map key without a value"));
        }
        self.out.write_digests(tag::MAP, &mut self.digests);
        Ok(())
    }
}

/// A struct or struct variant: name + value per field, then the count.
pub(crate) struct Struct<'a> {
    out: &'a mut KeyHasher,
    /// The struct's (or variant's) name, for the timestamp warning.
    name: &'static str,
    count: u64,
}

impl Struct<'_> {
    #[inline]
    fn write_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.count += 1;
        self.out.field(key);
        let unnamed = time_guard::unnamed();
        let written = value.serialize(Bridge(self.out));
        time_guard::field_written(unnamed, self.name, key);
        written
    }
}

impl ser::SerializeStruct for Struct<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.write_field(key, value)
    }

    #[inline]
    fn end(self) -> Result {
        self.out.end_struct(self.count);
        // At the end, so that its own fields are not taken for the field holding it.
        time_guard::struct_named(self.name);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Struct<'_> {
    type Ok = ();
    type Error = BridgeError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result {
        self.write_field(key, value)
    }

    #[inline]
    fn end(self) -> Result {
        self.out.end_struct(self.count);
        Ok(())
    }
}
