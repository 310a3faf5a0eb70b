"""Files copied verbatim into every export folder for `trust_remote_code=True`.

`configuration_swamla.py` is importable from here (it needs only transformers);
`modeling_swamla.py` imports the flat model modules written beside it at export time
(see `..flatten`), so it only runs from an export folder.
"""
