//! `#[idempotent]` inside `macro_rules!`: parameters, types, bodies and option expressions that
//! come from macro fragments resolve as written (no span of a generated local or of a
//! parameter is moved onto another token).
#![deny(warnings)]

use idem_runtime::{Error, idempotent};

// A parameter named in the macro body, its type from the invocation.
macro_rules! with_type {
    ($name:ident, $t:ty) => {
        #[idempotent]
        pub async fn $name(x: $t) -> Result<u32, Error> {
            let _ = x;
            Ok(1)
        }
    };
}
with_type!(by_ty, u32);

// Parameters and their types from the invocation, as `ty` and as `tt` fragments.
macro_rules! ops {
    ($($name:ident($($arg:ident : $t:ty),*) => $e:expr;)*) => {$(
        #[idempotent]
        pub async fn $name($($arg: $t),*) -> Result<u32, Error> { $e }
    )*};
}
ops! {
    add(a: u32, b: u32) => Ok(a + b);
}

macro_rules! ops_tt {
    ($($name:ident($($arg:ident : $t:tt),*) => $e:expr;)*) => {$(
        #[idempotent]
        pub async fn $name($($arg: $t),*) -> Result<u32, Error> { $e }
    )*};
}
ops_tt! {
    sub(a: u32, b: u32) => Ok(a - b);
}

// The body as a `block` fragment (an invisible group around the braces).
macro_rules! with_block {
    ($($name:ident($($arg:ident : $t:ty),*) $body:block)*) => {$(
        #[idempotent]
        pub async fn $name($($arg: $t),*) -> Result<u32, Error> $body
    )*};
}
with_block! {
    mul(a: u32, b: u32) { Ok(a * b) }
}

// Option expressions, parameters named by the invocation, and a pattern parameter.
macro_rules! keyed {
    ($name:ident, $id:ident, $scope:ident, $key:expr, $version:literal) => {
        #[idempotent(key = $key, scope = $scope, version = $version)]
        pub async fn $name($id: u64, $scope: &str, (x, y): (u8, u8)) -> Result<u64, Error> {
            Ok($id + x as u64 + y as u64)
        }
    };
}
keyed!(keyed_by_id, id, tenant, (id, tenant), 2);

// A method from a macro, with `self` in the scope.
pub struct Service {
    tenant: String,
}

macro_rules! method {
    ($name:ident, $op:literal) => {
        impl Service {
            #[idempotent(name = $op, scope = self.tenant)]
            pub async fn $name(&self, id: u64) -> Result<u64, Error> {
                Ok(id)
            }
        }
    };
}
method!(open, "macro_rules.open");

fn main() {
    let service = Service { tenant: String::new() };
    let _ = (by_ty(1), add(1, 2), sub(2, 1), mul(2, 3), keyed_by_id(1, "t", (1, 2)));
    let _ = service.open(1);
}
