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

    /// Rows read back at start: keys may have gaps (freed keys), which become free.
    pub fn from_entries(entries: Vec<(u64, Box<str>, Facets)>) -> Self {
        let size = entries.iter().map(|(k, _, _)| *k as usize + 1).max().unwrap_or(0);
        let mut rows = Rows { slots: Vec::with_capacity(size), keys: HashMap::with_capacity(entries.len()), ..Rows::default() };
        rows.slots.resize_with(size, || None);
        for (key, id, facets) in entries {
            let id: Arc<str> = id.into();
            let facets = rows.intern(facets);
            rows.keys.insert(id.clone(), key);
            rows.slots[key as usize] = Some(Slot { id, facets });
        }
        rows.free = (0..size as u64).rev().filter(|&k| rows.slots[k as usize].is_none()).collect();
        rows
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
