//! Finds the parts of a value that JSON writes as a `null` which does not read back as what was
//! written: `Some` of something written as `null` (`Some(None)`, `Some(())`, `Some` of a unit
//! struct, of `serde_json::Value::Null` or of a raw `null`), and non-finite floats (NaN, ±inf,
//! written as `null` wherever they are). A plain `None` is not one: it reads back as `None`.
//!
//! A `serde::Serializer` that writes nothing and stops at the first such part. It follows the
//! value exactly as serde_json's serializer does (human-readable, newtype structs transparent),
//! so it sees the same `null`s.

use std::fmt;

use serde::Serialize;
use serde::ser::{
    self, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant,
};

/// Whether writing `value` as JSON would write an ambiguous `null` (see the module docs).
pub(super) fn has_ambiguous_null<T: Serialize + ?Sized>(value: &T) -> bool {
    let mut finder = Finder {
        in_some: false,
        in_raw: false,
    };
    matches!(value.serialize(&mut finder), Err(Stop::Found))
}

/// serde_json's name for its `RawValue`, a struct of one field of that name holding JSON text
/// that is written verbatim.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

struct Finder {
    /// The value being written is directly inside a `Some` (newtype structs are transparent).
    in_some: bool,
    /// The string being written is a `RawValue`'s JSON text.
    in_raw: bool,
}

impl Finder {
    /// A value written as `null`: ambiguous inside a `Some`.
    fn null(&mut self) -> Result<(), Stop> {
        if std::mem::take(&mut self.in_some) {
            return Err(Stop::Found);
        }
        Ok(())
    }

    /// A value written as something other than `null`.
    fn other(&mut self) -> Result<(), Stop> {
        self.in_some = false;
        Ok(())
    }

    fn float(&mut self, finite: bool) -> Result<(), Stop> {
        if !finite {
            return Err(Stop::Found);
        }
        self.other()
    }
}

#[derive(Debug)]
enum Stop {
    Found,
    /// The value's own `Serialize` impl failed (it did not when the record was written).
    Failed,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::Found => "an ambiguous null",
            Stop::Failed => "the value failed to serialize",
        })
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop::Failed
    }
}

macro_rules! written_as_other {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method(self, _: $ty) -> Result<(), Stop> {
            self.other()
        }
    )*};
}

impl ser::Serializer for &mut Finder {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    written_as_other! {
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
        serialize_bytes: &[u8],
    }

    fn serialize_f32(self, v: f32) -> Result<(), Stop> {
        self.float(v.is_finite())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Stop> {
        self.float(v.is_finite())
    }

    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        if std::mem::take(&mut self.in_raw) && v.trim() == "null" {
            return self.null();
        }
        self.other()
    }

    fn serialize_none(self) -> Result<(), Stop> {
        self.null()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        // `Some(x)` is written as `x`: ambiguous if `x` is written as `null`.
        self.in_some = true;
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Stop> {
        self.null()
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
        self.null()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Stop> {
        self.other()
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        // Transparent in JSON: `in_some` carries over to the inner value.
        let _ = name;
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.other()?;
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, Stop> {
        self.other().map(|()| self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, Stop> {
        self.other().map(|()| self)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Stop> {
        self.other().map(|()| self)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Stop> {
        self.other().map(|()| self)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self, Stop> {
        self.other().map(|()| self)
    }

    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, Stop> {
        if name == RAW_VALUE {
            // Written as its text: `in_some` carries over to it.
            self.in_raw = true;
            return Ok(self);
        }
        self.other().map(|()| self)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Stop> {
        self.other().map(|()| self)
    }
}

/// Every element, field, key and value of a compound: written on its own (not inside a `Some`).
macro_rules! compound {
    ($($trait:ident { $($method:ident($($name:ident: $ty:ty),*))* })*) => {$(
        impl $trait for &mut Finder {
            type Ok = ();
            type Error = Stop;
            $(
                fn $method<T: Serialize + ?Sized>(&mut self, $($name: $ty,)* value: &T) -> Result<(), Stop> {
                    $(let _ = $name;)*
                    self.in_some = false;
                    value.serialize(&mut **self)
                }
            )*
            fn end(self) -> Result<(), Stop> {
                Ok(())
            }
        }
    )*};
}

compound! {
    SerializeSeq { serialize_element() }
    SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() }
    SerializeTupleVariant { serialize_field() }
    SerializeMap { serialize_key() serialize_value() }
    SerializeStructVariant { serialize_field(key: &'static str) }
}

impl SerializeStruct for &mut Finder {
    type Ok = ();
    type Error = Stop;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        // A `RawValue`'s text keeps `in_some`; any other field is written on its own.
        if !self.in_raw {
            self.in_some = false;
        }
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::has_ambiguous_null;
    use std::collections::HashSet;

    #[test]
    fn finds_only_the_nulls_that_read_back_as_something_else() {
        #[derive(serde::Serialize)]
        struct Unit;
        #[derive(serde::Serialize)]
        struct Wrapper(Option<u8>);
        #[derive(serde::Serialize)]
        struct Order {
            tags: HashSet<String>,
            note: Option<String>,
            value: f64,
        }
        // Read back as written.
        assert!(!has_ambiguous_null(&None::<u8>));
        assert!(!has_ambiguous_null(&Some(Some(1u8))));
        assert!(!has_ambiguous_null(&vec![None, Some(2u8)]));
        assert!(!has_ambiguous_null(&Some(Wrapper(Some(1)))));
        assert!(!has_ambiguous_null(&Some(vec![None::<u8>])));
        assert!(!has_ambiguous_null(
            &serde_json::json!({"a": null, "b": [null]})
        ));
        let tags = ["a", "b"].map(str::to_owned).into_iter().collect();
        let order = Order {
            tags,
            note: None,
            value: 1.0715660391465826e-75,
        };
        assert!(!has_ambiguous_null(&order));
        // Written as `null`, read back as something else.
        assert!(has_ambiguous_null(&Some(None::<u8>)));
        assert!(has_ambiguous_null(&Some(())));
        assert!(has_ambiguous_null(&Some(Unit)));
        assert!(has_ambiguous_null(&Some(Wrapper(None))));
        assert!(has_ambiguous_null(&Some(Some(None::<u8>))));
        assert!(has_ambiguous_null(&Some(serde_json::Value::Null)));
        assert!(has_ambiguous_null(&vec![1.0, f64::NAN]));
        assert!(has_ambiguous_null(&[f32::INFINITY]));
        assert!(has_ambiguous_null(&(1u8, Some(Some(()))).1));
    }

    /// `RawValue` (serde_json's `raw_value` feature, which `http` enables) is written verbatim.
    #[cfg(feature = "http")]
    #[test]
    fn a_raw_null_inside_some_is_ambiguous() {
        let raw = |text: &str| serde_json::value::RawValue::from_string(text.to_owned()).unwrap();
        assert!(has_ambiguous_null(&Some(raw(" null "))));
        assert!(!has_ambiguous_null(&Some(raw("[null]"))));
        assert!(!has_ambiguous_null(&raw("null")));
        let (_, wrote_null) = super::super::encode_noting_null("op", &raw("null")).unwrap();
        assert!(wrote_null, "the formatter notes a raw null");
    }
}
