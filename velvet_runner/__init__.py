"""Velvet runner: rotate a credential, prove every consumer works, then revoke the old one."""

__version__ = "0.1.0"
