//! Generic fns whose key tells the instantiations apart, or whose type parameters never reach
//! the recorded value: none of them is refused.
#![deny(warnings)]

use idem_runtime::{Error, idempotent};
use serde::{Serialize, de::DeserializeOwned};

pub trait Kind: Serialize + DeserializeOwned + Default {
    const KIND: &'static str;
}

// In a hashed parameter's type.
#[idempotent(name = "generics.echo")]
pub async fn echo<T: Serialize + DeserializeOwned + Sync>(value: T) -> Result<T, Error> {
    Ok(value)
}

// Named by the scope.
#[idempotent(name = "generics.fetch", scope = T::KIND)]
pub async fn fetch<T: Kind>(id: u64) -> Result<T, Error> {
    let _ = id;
    Ok(T::default())
}

// Named by the key expression.
#[idempotent(name = "generics.fetch_keyed", key = (id, T::KIND))]
pub async fn fetch_keyed<T: Kind>(id: u64) -> Result<Vec<T>, Error> {
    let _ = id;
    Ok(Vec::new())
}

// A parameter the key expression names.
#[idempotent(name = "generics.first", key = values)]
pub async fn first<T: Serialize + DeserializeOwned + Clone + Sync>(
    values: &[T],
    note: &str,
) -> Result<Option<T>, Error> {
    let _ = note;
    Ok(values.first().cloned())
}

// Only in the error type: errors are never recorded.
#[idempotent(name = "generics.count")]
pub async fn count<E: From<Error>>(items: Vec<u32>) -> Result<usize, E> {
    Ok(items.len())
}

fn main() {}

mod other {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct T(pub u64);
}

// `other::T` is a type of its own, not the parameter `T`.
#[idempotent(name = "generics.other_t")]
pub async fn other_t<T: Sync>(marker: &str) -> Result<other::T, Error> {
    Ok(other::T(marker.len() as u64))
}

// In `PhantomData` and, outside it, in the scope: the scope tells the instantiations apart.
#[idempotent(name = "generics.typed", scope = T::KIND)]
pub async fn typed<T: Kind>(id: u64, kind: std::marker::PhantomData<T>) -> Result<T, Error> {
    let _ = (id, kind);
    Ok(T::default())
}
