//! Shards: one closure split among several derivations, each writing the
//! NARs and narinfos of its part, merged afterwards by `make-binary-cache
//! merge` (see [`crate::commands::merge`]).
//!
//! Every shard derivation gets the whole closure (from
//! `exportReferencesGraph`) and its number, and computes the same partition
//! of it, so nobody needs to know the closure at evaluation time. The
//! partition is a pure function of the store paths and their NarSizes:
//! largest NAR first (ties by store path), each to the shard with the least
//! NAR bytes so far (ties to the lowest shard number). NarSize stands for
//! the work: every byte is read, hashed and compressed once.
//!
//! A shard's cache is deliberately partial: its paths' references may be
//! written by other shards. The closure is still checked complete as a
//! whole ([`Part::elsewhere`]), so a missing reference fails every shard
//! and not only the merge.
//!
//! ```
//! use make_binary_cache::input::shard::partition;
//! // Sizes 5, 4, 3, 3: 5 → shard 0, 4 → shard 1, then 3 ("c") → shard 1 (4 < 5),
//! // then 3 ("d") → shard 0 (5 < 7).
//! let parts = partition(&[("a", 5), ("b", 4), ("c", 3), ("d", 3)], 2);
//! assert_eq!(parts, [0, 1, 1, 0]);
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use anyhow::{Result, bail};

use crate::format::store_path::StorePath;

/// Which shard a run writes: `index` of `count`, counting from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// Checks the numbers a derivation gave (`shard`, `shards`).
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 {
            bail!("`shards` must be at least 1, not 0");
        }
        if index >= count {
            bail!("`shard` must be below `shards` ({count}), counting from 0, not {index}");
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} of {}, counting from 0", self.index, self.count)
    }
}

/// The shard each of `items` (a key, such as a store path, and its size)
/// goes to, in the order of `items`: largest first, ties by key, each to the
/// least loaded shard, ties to the lowest number. The same items in any
/// order get the same shards. `count` is at least 1.
pub fn partition<K: Ord>(items: &[(K, u64)], count: usize) -> Vec<usize> {
    assert!(count >= 1, "at least one shard");
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| items[b].1.cmp(&items[a].1).then_with(|| items[a].0.cmp(&items[b].0)));
    // The least loaded shard, lowest number first among equals, on top.
    let mut loads: BinaryHeap<Reverse<(u128, usize)>> = (0..count).map(|i| Reverse((0, i))).collect();
    let mut shards = vec![0; items.len()];
    for i in order {
        let Reverse((load, shard)) = loads.pop().expect("count ≥ 1");
        shards[i] = shard;
        loads.push(Reverse((load + u128::from(items[i].1), shard)));
    }
    shards
}

/// A shard's part of a closure of `T`s (store paths with their facts).
#[derive(Debug)]
pub struct Part<T> {
    /// The store paths this shard writes.
    pub paths: Vec<T>,
    /// The rest of the closure, written by the other shards: references to
    /// them count as present.
    pub elsewhere: BTreeSet<StorePath>,
}

