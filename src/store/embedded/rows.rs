//! What the embedded store keeps in memory per image besides the approximate index: its id and
//! the facets filters and sorting read, in a slot numbered by the image's key. Keys are stable
//! (persisted in the database) so the saved index, keyed the same way, stays valid across
//! restarts; a freed key is reused by the next new image.
//!
//! Laid out for a million images and more, where each byte here is a megabyte of the server's
//! memory (BENCHMARKS.md, "The embedded store at 1M"): a slot holds its id inline and its texts
//! as indices, the id -> key table holds only the 4-byte key (the id is read back from the slot),
//! and each folder, camera and format text is stored once.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use compact_str::CompactString;
use hashbrown::HashTable;
use indexmap::IndexSet;

use super::super::filter::Facets;
use super::super::Location;

/// One image. Options are flags, not `Option`s, which would double the size of each field.
struct Slot {
    /// Inline up to 24 bytes (an image id is 16), on the heap beyond.
    id: CompactString,
    taken: i64,
    ingested: i64,
    /// Latitude and longitude, when `HAS_LOCATION`.
    location: [f64; 2],
    /// Indices into `Rows::texts`.
    camera: u32,
    folder: u32,
    format: u32,
    flags: u8,
}

const HAS_TAKEN: u8 = 1;
const HAS_LOCATION: u8 = 2;
const PHOTO_READ: u8 = 4;

/// An image as the rest of the store reads it, borrowed from the rows.
pub struct Row<'a> {
    pub id: &'a str,
    pub facets: Facets<&'a str>,
}

