#!/usr/bin/env python3
"""Independent SliceGPT and Wanda for Llama-family models, written in plain PyTorch on top of the weights that Hugging
Face transformers loads, to check Lathe's numbers (docs/results.md) against a second implementation.

  compression_reference.py --model MODEL.gguf|HF_DIR --calib FILE --eval FILE --sparsity 0.2
                        [--method slicegpt|wanda] [--pattern unstructured|2:4]
                        [--samples 16 | --windows I,J,...] [--seq-len 2048] [--max-tokens 16384] [--seed 42]
                        [--round-to 8] [--threads 2]

It shares no code with Lathe: the forward pass and the methods are written here from the papers. Wanda: see
wanda_prune. SliceGPT (Ashkboos et al., ICLR 2024, arXiv 2401.15024):
  * fuse every RMSNorm weight into the linears that read it, untie the head;
  * every norm becomes x / sqrt(sum(x^2) / D + eps), D the original width, so a rotation commutes with it;
  * for each residual signal (embedding output, after attention, after the MLP) take the eigenvectors Q of
    H = sum x^T x (fp64, damped by 1% of the mean diagonal), keep the first d columns, rotate readers (W Q_d) and
    writers (Q_d^T W), and carry the stream between bases with shortcut matrices Q_prev,d^T Q_next,d;
  * signals come from the already-sliced network, block by block; the last block's output and the head keep D.
Perplexity follows Lathe's protocol (see transformers_reference.py). Before slicing it checks that its own dense
forward (and for SliceGPT the fused one) reproduces transformers' logits; SliceGPT at --sparsity 0 (rotation only)
must give the dense perplexity.
Prints one JSON line. Needs: torch, transformers, gguf (packaging/make-reference-env.sh).
"""
import argparse
import json
import math
import random
import time

import torch
import torch.nn.functional as F

from transformers_reference import load, rows_joined, window_nll


class Llama:
    """The weights of a Llama-family model as plain tensors, with the model's own rotary embedding."""

    def __init__(self, hf):
        c = hf.config
        self.heads = c.num_attention_heads
        self.kv_heads = c.num_key_value_heads
        self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.eps = c.rms_norm_eps
        self.width = c.hidden_size
        self.rotary = hf.model.rotary_emb
        sd = {k: v.detach().clone().double() for k, v in hf.state_dict().items()}
        self.embed = sd["model.embed_tokens.weight"]
        self.head = sd.get("lm_head.weight", self.embed).clone()  # untied from here on
        self.final_norm = sd["model.norm.weight"]
        self.layers = []
        for i in range(c.num_hidden_layers):
            p = f"model.layers.{i}."
            g = lambda n: sd[p + n]  # noqa: E731
            self.layers.append({
                "attn_norm": g("input_layernorm.weight"), "mlp_norm": g("post_attention_layernorm.weight"),
                "q": g("self_attn.q_proj.weight"), "k": g("self_attn.k_proj.weight"),
                "v": g("self_attn.v_proj.weight"), "o": g("self_attn.o_proj.weight"),
                "gate": g("mlp.gate_proj.weight"), "up": g("mlp.up_proj.weight"),
                "down": g("mlp.down_proj.weight"), "attn_shortcut": None, "mlp_shortcut": None})
        self.fused = False
        # Weights stay fp64 for the rotations; the forward runs in fp32 like Lathe's.
        self.dtype = torch.float32

    def fuse(self):
        """Fold the norm weights into the linears that read them (W <- W diag(g)); norms become weight-less."""
        for L in self.layers:
            for n in ("q", "k", "v"):
                L[n] = L[n] * L["attn_norm"]
            for n in ("gate", "up"):
                L[n] = L[n] * L["mlp_norm"]
        self.head = self.head * self.final_norm
        self.fused = True

    def norm(self, x, w):
        if self.fused:  # divide by the original width even when x is sliced
            return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) / self.width + self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w.to(x.dtype)

    def lin(self, x, w):
        return x @ w.to(self.dtype).T

    @staticmethod
    def tap(taps, names, x):
        """Adds the per-feature sums of squares of x (a linear's input) to taps[name] for each name, in fp64."""
        if taps is not None:
            sq = x.double().pow(2).sum(0)
            for n in names:
                taps[n] = taps.get(n, 0) + sq

    def attention(self, L, x, taps=None):
        """x: [T, d_in] residual stream (sliced basis once sliced). Returns the o-projection's output."""
        T = x.shape[0]
        h = self.norm(x, L["attn_norm"])
        self.tap(taps, ("q", "k", "v"), h)
        q = self.lin(h, L["q"]).view(T, self.heads, self.head_dim).transpose(0, 1)
        k = self.lin(h, L["k"]).view(T, self.kv_heads, self.head_dim).transpose(0, 1)
        v = self.lin(h, L["v"]).view(T, self.kv_heads, self.head_dim).transpose(0, 1)
        pos = torch.arange(T).unsqueeze(0)
        cos, sin = self.rotary(x.unsqueeze(0), pos)
        cos, sin = cos[0].to(x.dtype), sin[0].to(x.dtype)

        def rope(t):  # the rotate-half convention of transformers' Llama
            a, b = t[..., : self.head_dim // 2], t[..., self.head_dim // 2:]
            return t * cos + torch.cat((-b, a), dim=-1) * sin

        q, k = rope(q), rope(k)
        rep = self.heads // self.kv_heads
        k, v = k.repeat_interleave(rep, dim=0), v.repeat_interleave(rep, dim=0)
        ctx = F.scaled_dot_product_attention(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), is_causal=True)[0]
        ctx = ctx.transpose(0, 1).reshape(T, self.heads * self.head_dim)
        self.tap(taps, ("o",), ctx)
        return self.lin(ctx, L["o"])

    def mlp(self, L, x, taps=None):
        h = self.norm(x, L["mlp_norm"])
        self.tap(taps, ("gate", "up"), h)
        act = F.silu(self.lin(h, L["gate"])) * self.lin(h, L["up"])
        self.tap(taps, ("down",), act)
        return self.lin(act, L["down"])

    def block(self, L, x, taps=None):
        x = self.shortcut(L, "attn_shortcut", x) + self.attention(L, x, taps)
        return self.shortcut(L, "mlp_shortcut", x) + self.mlp(L, x, taps)

    @staticmethod
    def shortcut(L, key, x):
        s = L[key]
        return x if s is None else x @ s.to(x.dtype)

    def logits(self, ids):
        x = self.embed[ids].to(self.dtype)
        for L in self.layers:
            x = self.block(L, x)
        return self.lin(self.norm(x, self.final_norm), self.head)


