//! Cutting one drained batch of variable-length inputs into model calls.
//!
//! A model call pads every input to the longest one in it, so a call over texts of 9 and 30
//! tokens does the work of two 30-token texts. Sorting by length and cutting the sorted run where
//! the padding saved is worth more than the fixed cost of one more call keeps the padded work
//! close to the real work. Pure arithmetic on lengths: knows nothing of tokens, models or threads.

use std::ops::Range;

/// Cuts inputs whose lengths are `sorted_lengths` (ascending) into contiguous groups, one model
/// call each, minimising the estimated cost of all calls: for each call `call_overhead` plus its
/// inputs × its longest length, all in length units (for text: token positions).
///
/// Returns the groups' index ranges in order; they cover every input once. With nothing to gain
/// from cutting, that is one range over everything.
pub fn plan(sorted_lengths: &[usize], call_overhead: usize) -> Vec<Range<usize>> {
    debug_assert!(sorted_lengths.windows(2).all(|w| w[0] <= w[1]), "lengths must be sorted");
    let n = sorted_lengths.len();
    if n == 0 {
        return Vec::new();
    }
    // best[j]: cheapest plan for the first j inputs; start[j]: where its last group starts.
    // The last group of inputs i..j is padded to sorted_lengths[j - 1], its longest. Quadratic
    // in the batch size, which is at most a few dozen.
    let mut best = vec![0usize; n + 1];
    let mut start = vec![0usize; n + 1];
    for j in 1..=n {
        let longest = sorted_lengths[j - 1];
        let mut cheapest = usize::MAX;
        for (i, &before) in best[..j].iter().enumerate() {
            let cost = before.saturating_add(call_overhead).saturating_add((j - i).saturating_mul(longest));
            // Strictly cheaper only: on a tie the earliest start wins, i.e. fewer, larger calls.
            if cost < cheapest {
                cheapest = cost;
                start[j] = i;
            }
        }
        best[j] = cheapest;
    }
    let mut groups = Vec::new();
    let mut end = n;
    while end > 0 {
        groups.push(start[end]..end);
        end = start[end];
    }
    groups.reverse();
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(lengths: &[usize], groups: &[Range<usize>], overhead: usize) -> usize {
        groups.iter().map(|g| overhead + g.len() * lengths[g.end - 1]).sum()
    }

    #[test]
    fn equal_lengths_stay_one_call() {
        assert_eq!(plan(&[14; 20], 12), vec![0..20]);
    }

    #[test]
    fn a_few_long_texts_get_their_own_call() {
        // 18 captions of 10-14 tokens and two of 40: one call would pad all twenty to 40.
        let mut lengths: Vec<usize> = (0..18).map(|i| 10 + i % 5).collect();
        lengths.extend([40, 40]);
        lengths.sort();
        let groups = plan(&lengths, 12);
        assert_eq!(groups.last(), Some(&(18..20)), "{groups:?}");
        assert!(cost(&lengths, &groups, 12) < 12 + 20 * 40);
    }

    #[test]
    fn a_large_call_overhead_keeps_one_call() {
        let lengths = [8, 9, 10, 20];
        assert_eq!(plan(&lengths, 1000), vec![0..4]);
        // Free calls: every distinct length runs alone, with no padding at all.
        assert_eq!(plan(&lengths, 0), vec![0..1, 1..2, 2..3, 3..4]);
    }

    #[test]
    fn the_plan_is_the_cheapest_of_all_cuts() {
        // Brute force over every way to cut 10 sorted lengths (2^9 cut sets).
        let lengths = [5, 7, 7, 9, 13, 14, 14, 22, 30, 31];
        for overhead in [0, 3, 12, 40, 200] {
            let groups = plan(&lengths, overhead);
            assert_eq!(groups.iter().map(Range::len).sum::<usize>(), lengths.len());
            assert!(groups.windows(2).all(|w| w[0].end == w[1].start) && groups[0].start == 0);
            let brute = (0u32..1 << 9)
                .map(|cuts| {
                    let mut gs = Vec::new();
                    let mut begin = 0;
                    for k in 0..9 {
                        if cuts & (1 << k) != 0 {
                            gs.push(begin..k + 1);
                            begin = k + 1;
                        }
                    }
                    gs.push(begin..10);
                    cost(&lengths, &gs, overhead)
                })
                .min()
                .unwrap();
            assert_eq!(cost(&lengths, &groups, overhead), brute, "overhead {overhead}: {groups:?}");
        }
    }

    #[test]
    fn nothing_to_plan() {
        assert!(plan(&[], 12).is_empty());
    }
}
