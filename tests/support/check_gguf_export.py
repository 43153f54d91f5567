#!/usr/bin/env python3
"""Checks a GGUF file Lathe exported, outside Lathe.

1. gguf-py (PyPI `gguf`, the reader llama.cpp's own Python tools use) parses it; every tensor name is one
   llama.cpp's layout for the file's architecture knows; the hyperparameters llama.cpp reads are present with the
   value types it checks (UINT32 counts, FLOAT32 epsilons and RoPE base); the vocabulary is as long as the
   embedding has rows.
2. Where transformers can load GGUF for the architecture (llama, qwen2, gpt2, ...), it loads the file with
   `gguf_file=` (dequantizing with gguf-py and undoing llama.cpp's q/k permutation itself), and its logits for the
   case's input ids must match Lathe's within the case's tolerance.

Usage: check_gguf_export.py FILE.gguf CASE.json
CASE.json: {"input_ids": [[...], ...], "logits": [flat floats, batch x seq x vocab], "tolerance": 1e-4}
Prints one JSON line; exit status 0 when every check passed, 1 otherwise.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T


def fail(report, message):
    report.setdefault("errors", []).append(message)


def main():
    path, case_path = sys.argv[1], sys.argv[2]
    case = json.load(open(case_path))
    from importlib.metadata import version
    report = {"file": os.path.basename(path), "gguf": version("gguf")}
    r = gguf.GGUFReader(path)
    fields = r.fields

    def field(key):
        f = fields.get(key)
        if f is None:
            return None, None
        return f.types, f.contents()

    types, arch = field("general.architecture")
    report["architecture"] = arch
    # Hyperparameters llama.cpp reads, with the value types its loader accepts.
    want = {f"{arch}.context_length": T.UINT32, f"{arch}.embedding_length": T.UINT32,
            f"{arch}.block_count": T.UINT32, f"{arch}.feed_forward_length": T.UINT32,
            f"{arch}.attention.head_count": T.UINT32, "tokenizer.ggml.model": T.STRING,
            "general.alignment": T.UINT32, "general.file_type": T.UINT32}
    eps = f"{arch}.attention.layer_norm_rms_epsilon" if arch in ("llama", "qwen2") else \
        f"{arch}.attention.layer_norm_epsilon"
    want[eps] = T.FLOAT32
    if arch in ("llama", "qwen2", "phi2"):
        want[f"{arch}.rope.freq_base"] = T.FLOAT32
        want[f"{arch}.rope.dimension_count"] = T.UINT32
    for key, t in want.items():
        types_, _ = field(key)
        if types_ is None:
            fail(report, f"missing {key}")
        elif types_[0] != t:
            fail(report, f"{key} is {types_[0].name}, llama.cpp reads {t.name}")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"):
        types_, _ = field(key)
        if types_ is not None and types_[0] != T.UINT32:
            fail(report, f"{key} is {types_[0].name}, llama.cpp reads UINT32")
    tok_types, tokens = field("tokenizer.ggml.tokens")
    if tok_types != [T.ARRAY, T.STRING]:
        fail(report, "tokenizer.ggml.tokens is not an array of strings")

    # Tensor names llama.cpp's layout has for this architecture.
    arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        fail(report, f"gguf-py does not know architecture {arch}")
        known = set()
    else:
        blocks = fields[f"{arch}.block_count"].contents()
        known = set()
        for t in gguf.MODEL_TENSORS[arch_id]:
            name = gguf.TENSOR_NAMES[t]
            for b in range(blocks) if "{bid}" in name else [None]:
                base = name.format(bid=b) if b is not None else name
                known.update({base + ".weight", base + ".bias"})
    embd_rows = None
    for t in r.tensors:
        if known and t.name not in known:
            fail(report, f"tensor {t.name} is not in llama.cpp's {arch} layout")
        values = gguf.dequantize(t.data, t.tensor_type)
        if not np.all(np.isfinite(values)):
            fail(report, f"tensor {t.name} has non-finite values")
        if t.name == "token_embd.weight":
            embd_rows = int(t.shape[-1])
    report["tensors"] = len(r.tensors)
    if embd_rows is not None and tokens is not None and len(tokens) != embd_rows:
        fail(report, f"{len(tokens)} tokens for an embedding of {embd_rows} rows")

    # transformers' GGUF loader, where it supports the architecture.
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
        from transformers.integrations.ggml import GGUF_CONFIG_MAPPING
        report["transformers"] = transformers.__version__
        ff = fields[f"{arch}.feed_forward_length"].contents()
        n_embd = fields[f"{arch}.embedding_length"].contents()
        ctx = fields[f"{arch}.context_length"].contents()
        if arch == "gpt2" and (ff != 4 * n_embd or ctx != 1024):
            # transformers maps gpt2.context_length to n_ctx, not n_positions, and drops feed_forward_length, so it
            # builds GPT-2 with 1024 positions and n_inner = 4 n_embd whatever the file says.
            report["transformers_logits"] = ("not checked: transformers' GGUF loader builds GPT-2 only with 1024 "
                                             "positions and a 4 x n_embd MLP")
        elif arch in GGUF_CONFIG_MAPPING:
            model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(path)),
                                                         gguf_file=os.path.basename(path), torch_dtype=torch.float32)
            model.eval()
            with torch.no_grad():
                logits = model(torch.tensor(case["input_ids"])).logits.float().numpy().reshape(-1)
            want_logits = np.array(case["logits"], dtype=np.float32)
            err = float(np.max(np.abs(logits - want_logits)) / max(np.max(np.abs(want_logits)), 1e-30))
            report["logits_relative_max_error"] = err
            if err > case["tolerance"]:
                fail(report, f"transformers' logits differ from Lathe's: {err:.3g} > {case['tolerance']}")
        else:
            report["transformers_logits"] = f"transformers {transformers.__version__} has no GGUF loader for {arch}"
    except ImportError as e:
        report["transformers_logits"] = f"not checked: {e}"

    report["ok"] = not report.get("errors")
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