def pca(signals, damping=0.01):
    """Eigenvectors of H = sum x^T x (fp64), damped by damping * mean(diag H), descending eigenvalue."""
    h = sum(x.double().T @ x.double() for x in signals)
    h += torch.eye(h.shape[0], dtype=h.dtype) * damping * h.diagonal().mean()
    values, vectors = torch.linalg.eigh(h)
    return vectors[:, torch.argsort(values, descending=True)]


def slice_model(m, calib, width):
    """Rotate and slice m in place to `width` on every residual signal but the last block's output."""
    D = m.width
    with torch.no_grad():
        xs = [m.embed[ids].to(m.dtype) for ids in calib]
        q = pca(xs)[:, :width]
        m.embed = m.embed @ q
        xs = [x @ q.to(m.dtype) for x in xs]
        for i, L in enumerate(m.layers):
            last = i == len(m.layers) - 1
            for n in ("q", "k", "v"):
                L[n] = L[n] @ q
            # Residual after attention, in the original basis: the sliced input carried back plus o's output.
            mids = [x @ q.T.to(m.dtype) + m.attention(L, x) for x in xs]
            q_mid = pca(mids)[:, :width]
            L["o"] = q_mid.T @ L["o"]
            L["attn_shortcut"] = q.T @ q_mid
            for n in ("gate", "up"):
                L[n] = L[n] @ q_mid
            mids = [x @ q_mid.to(m.dtype) for x in mids]
            outs = [x @ q_mid.T.to(m.dtype) + m.mlp(L, x) for x in mids]
            q_out = pca(outs)[:, :(D if last else width)]
            L["down"] = q_out.T @ L["down"]
            L["mlp_shortcut"] = q_mid.T @ q_out
            xs = [x @ q_out.to(m.dtype) for x in outs]
            q = q_out
            print(f"block {i + 1}/{len(m.layers)}", flush=True)
        m.head = m.head @ q


