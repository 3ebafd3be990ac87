//! Behaviour every [`VectorStore`] backend must show, run by each backend's tests with a fresh
//! directory per case. Reopening from the same directory must give back what was written.

use std::path::Path;

use super::{ImageRecord, ListOrder, StoreError, Upserted, VectorStore};

pub use super::conformance_record as record;

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

/// Runs every case; `open` opens the backend at a directory (called again to test reopening).
pub fn run_all(open: impl Fn(&Path) -> Box<dyn VectorStore>) {
    upsert_get_count_and_replace(&open);
    search_orders_by_cosine_and_respects_k(&open);
    delete_removes_from_search_and_get(&open);
    data_survives_reopen(&open);
    wrong_dimension_and_wrong_model_are_refused(&open);
    list_pages_through_everything_once(&open);
    paths_find_their_current_image(&open);
    many_upserts_land_together(&open);
    new_content_at_a_path_retires_what_the_path_showed(&open);
    listing_follows_ingestion_order_both_ways(&open);
}

fn new_content_at_a_path_retires_what_the_path_showed(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path());
        store.upsert(&record("old"), &unit(&[1.0, 0.0])).unwrap();
        let mut edited = record("new");
        edited.path = record("old").path;
        store.upsert(&edited, &unit(&[0.0, 1.0])).unwrap();
        assert_eq!(store.get("old").unwrap(), None, "the path shows new content now");
        assert_eq!(store.count(), 1);
        let hits = store.search(&unit(&[1.0, 0.0]), 5).unwrap();
        assert_eq!(hits.iter().map(|h| h.record.id.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(store.find_by_path(&edited.path).unwrap(), Some(edited));
        // An image that merely moved away from a path leaves nothing behind to retire.
        let mut moved = record("other");
        moved.path = "/photos/elsewhere.jpg".into();
        store.upsert(&moved, &unit(&[1.0, 1.0])).unwrap();
        assert_eq!(store.count(), 2);
    }
    let store = open(dir.path());
    assert_eq!(store.get("old").unwrap(), None, "retired in the same durable write");
    assert_eq!(store.count(), 2);
}

fn listing_follows_ingestion_order_both_ways(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    // Ids in the opposite order of ingestion, so id order cannot pass for time order.
    let ids = ["z", "m", "a", "q"];
    for (i, id) in ids.iter().enumerate() {
        let mut r = record(id);
        r.ingested_at += time::Duration::seconds(i as i64);
        store.upsert(&r, &unit(&[1.0, i as f32])).unwrap();
    }
    let listed = |order| store.list(0, 10, order).unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(listed(ListOrder::OldestFirst), ids);
    assert_eq!(listed(ListOrder::NewestFirst), ["q", "a", "m", "z"]);
    assert_eq!(store.list(1, 2, ListOrder::NewestFirst).unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>(), ["a", "m"]);
    // Re-ingesting an image moves it to its new time; deleting removes it from the order.
    let mut again = record("z");
    again.ingested_at += time::Duration::seconds(60);
    store.upsert(&again, &unit(&[1.0, 0.0])).unwrap();
    store.delete("a").unwrap();
    assert_eq!(listed(ListOrder::NewestFirst), ["z", "q", "m"]);
}

fn many_upserts_land_together(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let items: Vec<(ImageRecord, Vec<f32>)> = (0..50).map(|i| (record(&format!("b{i:02}")), unit(&[1.0, i as f32]))).collect();
    {
        let store = open(dir.path());
        let outcomes = store.upsert_many(&items).unwrap();
        assert!(outcomes.iter().all(|o| *o == Upserted::Inserted));
        assert_eq!(store.upsert_many(&items[..3]).unwrap(), vec![Upserted::Replaced; 3]);
        let mut mixed = items[..2].to_vec();
        mixed.push((record("bad"), vec![1.0, 0.0, 0.0]));
        assert!(matches!(store.upsert_many(&mixed), Err(StoreError::DimensionMismatch { .. })));
    }
    let store = open(dir.path());
    assert_eq!(store.count(), 50, "a refused batch writes none of its items");
    assert_eq!(store.search(&unit(&[1.0, 0.0]), 1).unwrap()[0].record.id, "b00");
    assert_eq!(store.get("b49").unwrap(), Some(record("b49")));
}