/// Splits `closure` and keeps `shard`'s part of it; `path_and_size` gives
/// each entry's store path and NarSize (generic, so that sharding knows
/// nothing of how the closure was read).
pub fn part<T>(closure: Vec<T>, shard: Shard, path_and_size: impl Fn(&T) -> (&StorePath, u64)) -> Part<T> {
    let items: Vec<(&StorePath, u64)> = closure.iter().map(&path_and_size).collect();
    let shards = partition(&items, shard.count);
    let (mut paths, mut elsewhere) = (Vec::new(), BTreeSet::new());
    for (info, n) in closure.into_iter().zip(shards) {
        if n == shard.index {
            paths.push(info);
        } else {
            elsewhere.insert(path_and_size(&info).0.clone());
        }
    }
    Part { paths, elsewhere }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_first_to_the_least_loaded_shard() {
        assert_eq!(partition(&[("a", 10), ("b", 1), ("c", 1), ("d", 1)], 2), [0, 1, 1, 1]);
        assert_eq!(partition(&[("a", 3), ("b", 3), ("c", 3)], 3), [0, 1, 2]);
        // Equal loads go to the lowest shard; the key breaks ties in size.
        assert_eq!(partition(&[("b", 2), ("a", 2)], 2), [1, 0]);
        assert_eq!(partition(&[("x", 7)], 4), [0]);
        assert!(partition::<&str>(&[], 3).is_empty());
        // More shards than paths: the rest stay empty.
        assert_eq!(partition(&[("a", 1), ("b", 1)], 5), [0, 1]);
        // One shard: everything.
        assert_eq!(partition(&[("a", 1), ("b", 9), ("c", 4)], 1), [0, 0, 0]);
        // Sizes summing past u64 do not overflow.
        assert_eq!(partition(&[("a", u64::MAX), ("b", u64::MAX), ("c", u64::MAX)], 2), [0, 1, 0]);
    }

    #[test]
    fn the_order_of_the_items_does_not_matter() {
        let items: Vec<(String, u64)> = (0..200).map(|i| (format!("p{i:03}"), (i * 7919 % 97) as u64)).collect();
        let of = |items: &[(String, u64)]| -> Vec<(String, usize)> {
            let mut v: Vec<_> =
                items.iter().zip(partition(items, 3)).map(|((key, _), shard)| (key.clone(), shard)).collect();
            v.sort();
            v
        };
        let mut reversed = items.clone();
        reversed.reverse();
        let mut rotated = items.clone();
        rotated.rotate_left(77);
        assert_eq!(of(&items), of(&reversed));
        assert_eq!(of(&items), of(&rotated));
    }

    #[test]
    fn parts_are_balanced_and_cover_everything_once() {
        let items: Vec<(u32, u64)> = (0..1000).map(|i| (i, u64::from(i * 7919 % 1013) + 1)).collect();
        for count in 1..=5 {
            let shards = partition(&items, count);
            let mut loads = vec![0u64; count];
            for ((_, size), shard) in items.iter().zip(&shards) {
                loads[*shard] += size;
            }
            // Greedy largest-first: no shard exceeds another by more than the largest item.
            let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            assert!(max - min <= 1013, "{count} shards: {loads:?}");
            assert_eq!(loads.iter().sum::<u64>(), items.iter().map(|(_, s)| s).sum::<u64>());
        }
    }

    #[test]
    fn shard_numbers_are_checked() {
        assert_eq!(Shard::new(1, 2).unwrap(), Shard { index: 1, count: 2 });
        assert!(Shard::new(0, 0).unwrap_err().to_string().contains("at least 1"));
        assert!(Shard::new(2, 2).unwrap_err().to_string().contains("below `shards` (2)"));
    }

    #[test]
    fn a_part_knows_what_the_other_shards_write() {
        let info =
            |name: &str, size: u64| (StorePath::parse("/nix/store", &format!("/nix/store/{name}")).unwrap(), size);
        let closure = || {
            vec![
                info("q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a", 100),
                info("y2grnhdvfn46jk5m3g13m90yzbj9scgb-b", 60),
                info("00000000000000000000000000000000-c", 50),
            ]
        };
        fn by(entry: &(StorePath, u64)) -> (&StorePath, u64) {
            (&entry.0, entry.1)
        }
        let first = part(closure(), Shard::new(0, 2).unwrap(), by);
        let second = part(closure(), Shard::new(1, 2).unwrap(), by);
        let names =
            |paths: &[(StorePath, u64)]| paths.iter().map(|(p, _)| p.base_name().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(&first.paths), ["q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a"]);
        assert_eq!(names(&second.paths), ["y2grnhdvfn46jk5m3g13m90yzbj9scgb-b", "00000000000000000000000000000000-c"]);
        assert_eq!(first.elsewhere.len(), 2);
        assert_eq!(
            second.elsewhere.iter().map(StorePath::base_name).collect::<Vec<_>>(),
            ["q8ihi865qxz3d5f9dmrdjfcmzjj4xwrr-a"]
        );
    }
}
