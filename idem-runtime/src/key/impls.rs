//! [`IdempotencyKey`] for std types, following the encoding of the [module docs](crate::key).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::num::NonZero;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{IdempotencyKey, KeyHasher};

macro_rules! primitive {
    ($($ty:ty => $method:ident),* $(,)?) => {$(
        impl IdempotencyKey for $ty {
            #[inline]
            fn write_key(&self, out: &mut KeyHasher) {
                out.$method(*self);
            }
        }

        /// Transparent: written as the inner integer (as serde does).
        impl IdempotencyKey for NonZero<$ty> {
            #[inline]
            fn write_key(&self, out: &mut KeyHasher) {
                out.$method(self.get());
            }
        }
    )*};
}

primitive! {
    u8 => write_u8, u16 => write_u16, u32 => write_u32, u64 => write_u64, u128 => write_u128,
    usize => write_usize,
    i8 => write_i8, i16 => write_i16, i32 => write_i32, i64 => write_i64, i128 => write_i128,
    isize => write_isize,
}

macro_rules! float_bool_char {
    ($($ty:ty => $method:ident),* $(,)?) => {$(
        impl IdempotencyKey for $ty {
            #[inline]
            fn write_key(&self, out: &mut KeyHasher) {
                out.$method(*self);
            }
        }
    )*};
}

float_bool_char! { f32 => write_f32, f64 => write_f64, bool => write_bool, char => write_char }

impl IdempotencyKey for () {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_unit();
    }
}

impl IdempotencyKey for str {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_str(self);
    }
}

impl IdempotencyKey for String {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_str(self);
    }
}

/// Written as unit, like serde's unit struct.
impl<T: ?Sized> IdempotencyKey for PhantomData<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_unit();
    }
}

impl<T: IdempotencyKey> IdempotencyKey for Option<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        match self {
            None => out.write_none(),
            Some(v) => {
                out.write_some();
                v.write_key(out);
            }
        }
    }
}

/// As serde writes a `Result`: the newtype variant `"Ok"` or `"Err"` (`0x1A` + the name), then
/// the value. A `Result` of key-trait types therefore has the same key as through the serde
/// bridge, except that nested derived types keep their own encoding (and exclusions).
impl<T: IdempotencyKey, E: IdempotencyKey> IdempotencyKey for Result<T, E> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        match self {
            Ok(v) => {
                out.variant("Ok");
                v.write_key(out);
            }
            Err(e) => {
                out.variant("Err");
                e.write_key(out);
            }
        }
    }
}

/// The sequence form: `0x14`, the elements, `0x15` + count.
impl<T: IdempotencyKey> IdempotencyKey for [T] {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_seq_with(self.iter(), T::write_key);
    }
}

impl<T: IdempotencyKey> IdempotencyKey for Vec<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        self.as_slice().write_key(out);
    }
}

impl<T: IdempotencyKey> IdempotencyKey for VecDeque<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_seq_with(self.iter(), T::write_key);
    }
}

/// The tuple form (`0x16` + N + the elements), as serde serializes arrays.
impl<T: IdempotencyKey, const N: usize> IdempotencyKey for [T; N] {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.begin_tuple(N as u64);
        for item in self {
            item.write_key(out);
        }
    }
}

macro_rules! tuple {
    ($n:expr; $($name:ident . $idx:tt),+) => {
        impl<$($name: IdempotencyKey),+> IdempotencyKey for ($($name,)+) {
            #[inline]
            fn write_key(&self, out: &mut KeyHasher) {
                out.begin_tuple($n);
                $(self.$idx.write_key(out);)+
            }
        }

        impl<$($name: IdempotencyKey),+> IdempotencyKey for Args<($($name,)+)> {
            #[inline]
            fn write_key(&self, out: &mut KeyHasher) {
                $(self.0.$idx.write_key(out);)+
            }
        }
    };
}

