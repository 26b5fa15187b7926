"""What a cached clip is filed under: everything that shapes the audio, and nothing else."""

from __future__ import annotations

import hashlib
import json

from bot.speech.request import SpeechRequest

__all__ = ["CACHE_FORMAT_VERSION", "cache_key"]

#: Part of every key and every file header: bump it when keys or the file layout change, and
#: old entries simply stop matching (and age out of the disk bound).
CACHE_FORMAT_VERSION = 1


def cache_key(request: SpeechRequest, *, model: str) -> str:
    """The hex SHA-256 of everything that shapes the audio, and of nothing else.

    JSON with sorted keys is unambiguous (no field can bleed into the next, and None stays
    distinct from ""). The temperature goes in as the repr of a float, so 1 and 1.0 match
    but 0.4 and 0.41 do not; adding 0.0 folds -0.0 into 0.0.
    """
    fields = {
        "version": CACHE_FORMAT_VERSION,
        "model": model,
        "text": request.text,
        "voice": request.voice,
        "voice_2": request.voice_2,
        "temperature": repr(float(request.temperature) + 0.0),
    }
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()
