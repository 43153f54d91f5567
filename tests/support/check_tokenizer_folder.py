"""Loads the tokenizer of a folder Lathe wrote with Hugging Face transformers' AutoTokenizer and compares its ids
with Lathe's. Usage: check_tokenizer_folder.py FOLDER CASE.json, CASE = {"texts": [...], "ids": [[...], ...],
"ids_with_special": [[...], ...]} -> prints the mismatches as JSON and exits 0 when there are none, 1 otherwise."""
import json
import sys

from transformers import AutoTokenizer


def main():
    folder, case_path = sys.argv[1], sys.argv[2]
    case = json.load(open(case_path, encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(folder)
    bad = []
    for i, text in enumerate(case["texts"]):
        plain = tok(text, add_special_tokens=False)["input_ids"]
        special = tok(text)["input_ids"]
        if plain != case["ids"][i] or special != case["ids_with_special"][i]:
            bad.append({"text": i, "plain": plain[:20], "special": special[:20]})
        if tok.decode(plain) != text:
            bad.append({"text": i, "decode": tok.decode(plain)[:80]})
    print(json.dumps({"class": type(tok).__name__, "texts": len(case["texts"]), "mismatches": bad}))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
