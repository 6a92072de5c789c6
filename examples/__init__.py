"""Runnable examples for Jobs (`uv run jobs serve --app examples.app:setup`)."""