/// The key parameters of a call of an `#[idempotent]` fn, as key material: each one's encoding,
/// back to back, with no tuple header, which is how the attribute writes them. With it,
/// [`Operation::key`](crate::Operation::key) and
/// [`Operation::scoped_key`](crate::Operation::scoped_key) compute the key of a call of a fn with
/// several key parameters (a tuple would add its header and give another key); a fn with one
/// key parameter `a` has the key of `Args((&a,))`, which is also plain `op.key(&a)`.
///
/// Pass the key parameters in their order in the signature, borrowed, leaving out the
/// excluded ones (and the receiver, unless `scope`/`key` names it); wrap a parameter whose
/// type only implements `serde::Serialize` in [`AsSerde`]. Up to 12 parameters; `Args(())`
/// is a fn whose parameters are all excluded. A parameter that the attribute walks element by
/// element (a std container mixing a derived type with a serde-only one, `Vec<(Line, Uuid)>`)
/// has no [`IdempotencyKey`] impl to pass here: compute such a key with
/// [`key_of`](crate::key_of) on the call itself.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), idem_runtime::Error> {
/// use idem_runtime::{Operation, idempotent, key::Args};
///
/// struct Stock { tenant: String }
///
/// impl Stock {
///     #[idempotent(name = "docs.reserve", scope = self.tenant)]
///     async fn reserve(&self, order: &str, skus: &[u32]) -> Result<u32, idem_runtime::Error> {
///         Ok(skus.len() as u32)
///     }
/// }
///
/// let stock = Stock { tenant: "acme".into() };
/// let key = idem_runtime::key_of(stock.reserve("ord-1", &[7, 9])).await?;
/// let op = Operation::new("docs.reserve");
/// assert_eq!(key, op.scoped_key(&"acme", &Args(("ord-1", &[7u32, 9][..])))?);
/// // A tuple is one value with a header: another key.
/// assert_ne!(key, op.scoped_key(&"acme", &("ord-1", &[7u32, 9][..]))?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Args<T>(pub T);

impl IdempotencyKey for Args<()> {
    #[inline]
    fn write_key(&self, _out: &mut KeyHasher) {}
}

tuple!(1; A.0);
tuple!(2; A.0, B.1);
tuple!(3; A.0, B.1, C.2);
tuple!(4; A.0, B.1, C.2, D.3);
tuple!(5; A.0, B.1, C.2, D.3, E.4);
tuple!(6; A.0, B.1, C.2, D.3, E.4, F.5);
tuple!(7; A.0, B.1, C.2, D.3, E.4, F.5, G.6);
tuple!(8; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);
tuple!(9; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8);
tuple!(10; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9);
tuple!(11; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10);
tuple!(12; A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11);

impl<K: IdempotencyKey, V: IdempotencyKey> IdempotencyKey for BTreeMap<K, V> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_map(self);
    }
}

impl<K: IdempotencyKey, V: IdempotencyKey, S> IdempotencyKey for HashMap<K, V, S> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_map(self);
    }
}

impl<T: IdempotencyKey> IdempotencyKey for BTreeSet<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_set(self);
    }
}

impl<T: IdempotencyKey, S> IdempotencyKey for HashSet<T, S> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_set(self);
    }
}

macro_rules! transparent {
    ($($ty:ty),* $(,)?) => {$(
        impl<T: IdempotencyKey + ?Sized> IdempotencyKey for $ty {
            #[inline]
            fn write_key(&self, out: &mut KeyHasher) {
                (**self).write_key(out);
            }
        }
    )*};
}

transparent!(&T, &mut T, Box<T>, Rc<T>, Arc<T>);

impl<B: IdempotencyKey + ToOwned + ?Sized> IdempotencyKey for Cow<'_, B> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        (**self).write_key(out);
    }
}

/// The struct form in serde's field order, so that it matches `Duration` through the serde
/// bridge: `0x19`, `"secs"` + u64, `"nanos"` + u32, `0x15` + 2.
impl IdempotencyKey for Duration {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.begin_struct();
        out.field("secs");
        out.write_u64(self.as_secs());
        out.field("nanos");
        out.write_u32(self.subsec_nanos());
        out.end_struct(2);
    }
}

