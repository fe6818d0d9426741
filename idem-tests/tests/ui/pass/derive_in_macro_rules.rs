//! The derive inside `macro_rules!`, whose tokens carry the macro's hygiene: the generated
//! `self`, hasher and bindings must still resolve. Also containers mixing derived and
//! serde-only types, and a phantom type parameter without bounds.
#![deny(warnings)]
#![allow(dead_code)]

use std::collections::HashMap;
use std::marker::PhantomData;

use idem_runtime::{IdempotencyKey, KeyHasher};

fn w(_: &u32, _: &mut KeyHasher) {}

macro_rules! ty_ident {
    ($name:ident, $t:ident) => {
        #[derive(IdempotencyKey)]
        pub struct $name {
            x: $t,
        }
    };
}
ty_ident!(A, u32);

macro_rules! with_path {
    ($name:ident, $p:ident) => {
        #[derive(IdempotencyKey)]
        pub struct $name {
            #[idem(with = $p)]
            x: u32,
        }
    };
}
with_path!(B, w);

macro_rules! enum_of {
    ($name:ident, $t:ty, $f:ident) => {
        #[derive(IdempotencyKey)]
        enum $name {
            Tuple($t, #[idem(exclude)] u8),
            Named {
                $f: $t,
                #[idem(exclude)]
                note: String,
            },
        }
    };
}
enum_of!(C, Vec<(Inner, Foreign)>, items);

#[derive(IdempotencyKey, serde::Serialize)]
struct Inner {
    id: u64,
    #[idem(exclude)]
    note: String,
}

#[derive(serde::Serialize, PartialEq, Eq, Hash)]
struct Foreign(u8);

#[derive(IdempotencyKey)]
struct Mixed<T> {
    pairs: Vec<(Inner, Foreign)>,
    by: HashMap<Foreign, Inner>,
    maybe: Option<Box<(T, Foreign)>>,
    result: Result<Inner, String>,
    kind: PhantomData<T>,
}

struct Marker;

#[derive(IdempotencyKey)]
struct Id<T> {
    raw: u64,
    _t: PhantomData<T>,
}

fn key<T: IdempotencyKey>(value: &T) {
    let mut h = KeyHasher::for_key("pass", 1);
    h.unscoped();
    h.write(value);
    let _ = h.finish_key();
}

fn main() {
    key(&A { x: 1 });
    key(&B { x: 1 });
    key(&C::Tuple(Vec::new(), 1));
    key(&Mixed::<u8> {
        pairs: Vec::new(),
        by: HashMap::new(),
        maybe: None,
        result: Err(String::new()),
        kind: PhantomData,
    });
    key(&Id::<Marker> {
        raw: 1,
        _t: PhantomData,
    });
}
