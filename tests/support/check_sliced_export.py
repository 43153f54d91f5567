"""Loads a model exported by Lathe with remote code (sliced, LoSparse compact) with Hugging Face transformers
(trust_remote_code=True) and checks it.
Usage: check_sliced_export.py FOLDER CASE.json. CASE.json holds Lathe's logits for input_ids (batch x t, t >= 4)
and a tolerance (max |difference| / max(1, max |logit|)). Checked, each within the tolerance:
  * the logits of one forward pass against Lathe's;
  * the KV cache: a prefix with use_cache, then the last tokens one at a time, against the full pass;
  * padding: every sequence left-padded by 3 tokens, with an attention_mask and the positions of the real tokens,
    against the unpadded pass;
  * generate(): greedy generation with the cache equals greedy decoding by full recomputation;
  * with rope scaling: the inverse frequencies Lathe wrote equal transformers' own for that scaling.
Prints the errors as JSON; exits 0 when all pass, 1 otherwise."""
import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM


def rel(a, b):
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def hf_inverse_frequencies(config):
    """transformers' inverse frequencies (times Lathe's position scale) for the base model's rope scaling, or None."""
    base = getattr(config, "lathe_base_rope_scaling", None) or getattr(config, "lathe_base_rope_parameters", None)
    if not base or base.get("rope_type", base.get("type", "default")) == "default":
        return None
    from transformers import LlamaConfig
    try:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    except ImportError:  # before transformers 4.43: no scaled RoPE of its own to compare with
        return None
    a = config.lathe_slicing["arch"]
    params = dict(base)
    params["rope_type"] = params.pop("type", params.get("rope_type"))
    if params["rope_type"] not in ROPE_INIT_FUNCTIONS:
        return None
    params["rope_theta"] = a["rope_theta"]
    # transformers 5 reads rope_parameters, 4.x rope_scaling and rope_theta.
    cfg = LlamaConfig(hidden_size=a["heads"] * a["head_dim"], num_attention_heads=a["heads"], head_dim=a["head_dim"],
                      max_position_embeddings=max(a.get("positions", 0), 4096), rope_parameters=params,
                      rope_scaling=params, rope_theta=a["rope_theta"])
    return ROPE_INIT_FUNCTIONS[params["rope_type"]](cfg, "cpu")[0]


def main():
    folder, case_path = sys.argv[1], sys.argv[2]
    case = json.load(open(case_path))
    tol = case["tolerance"]
    # The keyword for the dtype was torch_dtype before transformers 4.56.
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, **{dtype_key: torch.float32})
    model.eval()
    ids = torch.tensor(case["input_ids"], dtype=torch.long)
    bs, t = ids.shape
    out = {"transformers": transformers.__version__, "class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}
    with torch.no_grad():
        full = model(input_ids=ids).logits
        want = torch.tensor(case["logits"], dtype=torch.float32).reshape(full.shape)
        out["lathe"] = rel(full, want)

        split = t - 3
        step = model(input_ids=ids[:, :split], use_cache=True)
        cached = [step.logits]
        cache = step.past_key_values
        for i in range(split, t):
            step = model(input_ids=ids[:, i:i + 1], past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            cached.append(step.logits)
        out["kv_cache"] = rel(torch.cat(cached, dim=1), full)

        pad = 3
        padded = torch.cat([torch.zeros(bs, pad, dtype=torch.long), ids], dim=1)
        mask = torch.cat([torch.zeros(bs, pad, dtype=torch.long), torch.ones(bs, t, dtype=torch.long)], dim=1)
        # Positions counted over the real tokens, as generate() passes them (models with learned positions, such as
        # GPT-2, need them; Lathe's sliced code derives the same from the mask when none are given).
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out["left_padding"] = rel(model(input_ids=padded, attention_mask=mask, position_ids=positions).logits[:, pad:],
                                  full)

        prompt, new = ids[:1, :t - 2], 4
        generated = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                                   do_sample=False, pad_token_id=0)
        greedy = prompt
        for _ in range(new):
            nxt = model(input_ids=greedy).logits[:, -1].argmax(-1, keepdim=True)
            greedy = torch.cat([greedy, nxt], dim=1)
        out["generate_matches_recompute"] = bool(torch.equal(generated, greedy))
    keys = ["lathe", "kv_cache", "left_padding"]
    hf_freq = hf_inverse_frequencies(model.config)
    if hf_freq is not None:
        a = model.config.lathe_slicing["arch"]
        ours = torch.tensor(a["inv_freq"], dtype=torch.float64) * a.get("position_scale", 1.0)
        out["rope_inv_freq"] = float(((ours - hf_freq.double()).abs() / hf_freq.double().abs()).max())
        keys.append("rope_inv_freq")
    ok = all(out[k] <= tol for k in keys) and out["generate_matches_recompute"]
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
