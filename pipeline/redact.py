"""What a secret is, and how it is kept out of manifests, logs and error messages.

Storage options by allowlist: only the options in ``SAFE_OPTIONS`` (endpoint, region, flags, sizes,
timeouts; ``client_kwargs`` / ``config_kwargs`` are searched the same way) keep their values in a
stored config; every other value is ``***`` (keys, tokens, headers, cookies, proxies, connection
strings, and options nobody has vetted yet). A kept string value passes ``redact_url``.

URLs (``redact_url``) lose their ``user:password@`` part and their query string (presigned
``?X-Amz-Signature=...``, SAS tokens), in the manifest and in every message ``scrub`` passes.

Messages (``scrub``): the exact values of secrets are masked -- the unsafe option values, the
userinfo and query values of the URLs involved, and the values of environment variables whose names
look secret (``SECRET_NAME``) -- but only values of a useful length (``MIN_SECRET_LEN``) that are
not plain lowercase words, so ``us-east-1`` or an env value ``shard`` never turns into ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SECRET_NAME = re.compile(r"key|secret|token|passw|credential|authoriz|connection_string|cookie|signature|sas_",
                         re.IGNORECASE)
# fsspec options (s3fs, gcsfs, adlfs, botocore Config) whose values say nothing secret.
SAFE_OPTIONS = frozenset({
    "endpoint_url", "region_name", "anon", "use_ssl", "verify", "requester_pays", "version_aware", "cache_regions",
    "default_block_size", "default_cache_type", "default_fill_cache", "max_concurrency", "fixed_upload_size",
    "skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths", "asynchronous",
    "client_kwargs", "config_kwargs", "s3", "retries", "signature_version", "addressing_style", "connect_timeout",
    "read_timeout", "max_pool_connections", "max_attempts", "mode", "project", "access", "consistency",
    "requests_timeout", "timeout", "account_name", "profile",
})
MASK = "***"
MIN_SECRET_LEN = 8  # shorter values would mask ordinary words in messages
_WORD = re.compile(r"[a-z]+")  # 'disabled', 'required': settings, not secrets
_PUBLIC_PART = re.compile(r"protocol|endpoint|suffix|name$", re.IGNORECASE)  # of a connection string
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def is_secret_name(name: Any) -> bool:
    """True when an environment variable (or a model kwarg) name names a secret."""
    return bool(SECRET_NAME.search(str(name)))


def redact_url(url: str) -> str:
    """``url`` with its ``user:password@`` part replaced by ``***@`` and its query string by ``?***``; an http(s)
    fragment is dropped. A local path (no ``://``) is kept whole: its '#' and '?' are file name characters, as '#'
    is in an object store's key."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc if "@" not in parts.netloc else MASK + "@" + parts.netloc.rsplit("@", 1)[1]
    web = parts.scheme in ("http", "https")
    if netloc == parts.netloc and not parts.query and not (web and parts.fragment):
        return url
    return parts._replace(netloc=netloc, query=MASK if parts.query else "",
                          fragment="" if web else parts.fragment).geturl()


def redact_options(options: Any) -> Any:
    """Storage options as a manifest stores them: values of SAFE_OPTIONS kept (URLs redacted), all else '***'."""
    if not isinstance(options, dict):
        return MASK
    return {k: _redact_value(v) if k in SAFE_OPTIONS else MASK for k, v in options.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, dict):
        return redact_options(value)
    if isinstance(value, str):
        return redact_url(value)
    return value if value is None or isinstance(value, (bool, int, float)) else MASK


def _url_secrets(url: str) -> set[str]:
    """The password of a URL's userinfo and the values of its query string."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return set()
    found = {v for _, v in parse_qsl(parts.query, keep_blank_values=False)} | ({parts.query} if parts.query else set())
    if parts.password:
        found.add(parts.password)
    return found


def _parts(value: str) -> set[str]:
    """A secret and what may show up of it alone: its URLs' secrets, and the values in `name=value; ...` strings
    (an Azure connection string's AccountKey, a cookie) but for their public parts (protocol, account, endpoint)."""
    found = {value}
    for url in _URL.findall(value):
        found |= _url_secrets(url)
    for part in value.split(";"):
        name, sep, v = part.strip().partition("=")
        if sep and not _PUBLIC_PART.search(name):
            found.add(v.strip())
    return found


def secrets(options: Any = None, urls: Iterable[str] = ()) -> set[str]:
    """The values to mask in messages: unsafe storage option values (any depth), the userinfo and query values of
    `urls`, and the values of secret-named environment variables; only of length >= MIN_SECRET_LEN, never a word."""
    found: set[str] = set()
    stack: list[tuple[Any, bool]] = [(options, False)]
    while stack:
        obj, unsafe = stack.pop()
        if isinstance(obj, dict):
            stack.extend((v, unsafe or k not in SAFE_OPTIONS) for k, v in obj.items())
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, unsafe) for v in obj)
        elif isinstance(obj, str):
            found |= _parts(obj) if unsafe else _url_secrets(obj)
    for url in urls:
        found |= _url_secrets(url)
    for name, value in os.environ.items():
        if is_secret_name(name):
            found |= _parts(value)
    return {s for s in found if len(s) >= MIN_SECRET_LEN and not _WORD.fullmatch(s)}


def scrub(text: str, options: Any = None, urls: Iterable[str] = ()) -> str:
    """``text`` with every secret (see ``secrets``) replaced by '***' and every URL in it redacted."""
    for secret in sorted(secrets(options, urls), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _URL.sub(lambda m: redact_url(m.group(0)), text)
