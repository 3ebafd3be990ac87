//! Behaviour every [`VectorStore`] backend must show, run by each backend's tests with a fresh
//! directory per case. Reopening from the same directory must give back what was written.

use std::path::Path;

use super::{
    Camera, DuplicateKind, Filter, Hit, ImageRecord, ListOrder, Location, Near, PhotoMeta, SearchQuery, SortBy, StoreError, TakenAt,
    Upserted, VectorStore,
};

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
    filtered_search_is_exact_even_when_few_match(&open);
    date_order_pages_are_stable_and_undated_images_come_last(&open);
    metadata_set_later_is_filtered_on_and_survives_reopen(&open);
    duplicates_keep_identical_copies_apart_from_similar_pictures(&open);
    export_pages_through_every_image_once_with_its_vector(&open);
}

fn export_pages_through_every_image_once_with_its_vector(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    assert_eq!(store.bound_model().unwrap(), None, "a new store is bound to no model");
    assert!(store.export_after(None, 10).unwrap().is_empty());
    store.bind_model("model-x", 2).unwrap();
    assert_eq!(store.bound_model().unwrap(), Some(("model-x".to_string(), 2)));
    for i in 0..25 {
        let angle = i as f32 / 10.0;
        store.upsert(&record(&format!("img{i:02}")), &[angle.cos(), angle.sin()]).unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.export_after(after.as_deref(), 7).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        for (record, vector) in &page {
            let i: usize = record.id[3..].parse().unwrap();
            let angle = i as f32 / 10.0;
            assert!((vector[0] - angle.cos()).abs() < 1e-3 && (vector[1] - angle.sin()).abs() < 1e-3, "{} has its own vector", record.id);
            assert_eq!(*record, store.get(&record.id).unwrap().unwrap());
        }
        after = page.last().map(|(r, _)| r.id.clone());
        seen.extend(page.into_iter().map(|(r, _)| r.id));
    }
    let expected: Vec<String> = (0..25).map(|i| format!("img{i:02}")).collect();
    assert_eq!(seen, expected, "every image once, in id order");
}

fn duplicates_keep_identical_copies_apart_from_similar_pictures(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Real files, since copies count only while they exist.
    let file = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, name).unwrap();
        path.display().to_string()
    };
    let with = |id: &str, path: String, pixels: &str| {
        let mut r = record(id);
        r.path = path;
        r.pixel_hash = Some(pixels.into());
        r
    };
    let store = open(&dir.path().join("index"));
    store.upsert(&with("a", file("a.jpg"), "pa"), &unit(&[1.0, 0.0, 0.0])).unwrap();
    store.upsert(&with("b", file("b.jpg"), "pb"), &unit(&[0.0, 1.0, 0.0])).unwrap();
    store.upsert(&with("b2", file("b-edited.jpg"), "pb"), &unit(&[0.0, 1.0, 0.001])).unwrap();
    store.upsert(&with("c", file("c.jpg"), "pc"), &unit(&[0.0, 0.0, 1.0])).unwrap();
    store.upsert(&with("d", file("d.jpg"), "pd"), &unit(&[0.0, 0.05, 1.0])).unwrap();
    store.add_alias("a", &file("a-copy.jpg")).unwrap();
    store.add_alias("a", &dir.path().join("gone.jpg").display().to_string()).unwrap();
    let mut aliases = store.aliases("a").unwrap();
    aliases.sort();
    assert_eq!(aliases, [file("a-copy.jpg"), dir.path().join("gone.jpg").display().to_string()], "aliases are kept as recorded");
    assert!(store.aliases("c").unwrap().is_empty());
    let groups = store.duplicates(0.99).unwrap();
    let summary: Vec<(DuplicateKind, Vec<&str>)> =
        groups.iter().map(|g| (g.kind, g.members.iter().map(|(_, p)| p.rsplit('/').next().unwrap()).collect())).collect();
    assert_eq!(
        summary,
        [
            (DuplicateKind::Identical, vec!["a-copy.jpg", "a.jpg"]),
            (DuplicateKind::Identical, vec!["b-edited.jpg", "b.jpg"]),
            (DuplicateKind::Similar, vec!["c.jpg", "d.jpg"]),
        ],
        "copies at two paths and the same pixels are identical; close embeddings are similar; a copy whose file is gone is not"
    );
    assert!(groups[2].min_score >= 0.99 && groups[2].min_score < 1.0);
    // Writing other content at a copy's path ends it being a copy.
    store.upsert(&with("e", dir.path().join("a-copy.jpg").display().to_string(), "pe"), &unit(&[1.0, 1.0, 1.0])).unwrap();
    assert_eq!(store.get("a").unwrap().map(|r| r.id), Some("a".into()), "the original stays");
    assert_eq!(store.duplicates(0.99).unwrap().iter().filter(|g| g.kind == DuplicateKind::Identical).count(), 1);
    store.delete("b2").unwrap();
    assert!(store.duplicates(0.99).unwrap().iter().all(|g| g.kind == DuplicateKind::Similar));
}

