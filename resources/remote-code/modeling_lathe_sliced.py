# Modelling code of a decoder sliced by Lathe's SliceGPT (Llama/Mistral/Qwen2/SmolLM, OPT, GPT-2, Phi-2), for Hugging
# Face transformers with trust_remote_code=True. Written by Lathe into the exported folder.
#
# SliceGPT (Ashkboos et al., ICLR 2024) folds every norm's scale (and LayerNorm's shift and mean removal) into the
# neighbouring linears, rotates the residual stream into PCA bases and deletes the least important directions, so:
#   * every norm is a weight-less RMSNorm that divides by the ORIGINAL hidden size D ("norm_divisor"),
#   * the residual stream has its own width at each point (embedding, after attention, after each block),
#   * residual connections carry shortcut matrices: h_mid = h_in @ attn_shortcut.T + attn(h_in),
#     h_out = h_mid @ mlp_shortcut.T + mlp(h_mid) (stored like nn.Linear weights, absent = identity);
#     Phi-2's parallel block has one: h_out = h_in @ attn_shortcut.T + attn(x) + mlp(x), x = norm(h_in).
# The checkpoint keeps the base family's tensor names; config.lathe_slicing["names"] gives each one ("{L}" = block),
# and ["arch"] the numbers this code needs, so one file serves every family.
# Supports batched causal-LM forward passes, left- or right-padded batches (attention_mask), a KV cache (any
# transformers Cache, given as past_key_values or, in later 5.x, as cache; a DynamicCache is made when use_cache is
# set) and so generate(), and RoPE with the inverse
# frequencies Lathe computed (["arch"]["inv_freq"]: default, linear or llama3 scaling alike).
import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_lathe_sliced import LatheSlicedConfig

