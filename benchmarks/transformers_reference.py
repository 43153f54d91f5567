#!/usr/bin/env python3
"""The same measurements as `lathe-cli eval` and `lathe-cli bench forward`, made with Hugging Face transformers on
the CPU, for docs/benchmarks.md and the issue's closing notes.

  transformers_reference.py ppl --model DIR_OR_GGUF --text FILE --seq-len N [--max-tokens K]
  transformers_reference.py speed --model DIR_OR_GGUF --seq-len N [--repeat R] [--threads T]
  transformers_reference.py train --model DIR_OR_GGUF --seq-len N [--batch B] [--repeat R] [--threads T]
  transformers_reference.py generate --model DIR_OR_GGUF [--prompt-len P] [--new N] [--repeat R] [--threads T]

Perplexity follows the protocol lathe-cli eval uses: the file's lines as dataset rows (a non-empty row keeps its
"\\n"), joined with "\\n\\n", tokenized once with the model's tokenizer (specials included), non-overlapping windows
of N tokens, remainder dropped, PPL = exp(mean NLL). Prints one JSON line.
Needs: torch, transformers, gguf, accelerate (packaging/make-reference-env.sh).
"""
import argparse
import json
import math
import os
import time

import torch
import transformers


def load(path):
    if path.endswith(".gguf"):
        d, f = os.path.split(path)
        tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        tok = None
        try:
            tok = transformers.AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        except Exception:
            pass
        # trust_remote_code: the sliced folders Lathe exports ship their modelling code (modeling_lathe_sliced.py)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=True)
    return tok, model.eval()


def rows_joined(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "\n\n".join(l + "\n" if l else "" for l in lines)


def window_nll(logits_of, ids, n, max_tokens):
    """Lathe's protocol over token ids: the non-overlapping n-token windows of the first max_tokens (0: all), the
    remainder dropped. logits_of maps one window (1-D tensor of n ids) to its [n, vocab] logits. Returns the summed
    next-token NLL (fp64) and the number of windows; each window predicts n - 1 tokens."""
    usable = min(len(ids), max_tokens) if max_tokens else len(ids)
    windows = usable // n
    nll = 0.0
    with torch.no_grad():
        for w in range(windows):
            x = torch.tensor(ids[w * n:(w + 1) * n])
            nll += torch.nn.functional.cross_entropy(logits_of(x)[:-1].double(), x[1:], reduction="sum").item()
    return nll, windows


def ppl(a):
    tok, model = load(a.model)
    if a.ids:
        with open(a.ids) as f:
            ids = json.load(f)
    else:
        ids = tok(rows_joined(a.text))["input_ids"]
    n = a.seq_len
    t0 = time.time()
    nll, windows = window_nll(lambda x: model(input_ids=x.unsqueeze(0)).logits[0], ids, n, a.max_tokens)
    secs = time.time() - t0
    mean = nll / (windows * (n - 1))
    print(json.dumps({"tool": "transformers " + transformers.__version__, "model": a.model, "seq_len": n,
                      "text_tokens": len(ids), "windows": windows, "perplexity": math.exp(mean), "mean_nll": mean,
                      "seconds": secs, "tokens_per_second": windows * n / secs}))


def speed(a):
    _, model = load(a.model)
    g = torch.Generator().manual_seed(42)
    x = torch.randint(0, model.config.vocab_size, (1, a.seq_len), generator=g)
    with torch.no_grad():
        model(input_ids=x)
        times = []
        for _ in range(a.repeat):
            t0 = time.time()
            model(input_ids=x)
            times.append(time.time() - t0)
    best = min(times)
    print(json.dumps({"tool": "transformers " + transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "model": a.model, "seq_len": a.seq_len,
                      "best_s": best, "tokens_per_s": a.seq_len / best}))


def train(a):
    """One fp32 training step as `lathe-cli bench train` times it: forward with labels, backward, AdamW."""
    import resource
    _, model = load(a.model)
    model.train()
    for m in model.modules():  # no dropout, as lathe (which has none)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(42)
    x = torch.randint(0, model.config.vocab_size, (a.batch, a.seq_len), generator=g)

    def step():
        opt.zero_grad(set_to_none=False)
        model(input_ids=x, labels=x).loss.backward()
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(a.repeat):
        t0 = time.time()
        step()
        times.append(time.time() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(json.dumps({"tool": "transformers " + transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "model": a.model, "seq_len": a.seq_len, "batch": a.batch,
                      "median_s": median, "tokens_per_s": a.batch * a.seq_len / median,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def generate(a):
    """Greedy generation with the KV cache, as a user runs an exported model: P random prompt tokens, then exactly N
    new ones. Prefill (the prompt's forward) and decode (the N - 1 further steps) are timed apart; the best of R
    runs. Memory: the parameters' bytes and the process's peak RSS (torch itself included: compare rows, not
    absolutes)."""
    import resource
    _, model = load(a.model)
    g = torch.Generator().manual_seed(42)
    x = torch.randint(0, model.config.vocab_size, (1, a.prompt_len), generator=g)
    kw = dict(do_sample=False, max_new_tokens=a.new, min_new_tokens=a.new, pad_token_id=0)
    with torch.no_grad():
        model.generate(x, **dict(kw, max_new_tokens=2, min_new_tokens=2))  # warm-up
        prefill, total = [], []
        for _ in range(a.repeat):
            t0 = time.time()
            model(input_ids=x, use_cache=True)
            prefill.append(time.time() - t0)
            t0 = time.time()
            out = model.generate(x, **kw)
            total.append(time.time() - t0)
    assert out.shape[1] == a.prompt_len + a.new
    p, t = min(prefill), min(total)
    params = sum(q.numel() * q.element_size() for q in model.parameters())
    params += sum(b.numel() * b.element_size() for b in model.buffers())
    print(json.dumps({"tool": "transformers " + transformers.__version__, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "model": a.model, "prompt_len": a.prompt_len,
                      "new_tokens": a.new, "prefill_tokens_per_s": a.prompt_len / p,
                      "decode_tokens_per_s": (a.new - 1) / max(t - p, 1e-9),
                      "weights_mb": params / 2**20,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["ppl", "speed", "train", "generate"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text")
    ap.add_argument("--ids", help="JSON list of token ids to use instead of tokenizing --text")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--new", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    {"ppl": ppl, "speed": speed, "train": train, "generate": generate}[a.what](a)
