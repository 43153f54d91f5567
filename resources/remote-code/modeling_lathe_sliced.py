# Modelling code of a Llama-family model (Llama, Mistral, Qwen2, SmolLM) sliced by Lathe's SliceGPT, for Hugging Face
# transformers with trust_remote_code=True. Written by Lathe into the exported folder.
#
# SliceGPT (Ashkboos et al., ICLR 2024) folds every RMSNorm's scale into the next linears, rotates the residual
# stream into PCA bases and deletes the least important directions, so:
#   * every norm is a weight-less RMSNorm that divides by the ORIGINAL hidden size D ("norm_divisor"),
#   * the residual stream has its own width at each point (embedding, after attention, after each block),
#   * residual connections carry shortcut matrices: h_mid = h_in @ attn_shortcut.T + attn(h_in),
#     h_out = h_mid @ mlp_shortcut.T + mlp(h_mid) (stored like nn.Linear weights, absent = identity).
# Supports batched causal-LM forward passes (no padding, no KV cache: every step recomputes the prefix).
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_lathe_sliced import LatheSlicedConfig


def _rope_theta(config):
    if getattr(config, "rope_theta", None) is not None:
        return float(config.rope_theta)
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", 10000.0))


def _activation(name):
    return {"silu": F.silu, "relu": F.relu, "gelu": F.gelu,
            "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
            "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}[name]


class WeightlessRMSNorm(nn.Module):
    def __init__(self, divisor, eps):
        super().__init__()
        self.divisor = divisor
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) / self.divisor + self.eps)
        return x.to(dtype)


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class SlicedAttention(nn.Module):
    def __init__(self, config, width_in, width_mid, bias):
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.q_proj = nn.Linear(width_in, self.heads * self.head_dim, bias=bias["q"])
        self.k_proj = nn.Linear(width_in, self.kv_heads * self.head_dim, bias=bias["k"])
        self.v_proj = nn.Linear(width_in, self.kv_heads * self.head_dim, bias=bias["v"])
        self.o_proj = nn.Linear(self.heads * self.head_dim, width_mid, bias=bias["o"])

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))


class SlicedMlp(nn.Module):
    def __init__(self, config, width_mid, width_out, bias):
        super().__init__()
        inter = config.intermediate_size
        self.gate_proj = nn.Linear(width_mid, inter, bias=bias["gate"])
        self.up_proj = nn.Linear(width_mid, inter, bias=bias["up"])
        self.down_proj = nn.Linear(inter, width_out, bias=bias["down"])
        self.act = _activation(getattr(config, "hidden_act", "silu"))

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class SlicedDecoderLayer(nn.Module):
    def __init__(self, config, width_in, width_mid, width_out, shortcuts, bias):
        super().__init__()
        s = config.lathe_slicing
        eps = getattr(config, "rms_norm_eps", 1e-6)
        self.input_norm = WeightlessRMSNorm(s["norm_divisor"], eps)
        self.post_attention_norm = WeightlessRMSNorm(s["norm_divisor"], eps)
        self.self_attn = SlicedAttention(config, width_in, width_mid, bias)
        self.mlp = SlicedMlp(config, width_mid, width_out, bias)
        # Shortcut matrices exist where the exporter wrote them (a width or basis change on the residual path).
        self.attn_shortcut = nn.Linear(width_in, width_mid, bias=False) if shortcuts["attn"] else None
        self.mlp_shortcut = nn.Linear(width_mid, width_out, bias=False) if shortcuts["mlp"] else None

    def forward(self, h, cos, sin):
        a = self.self_attn(self.input_norm(h), cos, sin)
        h = (self.attn_shortcut(h) if self.attn_shortcut is not None else h) + a
        m = self.mlp(self.post_attention_norm(h))
        return (self.mlp_shortcut(h) if self.mlp_shortcut is not None else h) + m


class LatheSlicedPreTrainedModel(PreTrainedModel):
    config_class = LatheSlicedConfig
    base_model_prefix = "model"
    _no_split_modules = ["SlicedDecoderLayer"]

    def _init_weights(self, module):
        pass  # every weight comes from the checkpoint


class LatheSlicedModel(LatheSlicedPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        s = config.lathe_slicing
        self.embed_tokens = nn.Embedding(config.vocab_size, s["embedding_width"])
        widths_in = [s["embedding_width"]] + list(s["output_widths"][:-1])
        self.layers = nn.ModuleList(
            SlicedDecoderLayer(config, widths_in[i], s["mid_widths"][i], s["output_widths"][i],
                               s["shortcuts"][i], s["biases"])
            for i in range(config.num_hidden_layers))
        self.norm = WeightlessRMSNorm(s["norm_divisor"], getattr(config, "rms_norm_eps", 1e-6))
        heads = config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        self.rope_theta = _rope_theta(config)
        self.post_init()

    def forward(self, input_ids):
        t = input_ids.shape[1]
        # Computed per call rather than held in a buffer: transformers initialises non-checkpoint buffers itself.
        inv_freq = 1.0 / (self.rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64,
                                                            device=input_ids.device) / self.head_dim))
        pos = torch.arange(t, device=input_ids.device, dtype=torch.float64)
        freqs = torch.outer(pos, inv_freq).float()
        emb = torch.cat((freqs, freqs), dim=-1)
        h = self.embed_tokens(input_ids)
        cos, sin = emb.cos().to(h.dtype), emb.sin().to(h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin)
        return self.norm(h)


class LatheSlicedForCausalLM(LatheSlicedPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        s = config.lathe_slicing
        self.model = LatheSlicedModel(config)
        self.lm_head = nn.Linear(s["output_widths"][-1], config.vocab_size, bias=s["biases"].get("lm_head", False))
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("this sliced model's code does not support padded batches")
        logits = self.lm_head(self.model(input_ids)).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}
