//! Sampling is data: greedy, or temperature with top-k/top-p, from a seeded generator, kept apart
//! from the network.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How to pick the next token from the model's scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 means greedy (always the most likely token).
    pub temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = all).
    pub top_p: f64,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::greedy()
    }
}

impl Sampling {
    pub fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }
}

/// A seeded sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Sampler {
        Sampler {
            sampling,
            rng: StdRng::seed_from_u64(sampling.seed),
        }
    }

    /// Picks a token among `allowed` (all when None) from raw logits. Returns the token and its
    /// probability under the untempered softmax restricted to `allowed`.
    pub fn pick(&mut self, logits: &[f32], allowed: Option<&[u32]>) -> (u32, f64) {
        let candidates: Vec<(u32, f32)> = match allowed {
            Some(ids) => ids
                .iter()
                .filter_map(|&i| logits.get(i as usize).map(|&l| (i, l)))
                .collect(),
            None => logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, l))
                .collect(),
        };
        if candidates.is_empty() {
            return (0, 0.0);
        }
        let max = candidates
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = candidates.iter().map(|c| f64::from(c.1 - max).exp()).sum();
        let prob = |l: f32| f64::from(l - max).exp() / z;
        let s = self.sampling;
        if s.temperature <= 0.0 {
            let best = candidates
                .iter()
                .copied()
                .fold(
                    (0u32, f32::NEG_INFINITY),
                    |a, c| if c.1 > a.1 { c } else { a },
                );
            return (best.0, prob(best.1));
        }
        let mut sorted = candidates.clone();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        if s.top_k > 0 {
            sorted.truncate(s.top_k);
        }
        let t = s.temperature;
        let weights: Vec<f64> = sorted
            .iter()
            .map(|c| (f64::from(c.1 - max) / t).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut keep = sorted.len();
        if s.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, w) in weights.iter().enumerate() {
                acc += w / total;
                if acc >= s.top_p {
                    keep = i + 1;
                    break;
                }
            }
        }
        let total: f64 = weights[..keep].iter().sum();
        let mut r = self.rng.gen::<f64>() * total;
        for (i, w) in weights[..keep].iter().enumerate() {
            r -= w;
            if r <= 0.0 {
                return (sorted[i].0, prob(sorted[i].1));
            }
        }
        let last = sorted[keep - 1];
        (last.0, prob(last.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_best_allowed() {
        let mut s = Sampler::new(Sampling::greedy());
        let logits = [0.0, 3.0, 1.0, 2.0];
        assert_eq!(s.pick(&logits, None).0, 1);
        assert_eq!(s.pick(&logits, Some(&[0, 2, 3])).0, 3);
    }

    #[test]
    fn seeded_sampling_repeats_and_top_k_limits() {
        let cfg = Sampling {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            seed: 9,
        };
        let logits = [0.0, 3.0, 1.0, 2.9];
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..50).map(|_| s.pick(&logits, None).0).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..50).map(|_| s.pick(&logits, None).0).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|&t| t == 1 || t == 3));
        assert!(a.contains(&1) && a.contains(&3));
    }
}
