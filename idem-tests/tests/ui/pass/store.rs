//! `store = &self.store` with an `Arc<dyn Store>` field, whatever the receiver: the body may
//! move `self` (or mutate it) while the call holds the store.
#![deny(warnings)]

use std::sync::Arc;

use idem_runtime::{Error, MemoryStore, Store, idempotent};

pub struct Service {
    store: Arc<dyn Store>,
    n: u64,
}

impl Service {
    #[idempotent(name = "store.shared", store = &self.store)]
    pub async fn shared(&self, id: u64) -> Result<u64, Error> {
        Ok(self.n + id)
    }

    #[idempotent(name = "store.exclusive", store = &self.store)]
    pub async fn exclusive(&mut self, id: u64) -> Result<u64, Error> {
        self.n += id;
        Ok(self.n)
    }

    #[idempotent(name = "store.by_value", store = &self.store)]
    pub async fn by_value(self, id: u64) -> Result<u64, Error> {
        let me = self;
        Ok(me.n + id)
    }

    #[idempotent(name = "store.arc", store = &self.store)]
    pub async fn arc(self: Arc<Self>, id: u64) -> Result<u64, Error> {
        let me = self;
        Ok(me.n + id)
    }

    #[idempotent(name = "store.boxed", store = self.store.clone())]
    pub async fn boxed(self: Box<Self>, id: u64) -> Result<u64, Error> {
        let me = self;
        Ok(me.n + id)
    }
}

/// `store = self.store`, a field without `&`: borrowed like `&self.store`.
pub struct Fielded<'a> {
    store: Arc<MemoryStore>,
    borrowed: &'a Arc<dyn Store>,
}

impl Fielded<'_> {
    #[idempotent(name = "store.field", store = self.store)]
    pub async fn field(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }

    #[idempotent(name = "store.field_by_value", store = (self.store))]
    pub async fn field_by_value(self, id: u64) -> Result<u64, Error> {
        let me = self;
        Ok(id + me.store.len() as u64)
    }

    #[idempotent(name = "store.borrowed_field", store = self.borrowed)]
    pub async fn borrowed_field(&mut self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

/// `store = store`: a parameter holding the store is borrowed and never hashed (no
/// `exclude` needed), owned or borrowed, and the body may still use it.
#[idempotent(store = store)]
pub async fn owned_param(store: Arc<dyn Store>, id: u64) -> Result<u64, Error> {
    drop(store);
    Ok(id)
}

#[idempotent(store = store)]
pub async fn borrowed_param(store: &Arc<dyn Store>, id: u64) -> Result<u64, Error> {
    let _ = store.name();
    Ok(id)
}

// A parameter holding the store, moved by the body.
#[idempotent(store = &store)]
pub async fn moved(#[idem(exclude)] store: Arc<dyn Store>, id: u64) -> Result<u64, Error> {
    let keep = store;
    drop(keep);
    Ok(id)
}

fn main() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut service = Service { store: store.clone(), n: 1 };
    let _ = service.shared(1);
    let _ = service.exclusive(1);
    let _ = Service { store: store.clone(), n: 1 }.by_value(1);
    let _ = Arc::new(Service { store: store.clone(), n: 1 }).arc(1);
    let _ = Box::new(Service { store: store.clone(), n: 1 }).boxed(1);
    let mut fielded = Fielded { store: Arc::new(MemoryStore::new()), borrowed: &store };
    let _ = fielded.field(1);
    let _ = fielded.borrowed_field(1);
    let _ = Fielded { store: Arc::new(MemoryStore::new()), borrowed: &store }.field_by_value(1);
    let _ = borrowed_param(&store, 1);
    let _ = owned_param(store.clone(), 1);
    let _ = moved(store, 1);
}
