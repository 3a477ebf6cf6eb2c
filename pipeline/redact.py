"""What a secret is, and how it is kept out of manifests, logs and error messages.

One rule: a value is secret when its name -- a storage-option key at any depth, or an environment
variable -- contains ``key``, ``secret``, ``token``, ``passw``, ``credential``, ``authoriz`` or
``connection_string`` (case-insensitive); everything under such a key is secret too. Other option
values (``endpoint_url``, ``region_name``, ``anon``) are kept, so a stored config stays readable.
URLs lose their ``user:password@`` part.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

SECRET_NAME = re.compile(r"key|secret|token|passw|credential|authoriz|connection_string", re.IGNORECASE)
MASK = "***"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words in messages


def is_secret_name(name: Any) -> bool:
    """True when an option key or environment variable name names a secret."""
    return bool(SECRET_NAME.search(str(name)))


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced by ``***@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=MASK + "@" + parts.netloc.rsplit("@", 1)[1]).geturl()


def redact_options(options: Any) -> Any:
    """Storage options with the value of every secret-named key replaced by '***', at any depth."""
    if isinstance(options, dict):
        return {k: MASK if is_secret_name(k) else redact_options(v) for k, v in options.items()}
    if isinstance(options, list):
        return [redact_options(v) for v in options]
    return options


def secrets(options: Any = None) -> set[str]:
    """The secret str values: those under secret-named keys of ``options``, and of secret-named env variables."""
    found: set[str] = set()
    stack: list[tuple[Any, bool]] = [(options, False)]
    while stack:
        obj, secret = stack.pop()
        if isinstance(obj, dict):
            stack.extend((v, secret or is_secret_name(k)) for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, secret) for v in obj)
        elif secret and isinstance(obj, str):
            found.add(obj)
    found |= {value for name, value in os.environ.items() if is_secret_name(name)}
    return {s for s in found if len(s) >= _MIN_SECRET_LEN}


def scrub(text: str, options: Any = None) -> str:
    """``text`` with every secret (see ``secrets``) replaced by '***'."""
    for secret in sorted(secrets(options), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
