//! What the embedded store keeps in memory per image besides the approximate index: its id and
//! the facets filters and sorting read, in a slot numbered by the image's key. Keys are stable
//! (persisted in the database) so the saved index, keyed the same way, stays valid across
//! restarts; a freed key is reused by the next new image.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::super::filter::Facets;

pub struct Slot {
    /// Shared with the id -> key map, so each id is stored once.
    pub id: Arc<str>,
    pub facets: Facets,
}

#[derive(Default)]
pub struct Rows {
    slots: Vec<Option<Slot>>,
    keys: HashMap<Arc<str>, u64>,
    free: Vec<u64>,
    /// Folders, cameras and formats repeat across images: one copy of each.
    texts: HashSet<Arc<str>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held, from sizes and capacities (ids once, shared texts once; allocator rounding
    /// not included).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let arc_heap = |text: &Arc<str>| 2 * size_of::<usize>() + text.len();
        size_of::<Option<Slot>>() * self.slots.capacity()
            + (size_of::<(Arc<str>, u64)>() + 1) * self.keys.capacity()
            + self.keys.keys().map(arc_heap).sum::<usize>()
            + size_of::<u64>() * self.free.capacity()
            + self.texts.iter().map(|t| arc_heap(t) + size_of::<Arc<str>>() + 1).sum::<usize>()
    }

    pub fn key(&self, id: &str) -> Option<u64> {
        self.keys.get(id).copied()
    }

    pub fn slot(&self, key: u64) -> Option<&Slot> {
        self.slots.get(usize::try_from(key).ok()?)?.as_ref()
    }

    /// A key no image holds, not yet placed (give it back with [`Rows::release`] if unused).
    pub fn allocate(&mut self) -> u64 {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() as u64 - 1
        })
    }

    pub fn release(&mut self, key: u64) {
        if self.slot(key).is_none() {
            self.free.push(key);
        }
    }

    /// Room for `images` rows read back at start with [`Rows::load`].
    pub fn with_capacity(images: usize) -> Self {
        Rows { slots: Vec::with_capacity(images), keys: HashMap::with_capacity(images), ..Rows::default() }
    }

    /// One row read back at start. Each is interned as it arrives, so the per-image temporaries
    /// (the record, its facet texts) are freed before the next image's and their memory is
    /// reused; collecting every row first and sharing afterwards left a million small holes
    /// between the ids that stayed resident (127 MB of RSS at 1M images, BENCHMARKS.md).
    pub fn load(&mut self, key: u64, id: &str, facets: Facets) {
        let index = key as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        let facets = self.intern(facets);
        let id: Arc<str> = id.into();
        self.keys.insert(id.clone(), key);
        self.slots[index] = Some(Slot { id, facets });
    }

    /// Ends loading: keys between the loaded ones (freed keys) become free.
    pub fn finish_loading(&mut self) {
        self.free = (0..self.slots.len() as u64).rev().filter(|&k| self.slots[k as usize].is_none()).collect();
    }

    /// Puts `id` at `key` (from [`Rows::allocate`], or the key it already holds).
    pub fn place(&mut self, key: u64, id: &str, facets: Facets) {
        let facets = self.intern(facets);
        let id: Arc<str> = self.keys.get_key_value(id).map_or_else(|| id.into(), |(shared, _)| shared.clone());
        self.slots[key as usize] = Some(Slot { id: id.clone(), facets });
        self.keys.insert(id, key);
    }

    fn intern(&mut self, mut facets: Facets) -> Facets {
        for text in [&mut facets.camera, &mut facets.folder, &mut facets.format] {
            match self.texts.get(&**text) {
                Some(shared) => *text = shared.clone(),
                None => {
                    self.texts.insert(text.clone());
                }
            }
        }
        facets
    }

    pub fn set_facets(&mut self, id: &str, facets: Facets) -> bool {
        let Some(key) = self.key(id) else { return false };
        let facets = self.intern(facets);
        match self.slots.get_mut(key as usize).and_then(Option::as_mut) {
            Some(slot) => {
                slot.facets = facets;
                true
            }
            None => false,
        }
    }

    /// Frees the key of `id` and returns it.
    pub fn remove(&mut self, id: &str) -> Option<u64> {
        let key = self.keys.remove(id)?;
        self.slots[key as usize] = None;
        self.free.push(key);
        Some(key)
    }

    /// Every image as (key, slot).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Slot)> {
        self.slots.iter().enumerate().filter_map(|(key, slot)| Some((key as u64, slot.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facets(folder: &str) -> Facets {
        Facets {
            taken: None,
            ingested: 0,
            camera: "".into(),
            folder: folder.into(),
            format: "jpeg".into(),
            location: None,
            photo_read: true,
        }
    }

    #[test]
    fn rows_read_back_keep_their_keys_share_texts_and_reuse_the_gaps() {
        let mut rows = Rows::with_capacity(3);
        rows.load(4, "e", facets("/photos/2024"));
        rows.load(0, "a", facets("/photos/2024"));
        rows.load(2, "c", facets("/photos/2025"));
        rows.finish_loading();

        assert_eq!(rows.len(), 3);
        assert_eq!((rows.key("a"), rows.key("c"), rows.key("e"), rows.key("b")), (Some(0), Some(2), Some(4), None));
        assert_eq!(&*rows.slot(4).map(|s| s.id.clone()).unwrap_or_default(), "e");
        let folder = |key| rows.slot(key).map(|s| s.facets.folder.clone()).unwrap_or_default();
        assert!(Arc::ptr_eq(&folder(0), &folder(4)), "equal folders are stored once");
        // Freed keys (1 and 3) are handed out before new ones, lowest first.
        assert_eq!(rows.allocate(), 1);
        assert_eq!(rows.allocate(), 3);
        assert_eq!(rows.allocate(), 5);
    }
}
