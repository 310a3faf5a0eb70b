"""Load an export folder with transformers in a fresh process and report what it computes.

Run by tests/unit/test_hf_export.py as
`python -m tests.support.hf_remote_check EXPORT_DIR EXPECTED_PT OUT_JSON` with HF_MODULES_CACHE
pointing at a temporary folder and the Hub offline: a fresh process keeps transformers'
dynamic-module package (`transformers_modules`) out of the test session, and shows that the
folder works on its own (swamla_tui is never imported).
"""

from __future__ import annotations

import json
import sys


def main(export_dir: str, expected_path: str, out_json: str) -> None:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    x = torch.load(expected_path, weights_only=True)
    model = AutoModelForCausalLM.from_pretrained(export_dir, trust_remote_code=True)
    model.eval()
    res: dict[str, object] = {"class": type(model).__name__, "dtype": str(model.dtype)}
    with torch.no_grad():
        logits = model(x["input_ids"]).logits
        res["max_diff_vs_fixture"] = float((logits - x["logits"]).abs().max())

        # a left-padded row and a right-padded row in one batch
        ids = x["input_ids"][:, :30]
        batch = torch.zeros(2, 35, dtype=torch.long)
        mask = torch.zeros(2, 35, dtype=torch.long)
        batch[0, 5:], mask[0, 5:] = ids[0], 1
        batch[1, :30], mask[1, :30] = ids[1], 1
        out = model(batch, attention_mask=mask).logits
        alone = model(ids).logits
        res["left_pad_diff"] = float((out[0, 5:] - alone[0]).abs().max())
        res["right_pad_diff"] = float((out[1, :30] - alone[1]).abs().max())

        labels = ids.clone()
        loss = model(ids, labels=labels).loss
        want = F.cross_entropy(alone[:, :-1].reshape(-1, alone.shape[-1]), ids[:, 1:].reshape(-1))
        res["loss_diff"] = float((loss - want).abs())

    prompt = x["prompt_ids"]
    gen = model.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False
    )
    res["greedy"] = gen[:, prompt.shape[1] :].tolist()

    tok = AutoTokenizer.from_pretrained(export_dir)
    res["encoded"] = tok("Hello there, how are you?")["input_ids"]
    pipe = pipeline("text-generation", model=model, tokenizer=tok)
    text = pipe("Hello there", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    res["pipeline_text_starts"] = text.startswith("Hello there")
    res["swamla_tui_imported"] = any(m.split(".")[0] == "swamla_tui" for m in sys.modules)
    with open(out_json, "w", encoding="utf-8") as fh:
        json.dump(res, fh)


if __name__ == "__main__":
    main(*sys.argv[1:4])
