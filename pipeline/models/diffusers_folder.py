"""A model folder saved by diffusers' `save_pretrained` as a job's network (needs `pip install diffusers`):

    model:
      diffusers: {path: /models/ddpm-cifar10, subfolder: unet}   # a local folder or any fsspec URL
      shape: [3, 32, 32]
    sampler: {name: ddim, steps: 50, time_dist: diffusers}       # the grid of the folder's scheduler

`model.diffusers` fills in `model.factory` (`load` below, with the folder as kwargs) and, from the folder's
`scheduler/scheduler_config.json` (or `model.diffusers.scheduler`), `model.interface` and its kwargs
(prediction_type epsilon | v_prediction | sample -> vp_eps | vp_v | vp_x0; FlowMatchEulerDiscreteScheduler ->
flow, the network called at timestep = t * num_train_timesteps), and `sampler.time_kwargs` for
`time_dist: diffusers`; the resolved config stored in the manifest names them all. The class comes from the
folder's `config.json` (`_class_name`: UNet2DModel, UNet2DConditionModel, DiTTransformer2DModel,
Transformer2DModel, SD3Transformer2DModel, AutoencoderKL, ... any diffusers model) and the weights load with
diffusers' own `from_pretrained(local_files_only=True)`: never the Hub. A remote folder is copied to a local
cache first. The weights' identity is the sha256 of the network's state dict, as for any factory.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tempfile
from typing import Any

import torch

FACTORY = "pipeline.models.diffusers_folder:load"
CACHE_MARKER = ".complete"  # written in a cached copy once every file is there
CACHE_ENV = "SEEDSHARD_CACHE"  # where remote folders are copied (default: the temp dir)


def join(path: str, subfolder: str | None) -> str:
    """`path`/`subfolder` for local paths and URLs alike."""
    return posixpath.join(path, subfolder) if subfolder else path


def read_json(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A JSON file from a local path or fsspec URL."""
    import fsspec

    with fsspec.open(url, "r", **(storage_options or {})) as f:
        return json.load(f)


def local_folder(url: str, storage_options: dict[str, Any] | None = None, version: str = "") -> str:
    """A local folder holding the files of `url`: the folder itself if local, else a cached copy (one per `version`,
    e.g. the folder's sha256, so a folder updated in place is copied again)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return root
    cache = os.path.join(os.environ.get(CACHE_ENV, tempfile.gettempdir()), "seedshard-diffusers",
                         hashlib.sha256((url + version).encode()).hexdigest()[:16])
    done = os.path.join(cache, CACHE_MARKER)
    if not os.path.exists(done):
        tmp = f"{cache}.tmp-{os.getpid()}"
        fs.get(root.rstrip("/") + "/", tmp, recursive=True)
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        try:
            os.replace(tmp, cache)
        except OSError:  # another process finished first
            pass
        open(done, "w").close()
    return cache


def load_model(path: str, subfolder: str | None = None, storage_options: dict[str, Any] | None = None,
               dtype: str | None = None) -> torch.nn.Module:
    """The diffusers model saved in `path`/`subfolder`, of the class its config.json names, in eval mode."""
    import diffusers

    folder = local_folder(join(path, subfolder), storage_options)
    with open(os.path.join(folder, "config.json")) as f:
        name = json.load(f).get("_class_name")
    cls = getattr(diffusers, str(name), None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.ModelMixin)):
        raise ValueError(f"model.diffusers {join(path, subfolder)!r}: config.json names {name!r}, "
                         "not a diffusers model")
    kwargs = {"torch_dtype": getattr(torch, dtype)} if dtype else {}
    return cls.from_pretrained(folder, local_files_only=True, **kwargs).eval().requires_grad_(False)


def load(path: str, subfolder: str | None = None, timestep_scale: float = 1.0) -> torch.nn.Module:
    """The model of a diffusers folder as a raw network net(x, timestep, **kw) -> prediction (`DiffusersNet`).
    A remote folder is read with the credentials of the environment (never stored in the job config)."""
    from samplers.adapters.diffusers import DiffusersNet

    return DiffusersNet(load_model(path, subfolder), timestep_scale)


def scheduler_url(path: str, scheduler: str = "scheduler") -> str:
    """The scheduler_config.json of `path`/`scheduler` (a folder or a .json file; an absolute `scheduler` stands
    alone)."""
    url = join(path, scheduler)
    return url if url.endswith(".json") else join(url, "scheduler_config.json")


def scheduler_settings(path: str, scheduler: str = "scheduler", storage_options: dict[str, Any] | None = None) -> Any:
    """`diffusers_settings` of the scheduler config at `path`/`scheduler` (a folder or a .json file)."""
    from samplers.adapters.diffusers_schedule import diffusers_settings

    url = scheduler_url(path, scheduler)
    try:
        config = read_json(url, storage_options)
    except (OSError, ValueError) as e:
        reason = f"{type(e).__name__}: {e}"
        raise ValueError(f"model.diffusers: cannot read the scheduler config {url!r} ({reason})") from None
    return diffusers_settings(config)


def resolve(data: dict[str, Any], storage_options: dict[str, Any] | None = None,
            need_settings: bool = False) -> tuple[dict[str, Any], Any]:
    """A model section with `diffusers: {path, subfolder, scheduler}` completed: factory, kwargs, interface and
    interface_kwargs, each only where the section leaves it out; and the scheduler's `DiffusersSettings` (None when
    neither the interface nor `need_settings` asked for it). Reads only the scheduler's JSON."""
    spec = data["diffusers"]
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
        return data, None  # the schema reports the shape of model.diffusers
    data, settings = dict(data), None
    if "interface" not in data or need_settings:
        settings = scheduler_settings(spec["path"], spec.get("scheduler", "scheduler"), storage_options)
    if "interface" not in data:
        data["interface"] = settings.interface
        data.setdefault("interface_kwargs", settings.interface_kwargs)
    if "factory" not in data:
        data["factory"] = FACTORY
        kwargs = {"path": spec["path"], "subfolder": spec.get("subfolder")}
        if settings is not None and settings.timestep_scale != 1.0:
            kwargs["timestep_scale"] = settings.timestep_scale
        data.setdefault("kwargs", kwargs)
    return data, settings


def resolve_guide(guide: dict[str, Any], model: dict[str, Any], storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A guide section with `diffusers: {...}` completed like the model's (`resolve`). A guide folder without a
    scheduler config (a bare model folder, as autoguidance's smaller network often is) and without an interface of
    its own takes the model's (resolved) interface, interface_kwargs and timestep scale: the guide predicts what the
    model predicts, or mixing the two would not be guidance."""
    import fsspec

    spec = guide["diffusers"]
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or "interface" in guide:
        return resolve(guide, storage_options)[0]
    url = scheduler_url(spec["path"], spec.get("scheduler", "scheduler"))
    fs, local = fsspec.core.url_to_fs(url, **(storage_options or {}))
    if fs.exists(local):
        return resolve(guide, storage_options)[0]
    inherited = {k: model[k] for k in ("interface", "interface_kwargs") if k in model}
    guide, _ = resolve({**inherited, **guide}, storage_options)
    scale = (model.get("kwargs") or {}).get("timestep_scale") if model.get("factory") == FACTORY else None
    if scale is not None and guide.get("factory") == FACTORY and "timestep_scale" not in guide["kwargs"]:
        guide["kwargs"] = {**guide["kwargs"], "timestep_scale": scale}
    return guide