#[derive(Default)]
pub struct Rows {
    slots: Vec<Option<Slot>>,
    /// The key of each image held, found by the hash of the id in its slot.
    keys: HashTable<u32>,
    hasher: RandomState,
    free: Vec<u64>,
    /// Folders, cameras and formats repeat across images: each stored once, named by its index.
    texts: IndexSet<Box<str>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Bytes held, from sizes and capacities (allocator rounding not included).
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        let heap_ids: usize = self.slots.iter().flatten().filter(|s| s.id.is_heap_allocated()).map(|s| s.id.capacity()).sum();
        size_of::<Option<Slot>>() * self.slots.capacity()
            + self.keys.allocation_size()
            + heap_ids
            + size_of::<u64>() * self.free.capacity()
            + self.texts.iter().map(|t| t.len() + size_of::<Box<str>>() + size_of::<usize>() * 2).sum::<usize>()
    }

    pub fn key(&self, id: &str) -> Option<u64> {
        self.find(self.hasher.hash_one(id), id)
    }

    pub fn slot(&self, key: u64) -> Option<Row<'_>> {
        self.slots.get(usize::try_from(key).ok()?)?.as_ref().map(|slot| self.row(slot))
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
        Rows { slots: Vec::with_capacity(images), keys: HashTable::with_capacity(images), ..Rows::default() }
    }

    /// One row read back at start. Rows are stored as they arrive, so each image's temporaries
    /// (its record, its facet texts) are freed before the next image's and their memory reused;
    /// collecting every row first left a hole per image between the parts that stayed resident
    /// (127 MB of RSS at 1M images, BENCHMARKS.md).
    pub fn load(&mut self, key: u64, id: &str, facets: Facets) {
        let index = key as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.place(key, id, facets);
    }

    /// Ends loading: keys between the loaded ones (freed keys) become free.
    pub fn finish_loading(&mut self) {
        self.free = (0..self.slots.len() as u64).rev().filter(|&k| self.slots[k as usize].is_none()).collect();
    }

    /// Puts `id` at `key` (from [`Rows::allocate`], or the key it already holds).
    pub fn place(&mut self, key: u64, id: &str, facets: Facets) {
        let hash = self.hasher.hash_one(id);
        let held = self.find(hash, id);
        if let Some(other) = held.filter(|&held| held != key) {
            self.remove_key(other, hash);
        }
        let slot = self.compact(id, &facets);
        self.slots[key as usize] = Some(slot);
        if held != Some(key) {
            let Rows { slots, keys, hasher, .. } = self;
            let hash_of = |key: &u32| hasher.hash_one(slots[*key as usize].as_ref().map_or("", |slot| slot.id.as_str()));
            keys.insert_unique(hash, key as u32, hash_of);
        }
    }

    pub fn set_facets(&mut self, id: &str, facets: Facets) -> bool {
        let Some(key) = self.key(id) else { return false };
        let slot = self.compact(id, &facets);
        self.slots[key as usize] = Some(slot);
        true
    }

    /// Frees the key of `id` and returns it.
    pub fn remove(&mut self, id: &str) -> Option<u64> {
        let hash = self.hasher.hash_one(id);
        let key = self.find(hash, id)?;
        self.remove_key(key, hash);
        Some(key)
    }

    /// Every image as (key, row).
    pub fn iter(&self) -> impl Iterator<Item = (u64, Row<'_>)> {
        self.slots.iter().enumerate().filter_map(|(key, slot)| Some((key as u64, self.row(slot.as_ref()?))))
    }

    /// The key of `id`, whose hash is `hash`.
    fn find(&self, hash: u64, id: &str) -> Option<u64> {
        let holds_id = |key: &u32| self.slots.get(*key as usize).and_then(Option::as_ref).is_some_and(|slot| slot.id == id);
        self.keys.find(hash, holds_id).map(|&key| u64::from(key))
    }

    /// Frees `key`, held by an id whose hash is `hash`.
    fn remove_key(&mut self, key: u64, hash: u64) {
        if let Ok(entry) = self.keys.find_entry(hash, |&held| u64::from(held) == key) {
            entry.remove();
        }
        self.slots[key as usize] = None;
        self.free.push(key);
    }

    fn compact(&mut self, id: &str, facets: &Facets) -> Slot {
        let flag = |set: bool, flag: u8| if set { flag } else { 0 };
        let flags =
            flag(facets.taken.is_some(), HAS_TAKEN) | flag(facets.location.is_some(), HAS_LOCATION) | flag(facets.photo_read, PHOTO_READ);
        Slot {
            id: id.into(),
            taken: facets.taken.unwrap_or_default(),
            ingested: facets.ingested,
            location: facets.location.map_or([0.0; 2], |l| [l.lat, l.lon]),
            camera: self.intern(&facets.camera),
            folder: self.intern(&facets.folder),
            format: self.intern(&facets.format),
            flags,
        }
    }

    fn intern(&mut self, text: &str) -> u32 {
        let index = match self.texts.get_index_of(text) {
            Some(index) => index,
            None => self.texts.insert_full(text.into()).0,
        };
        // Distinct folders, cameras and formats, not images: far below 2^32.
        index as u32
    }

    fn text(&self, index: u32) -> &str {
        self.texts.get_index(index as usize).map_or("", |text| text)
    }

    fn row<'a>(&'a self, slot: &'a Slot) -> Row<'a> {
        let has = |flag: u8| slot.flags & flag != 0;
        Row {
            id: &slot.id,
            facets: Facets {
                taken: has(HAS_TAKEN).then_some(slot.taken),
                ingested: slot.ingested,
                camera: self.text(slot.camera),
                folder: self.text(slot.folder),
                format: self.text(slot.format),
                location: has(HAS_LOCATION).then_some(Location { lat: slot.location[0], lon: slot.location[1] }),
                photo_read: has(PHOTO_READ),
            },
        }
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
        assert_eq!(rows.slot(4).map(|s| s.id), Some("e"));
        assert_eq!(rows.slot(0).map(|s| s.facets.folder), Some("/photos/2024"));
        // Three folders and formats over three images: "", "jpeg" and two folders.
        assert_eq!(rows.texts.len(), 4, "equal texts are stored once");
        // Freed keys (1 and 3) are handed out before new ones, lowest first.
        assert_eq!(rows.allocate(), 1);
        assert_eq!(rows.allocate(), 3);
        assert_eq!(rows.allocate(), 5);
    }

    #[test]
    fn rows_give_back_every_facet_and_follow_places_removals_and_long_ids() {
        let mut rows = Rows::default();
        let full = Facets {
            taken: Some(-5),
            ingested: 1_700_000_000_000_000_000,
            camera: "canon eos r5".into(),
            folder: "/photos/trip".into(),
            format: "heic".into(),
            location: Some(Location { lat: 48.858_37, lon: 2.294_481 }),
            photo_read: true,
        };
        let empty = Facets { taken: None, location: None, photo_read: false, ..facets("/x") };
        let long_id = "an-id-longer-than-twenty-four-bytes-kept-on-the-heap";
        for (id, facets) in [("a", &full), (long_id, &empty)] {
            let key = rows.allocate();
            rows.place(key, id, facets.clone());
        }
        let owned = |key| rows.slot(key).map(|row| (row.id.to_string(), row.facets.camera.to_string(), row.facets.taken));
        assert_eq!(owned(0), Some(("a".into(), "canon eos r5".into(), Some(-5))));
        let read = rows.slot(0).map(|row| row.facets);
        assert_eq!(
            read.as_ref().map(|f| (f.ingested, f.location, f.photo_read, f.folder, f.format)),
            Some((full.ingested, full.location, true, "/photos/trip", "heic"))
        );
        let read = rows.slot(1).map(|row| row.facets);
        assert_eq!(read.as_ref().map(|f| (f.taken, f.location, f.photo_read)), Some((None, None, false)));
        assert_eq!(rows.key(long_id), Some(1));

        // Placing the same id again at its key replaces its facets, not the image.
        rows.place(0, "a", empty.clone());
        assert_eq!((rows.len(), rows.slot(0).map(|row| row.facets.folder)), (2, Some("/x")));
        assert!(rows.set_facets(long_id, full.clone()));
        assert_eq!(rows.slot(1).map(|row| row.facets.camera), Some("canon eos r5"));

        assert_eq!(rows.remove("a"), Some(0));
        assert_eq!((rows.key("a"), rows.slot(0).is_none(), rows.len()), (None, true, 1));
        assert_eq!(rows.remove("a"), None);
        assert!(!rows.set_facets("a", full));
        // Many more images: the table grows (rehashing from the ids in the slots) and finds all.
        for i in 0..10_000 {
            let key = rows.allocate();
            rows.place(key, &format!("{i:016x}"), facets("/y"));
        }
        assert!(
            (0..10_000).all(|i| rows.key(&format!("{i:016x}")).is_some_and(|k| rows.slot(k).is_some_and(|r| r.id == format!("{i:016x}"))))
        );
        assert_eq!((rows.len(), rows.key(long_id)), (10_001, Some(1)));
    }
}
