"""mamctl, the operator CLI of mam-gateway (typer + rich)."""

from mam_client.cli.app import app, main

__all__ = ["app", "main"]
