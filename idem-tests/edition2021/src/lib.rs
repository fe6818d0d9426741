//! `#[idempotent]` and `#[derive(IdempotencyKey)]` in an edition-2021 crate, under
//! `#![forbid(unsafe_code)]` and `#![deny(warnings)]` (and the workspace's clippy run): a free
//! fn over borrowed arguments, a `&self` method with a `scope`, a generic fn, an
//! `#[async_trait]` method, and derived structs and enums.

#![forbid(unsafe_code)]
#![deny(warnings, unused_qualifications)]

use std::sync::atomic::{AtomicU32, Ordering};

use idem_runtime::{idempotent, Error, IdempotencyKey};
use serde::{Deserialize, Serialize};

/// A request; `note` stays out of the key.
#[derive(IdempotencyKey, Serialize, Deserialize, Debug, Clone)]
pub struct Order {
    /// Customer id.
    pub customer: String,
    /// What was ordered.
    pub item: Item,
    /// Free text, not part of the key.
    #[idem(exclude)]
    pub note: String,
}

/// An enum in the key.
#[derive(IdempotencyKey, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Item {
    /// A number of units of a product.
    Units(String, u32),
    /// A gift card of some value.
    GiftCard {
        /// Its value in cents.
        cents: u64,
    },
}

/// What an order returns.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Placed {
    /// Order id.
    pub id: String,
    /// Which run of a body produced it.
    pub run: u32,
}

/// How many times any body of this crate ran.
pub static RUNS: AtomicU32 = AtomicU32::new(0);

fn placed(id: String) -> Placed {
    Placed {
        id,
        run: RUNS.fetch_add(1, Ordering::SeqCst) + 1,
    }
}

/// A free fn over borrowed arguments (their lifetimes are captured by the fn's future).
#[idempotent(name = "ed2021.place", ttl = "1h")]
pub async fn place(order: &Order, channel: &str) -> Result<Placed, Error> {
    Ok(placed(format!("{}:{channel}", order.customer)))
}

/// A shop: `self` reaches the key through `scope` only.
pub struct Shop {
    /// The tenant.
    pub tenant: String,
}

impl Shop {
    /// A `&self` method.
    #[idempotent(name = "ed2021.shop_place", scope = self.tenant)]
    pub async fn place(&self, order: &Order) -> Result<Placed, Error> {
        Ok(placed(format!("{}/{}", self.tenant, order.customer)))
    }
}

/// A generic fn whose type parameter reaches the key through its argument.
#[idempotent(name = "ed2021.echo")]
pub async fn echo<T>(value: T) -> Result<T, Error>
where
    T: IdempotencyKey + Serialize + serde::de::DeserializeOwned + Send,
{
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(value)
}

/// A trait implemented with `#[async_trait]`.
#[async_trait::async_trait]
pub trait Fulfil {
    /// Ships an order.
    async fn ship(&self, order: Order) -> Result<Placed, Error>;
}

#[async_trait::async_trait]
impl Fulfil for Shop {
    #[idempotent(name = "ed2021.ship")]
    async fn ship(&self, order: Order) -> Result<Placed, Error> {
        Ok(placed(format!("shipped {}", order.customer)))
    }
}
