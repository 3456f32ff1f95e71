//! The network: token embedding → multi-layer GRU → linear head over the vocabulary, in tch.
//! Parameter names follow PyTorch's (`embed.weight`, `gru.weight_ih_l0`, ..., `head.weight`).

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

/// The network's shape. Stored in the checkpoint's `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: i64,
    pub embed_dim: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    /// Dropout on the embedding, between GRU layers and before the head (training only).
    pub dropout: f64,
    /// Share the embedding matrix with the output head (needs `embed_dim == hidden_size`).
    pub tie_weights: bool,
}

impl ModelConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.vocab_size < 2 || self.embed_dim < 1 || self.hidden_size < 1 || self.num_layers < 1
        {
            return Err(format!("sizes must be positive: {self:?}"));
        }
        if self.tie_weights && self.embed_dim != self.hidden_size {
            return Err(format!(
                "weight tying needs embed_dim == hidden_size, got {} and {}",
                self.embed_dim, self.hidden_size
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> i64 {
        let (v, e, h, l) = (
            self.vocab_size,
            self.embed_dim,
            self.hidden_size,
            self.num_layers,
        );
        let gru = 3 * h * e + 3 * h * h + 6 * h + (l - 1) * (6 * h * h + 6 * h);
        let head = if self.tie_weights { v } else { h * v + v };
        v * e + gru + head
    }
}

/// The GRU language model. The variables live in the caller's `VarStore`.
#[derive(Debug)]
pub struct GruLm {
    pub config: ModelConfig,
    embed: Tensor,
    gru_weights: Vec<Tensor>,
    head_w: Tensor,
    head_b: Tensor,
}

impl GruLm {
    pub fn new(vs: &nn::Path, config: ModelConfig) -> GruLm {
        let (v, e, h) = (config.vocab_size, config.embed_dim, config.hidden_size);
        let embed = (vs / "embed").var(
            "weight",
            &[v, e],
            nn::Init::Randn {
                mean: 0.,
                stdev: 0.1,
            },
        );
        let bound = 1.0 / (h as f64).sqrt();
        let uni = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        let gru = vs / "gru";
        let mut gru_weights = Vec::new();
        for l in 0..config.num_layers {
            let input = if l == 0 { e } else { h };
            gru_weights.push(gru.var(&format!("weight_ih_l{l}"), &[3 * h, input], uni));
            gru_weights.push(gru.var(&format!("weight_hh_l{l}"), &[3 * h, h], uni));
            gru_weights.push(gru.var(&format!("bias_ih_l{l}"), &[3 * h], uni));
            gru_weights.push(gru.var(&format!("bias_hh_l{l}"), &[3 * h], uni));
        }
        let head_w = if config.tie_weights {
            embed.shallow_clone()
        } else {
            (vs / "head").var("weight", &[v, h], uni)
        };
        let head_b = (vs / "head").var("bias", &[v], nn::Init::Const(0.));
        GruLm {
            config,
            embed,
            gru_weights,
            head_w,
            head_b,
        }
    }

    /// A zero hidden state for `batch` sequences: `[num_layers, batch, hidden]`.
    pub fn zero_state(&self, batch: i64, device: Device) -> Tensor {
        Tensor::zeros(
            [self.config.num_layers, batch, self.config.hidden_size],
            (Kind::Float, device),
        )
    }

    /// Runs tokens `[batch, time]` from state `h`; returns logits `[batch, time, vocab]` and the
    /// new state.
    pub fn forward(&self, tokens: &Tensor, h: &Tensor, train: bool) -> (Tensor, Tensor) {
        let p = self.config.dropout;
        let x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        let x = if train && p > 0. {
            x.dropout(p, true)
        } else {
            x
        };
        let (out, h) = x.gru(
            h,
            &self.gru_weights,
            true,
            self.config.num_layers,
            p,
            train,
            false,
            true,
        );
        let out = if train && p > 0. {
            out.dropout(p, true)
        } else {
            out
        };
        (self.head(&out), h)
    }

    /// The GRU outputs only (no head), for feeding context whose predictions are not needed.
    pub fn advance(&self, tokens: &Tensor, h: &Tensor) -> (Tensor, Tensor) {
        let x = Tensor::embedding(&self.embed, tokens, -1, false, false);
        x.gru(
            h,
            &self.gru_weights,
            true,
            self.config.num_layers,
            0.,
            false,
            false,
            true,
        )
    }

    /// Applies the output head to GRU outputs `[..., hidden]`.
    pub fn head(&self, out: &Tensor) -> Tensor {
        out.linear(&self.head_w, Some(&self.head_b))
    }
}
