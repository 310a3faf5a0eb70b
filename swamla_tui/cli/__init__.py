"""The command line: flag parsing and dispatch (`main`), and the one-shot actions (`eval`)."""
