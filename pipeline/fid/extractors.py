"""Feature extractors by registry name; `build_extractor(name, **kwargs)` builds one.

`digits`: the demo's 8x8 classifier, D = 64. `inception`: Inception-v3 pool3, D = 2048, the standard
FID network (pytorch-fid's), from a user-supplied weights file. The classes live in `features`
(torch is imported only when an extractor is built, so the names can be checked without it).
A new extractor is one class in `features` plus one `EXTRACTORS` line.
"""

from __future__ import annotations

from typing import Any

EXTRACTORS: dict[str, str] = {  # name -> class in .features
    "digits": "DigitsExtractor",
    "inception": "InceptionExtractor",
}


def build_extractor(name: str, **kwargs: Any) -> Any:
    """A feature extractor by registry name (`digits`, `inception`), e.g. build_extractor('inception', weights=url)."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}; known: {sorted(EXTRACTORS)}")
    from . import features

    return getattr(features, EXTRACTORS[name])(**kwargs)