def wanda_prune(m, calib, sparsity, nm=None):
    """Wanda (Sun et al., ICLR 2024, arXiv 2306.11695): score |W_ij| * ||X_j||, X_j input feature j of that linear
    over all calibration tokens; each output row loses its lowest-scoring fraction, or with nm = (N, M) the N lowest
    of every M consecutive inputs (Wanda's and Lathe's convention). The norms of block l come from the dense block
    l fed by the pruned blocks before it; the pruned block's outputs feed block l + 1."""
    with torch.no_grad():
        xs = [m.embed[ids].to(m.dtype) for ids in calib]
        for i, L in enumerate(m.layers):
            taps = {}
            for x in xs:
                m.block(L, x, taps)
            for name, sq in taps.items():
                w = L[name]
                score = w.abs() * sq.sqrt().unsqueeze(0)
                if nm:
                    n, mm = nm
                    groups = score.view(w.shape[0], -1, mm)
                    drop = torch.zeros_like(groups, dtype=torch.bool)
                    drop.scatter_(2, groups.argsort(dim=2)[:, :, :n], True)
                    drop = drop.view_as(w)
                else:
                    k = int(w.shape[1] * sparsity)
                    drop = torch.zeros_like(w, dtype=torch.bool)
                    drop.scatter_(1, score.argsort(dim=1)[:, :k], True)
                L[name] = w.masked_fill(drop, 0.0)
            xs = [m.block(L, x) for x in xs]
            print(f"block {i + 1}/{len(m.layers)}", flush=True)


def perplexity(m, ids, n, max_tokens):
    nll, windows = window_nll(m.logits, ids, n, max_tokens)
    return math.exp(nll / (windows * (n - 1))), windows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--eval", required=True)
    ap.add_argument("--method", choices=["slicegpt", "wanda"], default="slicegpt")
    ap.add_argument("--sparsity", type=float, required=True,
                    help="SliceGPT: fraction of the width removed, e.g. 0.2; Wanda: fraction of each row, e.g. 0.5")
    ap.add_argument("--pattern", default="unstructured", help="Wanda: unstructured or N:M (N pruned of M), e.g. 2:4")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--windows", help="comma-separated calibration window indices (results.json: calibration.windows)")
    ap.add_argument("--round-to", type=int, default=8, help="SliceGPT: round the width down to a multiple (Lathe: 8)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok, hf = load(a.model)
    m = Llama(hf)
    n = a.seq_len
    out = {"tool": "compression_reference.py (torch " + torch.__version__ + ")", "model": a.model,
           "method": a.method, "sparsity": a.sparsity}

    # Invariance checks against transformers' logits: our dense forward, and for SliceGPT the fused one.
    eval_ids = tok(rows_joined(a.eval))["input_ids"]
    probe = torch.tensor(eval_ids[:256])
    with torch.no_grad():
        ref = hf(input_ids=probe.unsqueeze(0)).logits[0]
        out["dense_logit_max_abs_err"] = (m.logits(probe) - ref).abs().max().item()
        if a.method == "slicegpt":
            m.fuse()
            out["fused_logit_max_abs_err"] = (m.logits(probe) - ref).abs().max().item()

    calib_ids = tok(rows_joined(a.calib))["input_ids"]
    fit = len(calib_ids) // n
    if a.windows:
        starts = [int(w) for w in a.windows.split(",") if w]
    else:
        starts = sorted(random.Random(a.seed).sample(range(fit), min(a.samples, fit)))
    calib = [torch.tensor(calib_ids[s * n:(s + 1) * n]) for s in starts]
    out.update({"calibration": f"{len(calib)} x {n}", "windows": starts})
    out["dense_ppl"], out["eval_windows"] = perplexity(m, eval_ids, n, a.max_tokens)

    t0 = time.time()
    if a.method == "slicegpt":
        width = int(math.floor((1.0 - a.sparsity) * m.width + 1e-9)) // a.round_to * a.round_to
        out["width"] = width
        slice_model(m, calib, width)  # at --sparsity 0 a rotation only, which must leave the perplexity unchanged
    else:
        nm = tuple(int(v) for v in a.pattern.split(":")) if ":" in a.pattern else None
        out["pattern"] = a.pattern
        wanda_prune(m, calib, a.sparsity, nm)
    out["method_s"] = time.time() - t0
    out["compressed_ppl"], _ = perplexity(m, eval_ids, n, a.max_tokens)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
