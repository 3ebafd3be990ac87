//! A whole index read in id order, a page at a time ([`VectorStore::export_after`]): for work
//! that walks every image (a re-embed's listing, its catch-up merge of two generations).

use super::{ImageRecord, StoreError, VectorStore};

/// Every image of `store` with its vector, in id order, read `page` at a time as it is consumed.
pub fn exported(store: &dyn VectorStore, page: usize) -> Exported<'_> {
    Exported { store, page: page.max(1), after: None, buffered: Vec::new().into_iter(), done: false }
}

pub struct Exported<'a> {
    store: &'a dyn VectorStore,
    page: usize,
    after: Option<String>,
    buffered: std::vec::IntoIter<(ImageRecord, Vec<f32>)>,
    done: bool,
}

impl Iterator for Exported<'_> {
    type Item = Result<(ImageRecord, Vec<f32>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.buffered.next() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        match self.store.export_after(self.after.as_deref(), self.page) {
            Ok(page) => {
                // A short page is the last: no need to ask again for an empty one.
                self.done = page.len() < self.page;
                self.after = page.last().map(|(record, _)| record.id.clone()).or(self.after.take());
                self.buffered = page.into_iter();
                self.buffered.next().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EmbeddedStore, StoreOptions};

    #[test]
    fn reads_every_image_once_in_id_order_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), StoreOptions::default()).unwrap();
        store.bind_model("m", 2).unwrap();
        let ids: Vec<String> = (0..23).map(|i| format!("{:04}", (i * 7) % 23)).collect();
        for id in &ids {
            store.upsert(&crate::store::conformance::record(id), &[1.0, 0.0]).unwrap();
        }
        for page in [1, 5, 23, 100] {
            let got: Vec<String> = exported(&store, page).map(|item| item.unwrap().0.id).collect();
            let mut want = ids.clone();
            want.sort();
            assert_eq!(got, want, "page {page}");
        }
    }
}
