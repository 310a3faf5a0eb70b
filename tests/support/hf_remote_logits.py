"""Load export folders with transformers in a fresh process and save their logits.

Run by tests/unit/test_hf_export.py (the per-kind round trip) as
`python tests/support/hf_remote_logits.py IDS_PT OUT_PT EXPORT_DIR...`: one process for all
the folders, since importing transformers costs more than the models. Each folder loads in
the dtype its config.json names (what a user of the export gets by default); the logits of
the ids in IDS_PT are saved by folder in OUT_PT, with the model's dtype.
"""

from __future__ import annotations

import sys


def main(ids_path: str, out_path: str, *folders: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.load(ids_path, weights_only=True)
    res: dict[str, object] = {}
    for folder in folders:
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(ids).logits
        res[folder] = {"logits": logits.float(), "dtype": str(model.dtype)}
    res["swamla_tui_imported"] = any(m.split(".")[0] == "swamla_tui" for m in sys.modules)
    torch.save(res, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
