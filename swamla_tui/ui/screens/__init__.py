"""Screens of the UI."""
