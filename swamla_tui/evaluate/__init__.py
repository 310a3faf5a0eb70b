"""lm-evaluation-harness on our own engine (``--eval``): imported only when it is used.

`lm.SwamlaLM` is lm-eval's model interface over a loaded checkpoint; `run.run_eval` is the
CLI's ``--eval TASKS``. Needs the ``eval`` extra (``pip install "swamla-tui[eval]"``).
"""