/// 200 images: every tenth from a Canon in /photos/canon/, dated one day apart; the rest
/// undated, in /photos/other/, from an iPhone.
fn library(store: &dyn VectorStore) {
    let items: Vec<(ImageRecord, Vec<f32>)> = (0..200)
        .map(|i| {
            let mut r = record(&format!("i{i:03}"));
            let canon = i % 10 == 0;
            r.path = format!("/photos/{}/{i:03}.jpg", if canon { "canon" } else { "other" });
            r.photo.camera = Some(Camera {
                make: Some(if canon { "Canon" } else { "Apple" }.into()),
                model: Some(if canon { "EOS 5D" } else { "iPhone 12" }.into()),
            });
            if canon {
                r.photo.taken_at = TakenAt::parse(&format!("2019-01-{:02}T12:00:00", 1 + i / 10));
                r.photo.location = Some(Location { lat: 48.85, lon: 2.35 + (i as f64) * 0.001 });
            }
            r.format = if i % 20 == 0 { "png".into() } else { "jpeg".into() };
            // The Canon photos point away from the query, so an unfiltered top-k holds none.
            (r, unit(&[if canon { -1.0 } else { 1.0 }, (i as f32) / 100.0]))
        })
        .collect();
    store.upsert_many(&items).unwrap();
}

fn ids(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.record.id.as_str()).collect()
}

fn filtered_search_is_exact_even_when_few_match(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    library(store.as_ref());
    let query = unit(&[1.0, 0.0]);
    let search = |filter: &Filter, limit: usize| {
        store.search_page(&SearchQuery { vector: &query, filter, sort: SortBy::Relevance, offset: 0, limit, exact: false }).unwrap()
    };
    let canon = Filter { cameras: vec!["canon".into()], ..Filter::default() };
    let page = search(&canon, 15);
    assert_eq!(page.items.len(), 15, "all 20 Canon photos are candidates, not a post-filtered few");
    assert!(page.more);
    assert!(page.items.iter().all(|h| h.record.path.starts_with("/photos/canon/")));
    assert!(page.items.windows(2).all(|w| w[0].score >= w[1].score));
    let in_folder = Filter { folders: vec!["/photos/canon".into()], formats: vec!["png".into()], ..Filter::default() };
    assert_eq!(search(&in_folder, 50).items.len(), 10, "folder and format together");
    assert!(search(&Filter { folders: vec!["/photos/can".into()], ..Filter::default() }, 50).items.is_empty(), "whole path components");
    let near = Filter { near: Some(Near { center: Location { lat: 48.85, lon: 2.35 }, radius_km: 5.0 }), ..Filter::default() };
    // Photo i lies 0.001·i degrees of longitude east, 73 m·i at 48.85° N: i <= 60 is within 5 km.
    assert_eq!(search(&near, 50).items.len(), 7);
    let dated = Filter {
        taken_after: Some(datetime("2019-01-05T00:00:00Z")),
        taken_before: Some(datetime("2019-01-07T12:00:00Z")),
        ..Filter::default()
    };
    assert_eq!(ids(&search(&dated, 50).items).len(), 3, "inclusive bounds; undated images never match");
    let floor = Filter { min_score: Some(0.99), ..Filter::default() };
    assert!(search(&floor, 200).items.iter().all(|h| h.score >= 0.99));
    assert!(!search(&floor, 200).more);
}

fn datetime(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

fn date_order_pages_are_stable_and_undated_images_come_last(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path());
    library(store.as_ref());
    let query = unit(&[1.0, 0.0]);
    let all = Filter::default();
    let page =
        |sort, offset| store.search_page(&SearchQuery { vector: &query, filter: &all, sort, offset, limit: 15, exact: false }).unwrap();
    let oldest = page(SortBy::TakenAsc, 0);
    assert_eq!(ids(&oldest.items)[..3], ["i000", "i010", "i020"]);
    let newest = page(SortBy::TakenDesc, 0);
    assert_eq!(ids(&newest.items)[..2], ["i190", "i180"]);
    assert!(newest.items[..15].iter().all(|h| h.record.photo.taken_at.is_some()));
    let second = page(SortBy::TakenDesc, 15);
    assert!(second.items[5..].iter().all(|h| h.record.photo.taken_at.is_none()), "undated after dated");
    let mut seen: Vec<String> = Vec::new();
    for offset in (0..200).step_by(15) {
        let p = page(SortBy::TakenAsc, offset);
        assert_eq!(p.more, offset + 15 < 200);
        seen.extend(p.items.iter().map(|h| h.record.id.clone()));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (200, 200), "pages neither repeat nor skip");
    let listed = store.list_page(&Filter { cameras: vec!["iphone 12".into()], ..Filter::default() }, SortBy::IngestedAsc, 0, 5).unwrap();
    assert_eq!(listed.total, Some(180));
    assert_eq!(listed.items.len(), 5);
    assert!(listed.more);
}

fn metadata_set_later_is_filtered_on_and_survives_reopen(open: &impl Fn(&Path) -> Box<dyn VectorStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path());
        let mut old = record("old");
        old.photo_read = false;
        store.upsert(&old, &unit(&[1.0, 0.0])).unwrap();
        assert_eq!(store.unread_photo_ids().unwrap(), ["old"]);
        let photo = PhotoMeta { camera: Some(Camera { make: Some("Nikon".into()), model: None }), ..PhotoMeta::default() };
        assert!(store.set_photo("old", &photo).unwrap());
        assert!(!store.set_photo("missing", &photo).unwrap());
    }
    let store = open(dir.path());
    assert!(store.unread_photo_ids().unwrap().is_empty());
    let nikon = Filter { cameras: vec!["nikon".into()], ..Filter::default() };
    let found = store
        .search_page(&SearchQuery {
            vector: &unit(&[1.0, 0.0]),
            filter: &nikon,
            sort: SortBy::Relevance,
            offset: 0,
            limit: 5,
            exact: false,
        })
        .unwrap();
    assert_eq!(ids(&found.items), ["old"]);
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
