//! RFC 9162 Merkle tree hashing: compact frontier, inclusion and consistency proofs.

use ring::digest::{Context, SHA256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

fn finish(ctx: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(data);
    finish(ctx)
}

/// Leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0]);
    ctx.update(data);
    finish(ctx)
}

/// Interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[1]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves: O(log n) memory.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// Subtree roots, largest (leftmost) first; one per set bit of `size`.
    stack: Vec<Hash>,
}

impl Frontier {
    /// Number of leaves added.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        // Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
        while size & 1 == 1 {
            if let Some(left) = self.stack.pop() {
                node = node_hash(&left, &node);
            }
            size >>= 1;
        }
        self.stack.push(node);
        self.size += 1;
    }

    /// The Merkle tree hash of the leaves so far (SHA-256 of "" for the empty tree).
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        match iter.next() {
            None => sha256(b""),
            Some(first) => iter.fold(*first, |acc, left| node_hash(left, &acc)),
        }
    }
}

fn split(n: usize) -> usize {
    // Largest power of two strictly smaller than n (n >= 2).
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over a list of leaf hashes (RFC 9162 §2.1.1).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => sha256(b""),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Inclusion proof of leaf `index` in the tree of `leaves` (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut p = inclusion_proof(&leaves[..k], index);
        p.push(root_of(&leaves[k..]));
        p
    } else {
        let mut p = inclusion_proof(&leaves[k..], index - k);
        p.push(root_of(&leaves[..k]));
        p
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &r == root
}

/// Consistency proof between the first `m` leaves and all of `leaves` (RFC 9162 §2.1.4.1).
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Vec<Hash> {
    if m == 0 || m >= leaves.len() {
        return Vec::new();
    }
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![root_of(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &leaves[..k], complete);
        p.push(root_of(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(root_of(&leaves[..k]));
        p
    }
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2).
pub fn verify_consistency(m: u64, n: u64, root_m: &Hash, root_n: &Hash, proof: &[Hash]) -> bool {
    if m == 0 || m > n {
        return false;
    }
    if m == n {
        return proof.is_empty() && root_m == root_n;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if m.is_power_of_two() {
        path.insert(0, *root_m);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (m - 1, n - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && &fr == root_m && &sr == root_n
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn known_vectors() {
        // RFC 6962 reference vectors (certificate-transparency test data).
        let data: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut f = Frontier::default();
        for h in &hashes {
            f.push(*h);
        }
        assert_eq!(
            hex::encode(f.root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
        );
        assert_eq!(
            hex::encode(root_of(&hashes[..1])),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hex::encode(Frontier::default().root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn frontier_matches_recursive_root() {
        let all = leaves(70);
        let mut f = Frontier::default();
        for (i, h) in all.iter().enumerate() {
            f.push(*h);
            assert_eq!(f.root(), root_of(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn inclusion_proofs_brute_force() {
        for n in 1..=33 {
            let all = leaves(n);
            let root = root_of(&all);
            for i in 0..n {
                let proof = inclusion_proof(&all, i);
                assert!(verify_inclusion(&all[i], i as u64, n as u64, &proof, &root));
                // Wrong leaf, wrong index, wrong size and a flipped proof byte all fail.
                assert!(!verify_inclusion(
                    &leaf_hash(b"x"),
                    i as u64,
                    n as u64,
                    &proof,
                    &root
                ));
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(!verify_inclusion(
                        &all[i], j as u64, n as u64, &proof, &root
                    ));
                    let mut bad = proof.clone();
                    bad[0][0] ^= 1;
                    assert!(!verify_inclusion(&all[i], i as u64, n as u64, &bad, &root));
                }
            }
        }
    }

    #[test]
    fn consistency_proofs_brute_force() {
        for n in 1..=33 {
            let all = leaves(n);
            let root_n = root_of(&all);
            for m in 1..=n {
                let root_m = root_of(&all[..m]);
                let proof = consistency_proof(&all, m);
                assert!(
                    verify_consistency(m as u64, n as u64, &root_m, &root_n, &proof),
                    "{m} {n}"
                );
                let wrong = leaf_hash(b"wrong");
                assert!(!verify_consistency(
                    m as u64, n as u64, &wrong, &root_n, &proof
                ));
                if m < n {
                    assert!(!verify_consistency(
                        m as u64, n as u64, &root_m, &wrong, &proof
                    ));
                }
            }
        }
    }
}