fn paths_find_their_current_image(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    store.upsert(&record("a"), &unit(&[1.0, 0.0])).unwrap();
    assert_eq!(store.find_by_path("/photos/a.jpg").unwrap(), Some(record("a")));
    assert_eq!(store.find_by_path("/photos/nope.jpg").unwrap(), None);
    let mut moved = record("a");
    moved.path = "/photos/renamed.jpg".into();
    store.upsert(&moved, &unit(&[1.0, 0.0])).unwrap();
    assert_eq!(store.find_by_path("/photos/a.jpg").unwrap(), None, "the old path no longer names the image");
    assert_eq!(store.find_by_path("/photos/renamed.jpg").unwrap(), Some(moved));
    store.delete("a").unwrap();
    assert_eq!(store.find_by_path("/photos/renamed.jpg").unwrap(), None);
}

fn upsert_get_count_and_replace(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    assert_eq!(store.count(), 0);
    assert_eq!(store.upsert(&record("a"), &unit(&[1.0, 0.0, 0.0])).unwrap(), Upserted::Inserted);
    assert_eq!(store.upsert(&record("a"), &unit(&[0.0, 1.0, 0.0])).unwrap(), Upserted::Replaced);
    assert_eq!(store.count(), 1);
    assert_eq!(store.get("a").unwrap(), Some(record("a")));
    assert_eq!(store.get("missing").unwrap(), None);
    assert_eq!(store.vector("a").unwrap(), Some(vec![0.0, 1.0, 0.0]));
}

fn search_orders_by_cosine_and_respects_k(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    assert!(store.search(&[1.0, 0.0, 0.0], 3).unwrap().is_empty(), "empty store finds nothing");
    store.upsert(&record("x"), &unit(&[1.0, 0.0, 0.0])).unwrap();
    store.upsert(&record("y"), &unit(&[1.0, 1.0, 0.0])).unwrap();
    store.upsert(&record("z"), &unit(&[0.0, 0.0, 1.0])).unwrap();
    let hits = store.search(&[1.0, 0.0, 0.0], 2).unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.record.id.as_str()).collect();
    assert_eq!(ids, ["x", "y"]);
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    assert!((hits[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
    assert_eq!(store.search(&[1.0, 0.0, 0.0], 100).unwrap().len(), 3);
}

fn delete_removes_from_search_and_get(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    store.upsert(&record("p"), &unit(&[1.0, 0.0])).unwrap();
    store.upsert(&record("q"), &unit(&[0.0, 1.0])).unwrap();
    assert!(store.delete("p").unwrap());
    assert!(!store.delete("p").unwrap());
    assert_eq!(store.get("p").unwrap(), None);
    assert_eq!(store.count(), 1);
    let hits = store.search(&[1.0, 0.0], 5).unwrap();
    assert_eq!(hits.iter().map(|h| h.record.id.as_str()).collect::<Vec<_>>(), ["q"]);
}

fn data_survives_reopen(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path());
        store.bind_model("model-a", 2).unwrap();
        store.upsert(&record("keep"), &unit(&[3.0, 4.0])).unwrap();
        store.upsert(&record("gone"), &unit(&[1.0, 0.0])).unwrap();
        store.delete("gone").unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.count(), 1);
    assert_eq!(store.get("keep").unwrap(), Some(record("keep")));
    let hits = store.search(&[0.6, 0.8], 1).unwrap();
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    store.bind_model("model-a", 2).expect("same model binds again");
}

fn wrong_dimension_and_wrong_model_are_refused(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    store.bind_model("model-a", 3).unwrap();
    store.upsert(&record("a"), &unit(&[1.0, 0.0, 0.0])).unwrap();
    assert!(matches!(store.upsert(&record("b"), &[1.0, 0.0]), Err(StoreError::DimensionMismatch { expected: 3, got: 2 })));
    assert!(matches!(store.search(&[1.0, 0.0], 1), Err(StoreError::DimensionMismatch { .. })));
    assert!(matches!(store.bind_model("model-b", 3), Err(StoreError::ModelMismatch { .. })));
    assert_eq!(store.count(), 1, "refused writes leave the index as it was");
}

fn list_pages_through_everything_once(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    for i in 0..7 {
        store.upsert(&record(&format!("img{i}")), &unit(&[1.0, i as f32])).unwrap();
    }
    let mut seen = Vec::new();
    for page in 0..4 {
        seen.extend(store.list(page * 3, 3, ListOrder::OldestFirst).unwrap().into_iter().map(|r| r.id));
    }
    seen.sort();
    assert_eq!(seen, (0..7).map(|i| format!("img{i}")).collect::<Vec<_>>());
}