# The output field of the KV cache: "cache" from the transformers versions that renamed it (reading
# .past_key_values there still works, with a deprecation warning), "past_key_values" before.
_CACHE_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def _activation(name):
    return {"silu": F.silu, "swish": F.silu, "relu": F.relu, "gelu": F.gelu,
            "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
            "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
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


class Conv1D(nn.Module):
    """GPT-2's linear layer: the weight is stored (in x out) and y = x @ W + b."""

    def __init__(self, n_in, n_out, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


def _rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x, cos, sin, rotary_dim):
    """x: (batch, heads, t, head_dim); cos, sin: (batch, 1, t, rotary_dim)."""
    if rotary_dim <= 0:
        return x
    r, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat((r * cos + _rotate_half(r) * sin, rest), dim=-1)


class LatheSlicedPreTrainedModel(PreTrainedModel):
    config_class = LatheSlicedConfig
    base_model_prefix = "lathe_sliced_base"  # never a key prefix: the checkpoint's names are used as they are

    def _init_weights(self, module):
        pass  # every weight comes from the checkpoint


class LatheSlicedForCausalLM(LatheSlicedPreTrainedModel, GenerationMixin):
    _supports_cache_class = True  # read by transformers 4.x generate(); 5.x makes a DynamicCache anyway

    def __init__(self, config):
        super().__init__(config)
        s = config.lathe_slicing
        a = s["arch"]
        names, bias = s["names"], s["biases"]
        self.heads, self.kv_heads, self.head_dim = a["heads"], a["kv_heads"], a["head_dim"]
        self.rotary_dim, self.rope_theta = a["rotary_dim"], a["rope_theta"]
        # Lathe's fp32 inverse frequencies (after rope scaling) and position scale; older exports have neither.
        self.inv_freq, self.position_scale = a.get("inv_freq"), a.get("position_scale", 1.0)
        self.position_offset, self.parallel = a["position_offset"], a["parallel"]
        self.act = _activation(a["activation"])
        eps, divisor = a["norm_eps"], s["norm_divisor"]
        self.norm = WeightlessRMSNorm(divisor, eps)
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        inter = a["intermediate_size"]

        def linear(n_in, n_out, has_bias, conv1d=False):
            return Conv1D(n_in, n_out, has_bias) if conv1d else nn.Linear(n_in, n_out, bias=has_bias)

        conv = a["conv1d"]
        # Modules live under the checkpoint's dotted names; self._blocks holds those names (forward() looks them up,
        # so nothing is registered twice and a module transformers replaces while loading is still found).
        self._embed = self._install(names["embed"], nn.Embedding(config.vocab_size, s["embedding_width"]))
        self._positions = None
        if names.get("positions"):
            self._positions = self._install(names["positions"], nn.Embedding(a["positions"], s["embedding_width"]))
        widths_in = [s["embedding_width"]] + list(s["output_widths"][:-1])
        self._blocks = []
        for i in range(a["layers"]):
            n = {k: v.replace("{L}", str(i)) for k, v in names.items() if "{L}" in v}
            w_in, w_out = widths_in[i], s["output_widths"][i]
            w_mid = w_out if self.parallel else s["mid_widths"][i]
            b = {}
            if a["fused_qkv"]:
                b["qkv"] = self._install(n["qkv"], linear(w_in, q + 2 * kv, bias["qkv"], conv))
            else:
                b["q"] = self._install(n["q"], linear(w_in, q, bias["q"]))
                b["k"] = self._install(n["k"], linear(w_in, kv, bias["k"]))
                b["v"] = self._install(n["v"], linear(w_in, kv, bias["v"]))
            b["o"] = self._install(n["o"], linear(q, w_mid, bias["o"], conv))
            mlp_in = w_in if self.parallel else w_mid
            b["gate"] = self._install(n["gate"], linear(mlp_in, inter, bias["gate"])) if a["gated"] else None
            b["up"] = self._install(n["up"], linear(mlp_in, inter, bias["up"], conv))
            b["down"] = self._install(n["down"], linear(inter, w_out, bias["down"], conv))
            sc = s["shortcuts"][i]
            b["attn_shortcut"] = self._install(n["attn_shortcut"], nn.Linear(w_in, w_mid, bias=False)) if sc["attn"] else None
            b["mlp_shortcut"] = self._install(n["mlp_shortcut"], nn.Linear(w_mid, w_out, bias=False)) if sc["mlp"] else None
            self._blocks.append(b)
        self._head = self._install(names["lm_head"], nn.Linear(s["output_widths"][-1], config.vocab_size,
                                                               bias=bias["lm_head"]))
        self.post_init()

    def _install(self, dotted, module):
        parent = self
        parts = dotted.split(".")
        for p in parts[:-1]:
            child = parent._modules.get(p)
            if child is None:
                child = nn.Module()
                parent.add_module(p, child)
            parent = child
        parent.add_module(parts[-1], module)
        return dotted

    def _m(self, dotted):
        return self.get_submodule(dotted) if dotted is not None else None

    def get_input_embeddings(self):
        return self._m(self._embed)

    def _attention(self, layer, b, x, cos, sin, mask, cache):
        bs, t, _ = x.shape
        q_w, kv_w = self.heads * self.head_dim, self.kv_heads * self.head_dim
        m = self._m
        if "qkv" in b:
            q, k, v = m(b["qkv"])(x).split([q_w, kv_w, kv_w], dim=-1)
        else:
            q, k, v = m(b["q"])(x), m(b["k"])(x), m(b["v"])(x)
        q = q.view(bs, t, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(bs, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(bs, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rope(q, cos, sin, self.rotary_dim), _rope(k, cos, sin, self.rotary_dim)
        if cache is not None:
            k, v = cache.update(k, v, layer)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return m(b["o"])(y.transpose(1, 2).reshape(bs, t, q_w))

    def _mlp(self, b, x):
        m = self._m
        if b["gate"] is not None:
            return m(b["down"])(self.act(m(b["gate"])(x)) * m(b["up"])(x))
        return m(b["down"])(self.act(m(b["up"])(x)))

    def _rope_tables(self, positions, dtype):
        """cos, sin of (batch, 1, t, rotary_dim) for integer positions (batch, t), as Lathe computes them: fp32
        angles = fp32(position * scale) * fp32 inverse frequency."""
        if self.inv_freq is not None:
            inv_freq = torch.tensor(self.inv_freq, dtype=torch.float32, device=positions.device)
        else:
            inv_freq = (1.0 / (self.rope_theta ** (torch.arange(0, self.rotary_dim, 2, dtype=torch.float64,
                                                                 device=positions.device) / self.rotary_dim))).float()
        pos = (positions.to(torch.float64) * self.position_scale).float()
        freqs = pos[..., None] * inv_freq  # (batch, t, rotary_dim / 2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, use_cache=None,
                                      cache=None, **kwargs):
        """One generate() step's inputs: the tokens the cache does not hold yet, the mask over all of them (forward
        derives the positions from it) and the cache. Defined here because transformers before 4.45 generates only
        with models that define it, and the same code then serves every version."""
        cache = cache if cache is not None else past_key_values
        if cache is not None:
            input_ids = input_ids[:, cache.get_seq_length():]
        return {"input_ids": input_ids, "attention_mask": attention_mask, "past_key_values": cache,
                "use_cache": use_cache}

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                labels=None, cache=None, **kwargs):
        """attention_mask (batch, past + t), 1 = a real token, covers the cached tokens too (as generate passes it).
        Positions are counted over real tokens only (left padding shifts nothing), unless position_ids is given.
        The KV cache comes as `past_key_values` (transformers 4.x, early 5.x) or `cache` (later 5.x)."""
        bs, t = input_ids.shape
        dev = input_ids.device
        m = self._m
        given = cache if cache is not None else past_key_values
        cache = given
        if cache is None and use_cache:
            cache = DynamicCache()
        past = cache.get_seq_length() if cache is not None else 0
        total = past + t
        if attention_mask is not None and attention_mask.shape[-1] != total:
            raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} tokens, expected past + new = {total}")
        if position_ids is None:
            if attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -t:]
            else:
                position_ids = torch.arange(past, total, device=dev)[None].expand(bs, t)
        # Boolean (batch, 1, t, past + t): causal, padding keys masked, and the diagonal always on so that a padding
        # query has one key to attend to (its output is never used) instead of a NaN row.
        key_idx = torch.arange(total, device=dev)
        query_idx = torch.arange(past, total, device=dev)
        mask = key_idx[None, :] <= query_idx[:, None]
        mask = mask[None, None].expand(bs, 1, t, total)
        if attention_mask is not None:
            mask = mask & attention_mask.bool()[:, None, None, :]
            mask = mask | (key_idx[None, :] == query_idx[:, None])[None, None]
        h = m(self._embed)(input_ids)
        if self._positions is not None:
            h = h + m(self._positions)(position_ids + self.position_offset)
        cos = sin = None
        if self.rotary_dim > 0:
            cos, sin = self._rope_tables(position_ids, h.dtype)
        for i, b in enumerate(self._blocks):
            x = self.norm(h)
            a = self._attention(i, b, x, cos, sin, mask, cache)
            res = m(b["attn_shortcut"])(h) if b["attn_shortcut"] is not None else h
            if self.parallel:
                h = res + a + self._mlp(b, x)
            else:
                h = res + a
                mlp = self._mlp(b, self.norm(h))
                h = (m(b["mlp_shortcut"])(h) if b["mlp_shortcut"] is not None else h) + mlp
        logits = m(self._head)(self.norm(h)).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        out_cache = cache if use_cache or given is not None else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: out_cache})
