"""Export a loaded checkpoint as a safetensors folder, and read it back.

`export_checkpoint(lm, out_dir, dtype=...)` writes the folder; `load_exported(out_dir,
**load_kwargs)` reads it (same arguments and result as `swamla_tui.load`);
`is_export_folder(path)` tells `swamla_tui.load` to hand a folder over. The folder also
loads in transformers: `AutoModelForCausalLM.from_pretrained(out_dir,
trust_remote_code=True)` (see `remote/`).
"""

from __future__ import annotations

from .reader import load_exported
from .writer import ExportError, export_checkpoint, is_export_folder

__all__ = ["ExportError", "export_checkpoint", "is_export_folder", "load_exported"]
