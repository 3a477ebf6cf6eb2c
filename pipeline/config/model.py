"""The `model` section of the job config (the network, its guide and decoder) and `conditioning`."""

from __future__ import annotations

import typing
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from .fields import (
    _CHECKPOINT_SUFFIXES, _FACTORY_RE, _PICKLE_FACTORY, MAX_CHECKPOINT_BYTES, AutocastDtype, Interface, NetworkDtype,
    _Strict,
)

__all__ = ["ConditioningConfig", "DecoderConfig", "DiffusersFolderConfig", "GuideConfig", "ModelConfig"]


class DiffusersFolderConfig(_Strict):
    """A diffusers `save_pretrained` folder (`pipeline.models.diffusers_folder`): the model in `subfolder`, the
    interface and grid from the scheduler config in `scheduler` (a subfolder or a .json path under `path`)."""

    path: str = Field(min_length=1)
    subfolder: str | None = None
    scheduler: str = "scheduler"


class DecoderConfig(_Strict):
    """Latents -> images before storage (`pipeline.decoder`): a diffusers AutoencoderKL folder, or a factory."""

    diffusers: DiffusersFolderConfig | None = None
    factory: str | None = None
    kwargs: dict[str, Any] = {}
    shape: list[typing.Annotated[int, Field(gt=0)]] = Field(min_length=1)  # one decoded sample
    scaling_factor: float | None = Field(default=None, gt=0)  # default: the folder's config, else 1
    shift_factor: float | None = None  # default: the folder's config, else 0

    @model_validator(mode="after")
    def _one_source(self) -> "DecoderConfig":
        if (self.diffusers is None) == (self.factory is None):
            raise ValueError("needs exactly one of diffusers (a folder) or factory (got "
                             f"{'both' if self.factory else 'neither'})")
        if self.factory is not None and not _FACTORY_RE.match(self.factory):
            raise ValueError(f"factory: must be 'package.module:callable' (got {self.factory!r})")
        return self


class _NetworkConfig(_Strict):
    """A network: how to build it, load its weights, and read its output."""

    factory: str
    kwargs: dict[str, Any] = {}
    diffusers: DiffusersFolderConfig | None = None  # fills factory, interface (+ kwargs) when they are left out
    checkpoint: str | None = None
    interface: Interface
    interface_kwargs: dict[str, Any] = {}
    shape: list[typing.Annotated[int, Field(gt=0)]] = Field(min_length=1)
    num_classes: int | None = Field(default=None, gt=0)
    null_label: int | None = Field(default=None, ge=0)
    dtype: NetworkDtype = "float32"
    autocast: AutocastDtype | None = None  # the network call under torch.autocast; weights keep `dtype`
    compile: bool = False
    max_checkpoint_bytes: int = Field(default=MAX_CHECKPOINT_BYTES, gt=0)  # file size, and unpacked size of a torch zip
    trust_pickle: bool = False  # allow pipeline.models.trusted_pickle (unpickling runs the file's code)

    @field_validator("factory")
    @classmethod
    def _factory_format(cls, v: str) -> str:
        if not _FACTORY_RE.match(v):
            raise ValueError(f"must be 'package.module:callable' (got {v!r})")
        return v

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_suffix(cls, v: str | None) -> str | None:
        if v is not None and not urlsplit(v).path.lower().endswith(_CHECKPOINT_SUFFIXES):
            allowed = ", ".join(_CHECKPOINT_SUFFIXES)
            raise ValueError(f"must be a {allowed} file (got {v!r})")
        return v

    @model_validator(mode="after")
    def _pickles_need_trust(self) -> "_NetworkConfig":
        if self.factory == _PICKLE_FACTORY and not self.trust_pickle:
            raise ValueError(f"trust_pickle: must be true to load a network pickle with {_PICKLE_FACTORY} "
                             "(unpickling runs code from the file; set it only for files you trust) (got false)")
        return self

    @model_validator(mode="after")
    def _default_null_label(self) -> "_NetworkConfig":
        if self.num_classes is None and self.null_label is not None:
            raise ValueError(f"null_label: needs num_classes (got {self.null_label})")
        if self.num_classes is not None and self.null_label is None:
            self.null_label = self.num_classes
        return self


class GuideConfig(_NetworkConfig):
    """A weaker network that guides the main one (autoguidance, Karras et al. 2024)."""


class ModelConfig(_NetworkConfig):
    """The network to sample from, and optionally a guide network."""

    guide: GuideConfig | None = None
    preflight: bool = True  # one forward pass of the network (and guide) on the driver's CPU before the job starts
    decoder: DecoderConfig | None = None


class ConditioningConfig(_Strict):
    """Row i of a Parquet table conditions sample i (`pipeline.conditioning`)."""

    table: str = Field(min_length=1)
    columns: dict[str, str] = Field(min_length=1)  # network keyword -> column
    text_encoder: str | None = Field(default=None, min_length=1)  # a transformers text model folder (prompt columns)
    # classifier-free guidance on the table's keywords (sampler.guidance_scale != 1): what the guide sees instead
    negative_prompt: str | None = None  # for every text column ("": Stable Diffusion's unconditional prompt)
    negative_columns: dict[str, str] = {}  # network keyword -> column of its negative (e.g. null embeddings)

    @model_validator(mode="after")
    def _negatives_replace_mapped_keywords(self) -> "ConditioningConfig":
        if unknown := sorted(set(self.negative_columns) - set(self.columns)):
            raise ValueError(f"negative_columns: keywords {unknown} are not in conditioning.columns "
                             f"({', '.join(self.columns)}); a negative replaces a mapped keyword for the guide")
        if same := {k: c for k, c in self.negative_columns.items() if self.columns.get(k) == c}:
            raise ValueError(f"negative_columns: {same} are the columns conditioning.columns maps those keywords to; "
                             "the guide would see the prompt itself and guidance do nothing: name another column")
        return self

    @property
    def negatives(self) -> bool:
        """Whether the table gives the guide its own keywords (classifier-free guidance)."""
        return self.negative_prompt is not None or bool(self.negative_columns)
