"""A self-hosted Discord bot that speaks with Gemini 2.5 Flash TTS through Segmind's API."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
