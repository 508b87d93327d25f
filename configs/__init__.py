"""Configs and the language table (package data)."""
