"""Colour themes for the UI (TOML files read by swamla_tui.ui.themes)."""
