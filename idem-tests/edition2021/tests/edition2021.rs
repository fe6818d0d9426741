//! The edition-2021 expansions behave: each body runs once per key.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use idem_tests_edition2021::{echo, place, Fulfil, Item, Order, Shop, RUNS};

fn order(note: &str) -> Order {
    Order {
        customer: "cus_1".into(),
        item: Item::Units("sku_9".into(), 2),
        note: note.into(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn each_body_runs_once_per_key() {
    let store: Arc<dyn idem_runtime::Store> = Arc::new(idem_runtime::MemoryStore::new());
    idem_runtime::with_store(store, async {
        let runs = || RUNS.load(Ordering::SeqCst);

        let first = place(&order("a"), "web").await.unwrap();
        assert_eq!(
            place(&order("b"), "web").await.unwrap(),
            first,
            "note excluded"
        );
        assert_eq!(runs(), 1);
        place(&order("a"), "app").await.unwrap();
        assert_eq!(runs(), 2, "another channel, another key");

        let (acme, globex) = (
            Shop {
                tenant: "acme".into(),
            },
            Shop {
                tenant: "globex".into(),
            },
        );
        let a = acme.place(&order("a")).await.unwrap();
        assert_eq!(acme.place(&order("a")).await.unwrap(), a);
        assert_eq!(runs(), 3);
        globex.place(&order("a")).await.unwrap();
        assert_eq!(runs(), 4, "another tenant, another key");

        assert_eq!(
            echo(Item::GiftCard { cents: 500 }).await.unwrap(),
            Item::GiftCard { cents: 500 }
        );
        assert_eq!(
            echo(Item::GiftCard { cents: 500 }).await.unwrap(),
            Item::GiftCard { cents: 500 }
        );
        assert_eq!(runs(), 5);

        let shipped = acme.ship(order("a")).await.unwrap();
        assert_eq!(acme.ship(order("z")).await.unwrap(), shipped);
        assert_eq!(runs(), 6);
    })
    .await;
}
