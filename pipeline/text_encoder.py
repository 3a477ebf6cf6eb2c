"""Prompt text as network keywords: `conditioning.text_encoder` encodes a table's text column on the actor.

    conditioning:
      table: s3://bucket/captions.parquet
      columns: {encoder_hidden_states: caption}     # a text column: encoded, last_hidden_state -> the keyword
      text_encoder: /models/sd/text_encoder         # a transformers text model + its tokenizer (save_pretrained)

Each batch's prompts are tokenized padded to the tokenizer's `model_max_length` (truncated beyond it; the model's
`max_position_embeddings` when the tokenizer names none), as Stable Diffusion's pipelines do, and the model's
`last_hidden_state` (N, max_length, hidden) becomes the keyword. The folder holds the model (its class from
`config.json`'s `architectures`, e.g. CLIPTextModel) and the tokenizer, both loaded offline
(`local_files_only`); a remote folder is copied to a local cache first. The sha256 of the folder's files joins
the job fingerprint. Needs `pip install seedshard[text]` (transformers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import torch

from .redact import redact_url


class TextEncoder:
    """prompts (N strings) -> last_hidden_state (N, max_length, hidden) float32 on a device."""

    def __init__(self, folder: str, storage_options: dict[str, Any] | None = None, sha256: str | None = None) -> None:
        """`sha256`: the folder_sha256 the job recorded (the driver's); the files loaded must have it."""
        import fsspec
        import transformers

        from .conditioning import ConditioningError
        from .models.diffusers_folder import CACHE_MARKER, local_folder
        from .output.fs import is_local

        remote = not is_local(fsspec.core.url_to_fs(folder, **(storage_options or {}))[0])
        expected = sha256 if sha256 is not None or not remote else folder_sha256(folder, storage_options)
        local = local_folder(folder, storage_options, version=expected or "")  # a copy per content, never stale
        if expected is not None and (found := folder_sha256(local, skip=CACHE_MARKER if remote else None)) != expected:
            if remote:  # changed while it was copied: no stale copy under this sha256
                shutil.rmtree(local, ignore_errors=True)
            raise ConditioningError(f"conditioning.text_encoder {redact_url(folder)!r} changed since the job started: "
                                    f"sha256 {found[:12]}, the job's {expected[:12]}; restore it or start a new output")
        with open(os.path.join(local, "config.json")) as f:
            names = json.load(f).get("architectures") or []
        cls = getattr(transformers, str(names[0]), None) if names else None
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise ValueError(f"conditioning.text_encoder {folder!r}: config.json names architectures {names}, "
                             "not a transformers model class")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(local, local_files_only=True)
        self.model = cls.from_pretrained(local, local_files_only=True).eval().requires_grad_(False)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        length = self.tokenizer.model_max_length
        self.max_length = int(length if length and length < 1_000_000 else limit)  # huge: the tokenizer names none
        self.device = torch.device("cpu")

    @torch.inference_mode()
    def __call__(self, prompts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        if torch.device(device) != self.device:
            self.model, self.device = self.model.to(device), torch.device(device)
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt").input_ids
        return self.model(ids.to(self.device)).last_hidden_state.float()


def folder_sha256(folder: str, storage_options: dict[str, Any] | None = None, skip: str | None = None) -> str:
    """sha256 over every file of a folder (relative path and bytes, in path order): its identity wherever it lies;
    `skip`: a top-level file name left out (the cache's marker in a cached copy)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    root = root.rstrip("/")
    h = hashlib.sha256()
    for path in sorted(fs.find(root)):
        if path[len(root) + 1:] == skip:
            continue
        h.update(f"{path[len(root) + 1:]}\n".encode())
        h.update(hashlib.sha256(fs.cat_file(path)).digest())
    return h.hexdigest()
