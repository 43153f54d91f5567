"""Loads a sliced model exported by Lathe with Hugging Face transformers (trust_remote_code=True) and compares its
logits with Lathe's. Usage: check_sliced_export.py FOLDER CASE.json -> prints the relative max error as JSON and
exits 0 when it is within the tolerance in CASE.json, 1 otherwise."""
import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main():
    folder, case_path = sys.argv[1], sys.argv[2]
    case = json.load(open(case_path))
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32)
    model.eval()
    ids = torch.tensor(case["input_ids"], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    want = torch.tensor(case["logits"], dtype=torch.float32).reshape(logits.shape)
    err = float((logits - want).abs().max() / max(1.0, float(want.abs().max())))
    print(json.dumps({"class": type(model).__name__, "relative_max_error": err,
                      "parameters": sum(p.numel() for p in model.parameters())}))
    return 0 if err <= case["tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
