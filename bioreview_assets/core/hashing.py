"""The short content/config hash every layer keys artefacts by (standard library only)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(payload: Any) -> str:
    """Short sha256 of a JSON-serialisable payload (sorted keys), used as a content/config hash."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
