//! Grouping duplicates, the same way for every backend: a backend supplies what it knows (each
//! image's paths, pixel hash, and the pairs at or above a cosine threshold) and this module
//! forms the groups. `identical` groups are one picture at several paths (the same bytes, or the
//! same pixels after decoding); `similar` groups are distinct pictures whose embeddings are
//! close (re-encodes, resizes, burst shots), kept apart from the identical ones.

use std::collections::{BTreeMap, HashMap};

use super::ImageRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKind {
    Identical,
    Similar,
}

/// One group: its members, one entry per path, and the lowest similarity that joined them.
#[derive(Debug, Clone, PartialEq)]
pub struct DuplicateGroup {
    pub kind: DuplicateKind,
    pub members: Vec<(ImageRecord, String)>,
    pub min_score: f32,
}

/// What a backend knows about one image for duplicate finding.
#[derive(Debug, Clone)]
pub struct Known {
    pub record: ImageRecord,
    /// Other paths the same bytes were seen at (existing files only).
    pub aliases: Vec<String>,
}

struct UnionFind {
    parent: Vec<usize>,
    min_score: Vec<f32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self { parent: (0..n).collect(), min_score: vec![f32::INFINITY; n] }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn join(&mut self, a: usize, b: usize, score: f32) {
        let (ra, rb) = (self.find(a), self.find(b));
        let low = score.min(self.min_score[ra]).min(self.min_score[rb]);
        if ra != rb {
            self.parent[rb] = ra;
        }
        self.min_score[ra] = low;
    }
}

/// Forms the groups. `pairs` are `(index, index, cosine)` into `images`, at or above the
/// threshold. Groups are ordered by their first member's path, members by path.
pub fn group(images: &[Known], pairs: &[(usize, usize, f32)]) -> Vec<DuplicateGroup> {
    let n = images.len();
    // Identical: the same pixels (same bytes always have the same pixels).
    let mut same = UnionFind::new(n);
    let mut by_pixels: HashMap<&str, usize> = HashMap::new();
    for (i, known) in images.iter().enumerate() {
        if let Some(hash) = known.record.pixel_hash.as_deref() {
            match by_pixels.get(hash) {
                Some(&first) => same.join(first, i, 1.0),
                None => {
                    by_pixels.insert(hash, i);
                }
            }
        }
    }
    let mut identical: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let root = same.find(i);
        identical.entry(root).or_default().push(i);
    }
    let mut groups = Vec::new();
    for members in identical.values() {
        let entries: Vec<(ImageRecord, String)> = members
            .iter()
            .flat_map(|&i| {
                let record = &images[i].record;
                std::iter::once(record.path.clone()).chain(images[i].aliases.iter().cloned()).map(move |p| (record.clone(), p))
            })
            .collect();
        if entries.len() > 1 {
            groups.push(DuplicateGroup { kind: DuplicateKind::Identical, members: entries, min_score: 1.0 });
        }
    }
    // Similar: close embeddings between pictures that are not the same picture.
    let mut close = UnionFind::new(n);
    for &(a, b, score) in pairs {
        let (ra, rb) = (same.find(a), same.find(b));
        if ra != rb {
            close.join(ra, rb, score);
        }
    }
    let mut similar: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, root) in (0..n).map(|i| (i, same.find(i))).filter(|(i, root)| i == root) {
        similar.entry(close.find(root)).or_default().push(i);
    }
    for (root, members) in similar {
        if members.len() > 1 {
            let entries = members.iter().map(|&i| (images[i].record.clone(), images[i].record.path.clone())).collect();
            groups.push(DuplicateGroup { kind: DuplicateKind::Similar, members: entries, min_score: close.min_score[root] });
        }
    }
    for group in &mut groups {
        group.members.sort_by(|a, b| a.1.cmp(&b.1));
    }
    groups.sort_by(|a, b| (a.kind == DuplicateKind::Similar, &a.members[0].1).cmp(&(b.kind == DuplicateKind::Similar, &b.members[0].1)));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance_record;

    fn known(id: &str, pixels: &str, aliases: &[&str]) -> Known {
        let mut record = conformance_record(id);
        record.pixel_hash = Some(pixels.into());
        Known { record, aliases: aliases.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn copies_re_encodes_and_near_shots_form_separate_kinds() {
        let images = vec![
            known("a", "p1", &["/photos/copy-of-a.jpg"]), // same bytes at two paths
            known("b", "p2", &[]),
            known("c", "p2", &[]), // other bytes, same pixels as b (metadata edit)
            known("d", "p3", &[]),
            known("e", "p4", &[]),
        ];
        // b~d close, d~e close; a~c close but c is b's twin, so it joins b's node.
        let pairs = [(1, 3, 0.97), (3, 4, 0.96), (0, 2, 0.99)];
        let groups = group(&images, &pairs);
        let kinds: Vec<_> = groups.iter().map(|g| (g.kind, g.members.len())).collect();
        assert_eq!(kinds, [(DuplicateKind::Identical, 2), (DuplicateKind::Identical, 2), (DuplicateKind::Similar, 4)]);
        let similar = &groups[2];
        assert!((similar.min_score - 0.96).abs() < 1e-6);
        assert_eq!(similar.members.iter().filter(|(r, _)| r.id == "b" || r.id == "c").count(), 1, "a picture counts once");
    }
}