/// Bytes as key material: the bytes form (`0x11` + length + bytes) instead of the sequence of
/// `u8` that `Vec<u8>`/`[u8]` get (the same distinction serde makes with `serde_bytes`).
///
/// ```
/// # use idem_runtime::key::{AsBytes, KeyHasher};
/// let mut h = KeyHasher::for_key("upload", 1);
/// h.unscoped();
/// h.write(&AsBytes(b"raw payload"));
/// let _key = h.finish_key().unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct AsBytes<T: ?Sized>(pub T);

impl<T: AsRef<[u8]> + ?Sized> IdempotencyKey for AsBytes<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_bytes(self.0.as_ref());
    }
}

/// A `serde::Serialize` value as key material, through the serde bridge
/// ([`KeyHasher::write_serde`]): for the explicit API (`Operation::key`, `KeyHasher::write`),
/// which takes [`IdempotencyKey`] types only. `#[derive(IdempotencyKey)]` fields and
/// `#[idempotent]` parameters need no wrapper: a type without an `IdempotencyKey` impl is
/// written through serde there, with the same bytes as this wrapper gives.
///
/// ```
/// # use idem_runtime::key::AsSerde;
/// # use idem_runtime::Operation;
/// # let webhook_body = serde_json::json!({"id": "evt_1", "type": "charge.succeeded"});
/// static OP: Operation = Operation::new("webhooks.stripe");
/// // A `serde_json::Value`, a `Uuid`, a `chrono` date…: anything `Serialize`.
/// let key = OP.key(&AsSerde(&webhook_body)).unwrap();
/// # let _ = key;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct AsSerde<T: ?Sized>(pub T);

impl<T: serde::Serialize + ?Sized> IdempotencyKey for AsSerde<T> {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_serde(&self.0);
    }
}

/// The bytes form, as `bytes::Bytes` serializes (`serialize_bytes`).
impl IdempotencyKey for bytes::Bytes {
    #[inline]
    fn write_key(&self, out: &mut KeyHasher) {
        out.write_bytes(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest<T: IdempotencyKey + ?Sized>(v: &T) -> [u8; 32] {
        let mut h = KeyHasher::bare();
        h.write(v);
        h.take_digest(&mut None)
    }

    fn digest_serde<T: serde::Serialize + ?Sized>(v: &T) -> [u8; 32] {
        let mut h = KeyHasher::bare();
        h.write_serde(v);
        h.take_digest(&mut None)
    }

    #[test]
    fn key_bytes_forms() {
        let expected = *blake3::hash(b"\x11\x02\x01\x02").as_bytes();
        assert_eq!(digest(&AsBytes([1u8, 2])), expected);
        assert_eq!(digest(&AsBytes(&b"\x01\x02"[..])), expected);
        assert_eq!(digest(&bytes::Bytes::from_static(&[1, 2])), expected);
        assert_ne!(digest(&vec![1u8, 2]), expected);
    }

    #[test]
    fn key_duration_matches_serde() {
        for d in [Duration::ZERO, Duration::new(3, 7), Duration::MAX] {
            assert_eq!(digest(&d), digest_serde(&d));
        }
    }

    #[test]
    fn key_result_matches_serde() {
        let values: [Result<u8, String>; 3] = [Ok(7), Err("no".into()), Err(String::new())];
        for r in &values {
            assert_eq!(digest(r), digest_serde(r));
        }
        assert_ne!(digest(&values[0]), digest(&Some(7u8)));
        let nested: Result<Option<Vec<u8>>, (u8, bool)> = Err((1, true));
        assert_eq!(digest(&nested), digest_serde(&nested));
        let ok: Result<Option<Vec<u8>>, (u8, bool)> = Ok(Some(vec![1]));
        assert_eq!(digest(&ok), digest_serde(&ok));
    }

    #[test]
    fn key_empty_sequences_do_not_carry_the_element_type() {
        // Documented property of the sequence form (as in serde): only elements are typed.
        assert_eq!(digest(&Vec::<u8>::new()), digest(&Vec::<String>::new()));
        assert_ne!(digest(&Vec::<u8>::new()), digest(&[0u8; 0]));
    }
}
