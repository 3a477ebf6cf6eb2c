"""Prompt columns: `conditioning.text_encoder` (a tiny random CLIPTextModel + CLIPTokenizer folder) encodes each
batch's prompts on the worker into the network keyword; the job equals the same computation done in process."""

import json
import string

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import samplers
from pipeline.conditioning import ConditioningError
from pipeline.config import validate_config
from pipeline.text_encoder import folder_sha256
from tests.pipeline.jobs import run_in_process

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

PROMPTS = ["a red cat", "two dogs", "a tree at night", "x"]


def save_clip(folder):
    """A random CLIPTextModel (hidden 8, 8 positions) and a character-level CLIPTokenizer, saved together."""
    folder.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for c in string.ascii_lowercase + string.digits:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=8)
    torch.manual_seed(0)
    model = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=8, bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    saved = folder / "saved"
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    return saved, tokenizer, model


def prompt_job(tmp_path, **conditioning):
    from tests.pipeline.models.test_diffusers_folder import tiny_cond_unet

    unet = tiny_cond_unet()
    unet.save_pretrained(tmp_path / "unet")
    diffusers.EulerDiscreteScheduler().save_pretrained(tmp_path / "scheduler")
    pq.write_table(pa.table({"caption": PROMPTS}), tmp_path / "captions.parquet")
    return validate_config({
        "run": {"num_samples": 4, "seed": 2, "shard_size": 4, "batch_size": 3, "output": str(tmp_path / "out")},
        "model": {"diffusers": {"path": str(tmp_path), "subfolder": "unet"}, "shape": [3, 8, 8]},
        "sampler": {"name": "euler", "steps": 3, "time_dist": "diffusers"},
        "conditioning": {"table": str(tmp_path / "captions.parquet"),
                         "columns": {"encoder_hidden_states": "caption"}, **conditioning},
    }), unet


def test_prompts_are_encoded_on_the_worker(tmp_path):
    from pipeline.models.diffusers_folder import load
    from pipeline.output.reader import read_samples
    from pipeline.run.sampling import build_sampler

    folder, tokenizer, model = save_clip(tmp_path / "clip")
    cfg, _ = prompt_job(tmp_path, text_encoder=str(folder))
    manifest = run_in_process(cfg)
    assert manifest.model["conditioning"]["text_encoder"]["sha256"] == folder_sha256(str(folder))
    net = samplers.wrap(load(**cfg.model.kwargs), cfg.model.interface, **cfg.model.interface_kwargs)
    expected = []
    with torch.inference_mode():
        for start, stop in ((0, 3), (3, 4)):  # the job's batches
            ids = tokenizer(PROMPTS[start:stop], padding="max_length", max_length=8, truncation=True,
                            return_tensors="pt").input_ids
            emb = model(ids).last_hidden_state
            expected.append(build_sampler(cfg).sample(stop - start, "cpu", net=net, shape=(3, 8, 8), seed=2,
                                                      start_index=start, net_kwargs={"encoder_hidden_states": emb}))
    np.testing.assert_allclose(read_samples(cfg.run.output), torch.cat(expected).numpy(), rtol=0, atol=1e-6)


def test_text_columns_and_encoder_need_each_other(tmp_path):
    from pipeline.run.driver import prepare
    from pipeline.run.fingerprint import fingerprint_fields

    folder, _, _ = save_clip(tmp_path / "clip")
    cfg, _ = prompt_job(tmp_path)
    with pytest.raises(ConditioningError, match=r"text column\(s\) \['caption'\] need conditioning.text_encoder"):
        prepare(cfg)
    data = cfg.resolved()
    data["conditioning"] |= {"columns": {"class_labels": "caption"}, "text_encoder": str(folder)}
    pq.write_table(pa.table({"caption": [1, 2, 3, 4]}), tmp_path / "captions.parquet")
    with pytest.raises(ConditioningError, match=r"conditioning.text_encoder: no mapped column is text"):
        prepare(validate_config(data))
    model = {"conditioning": {"sha256": "t", "text_encoder": {"sha256": "e"}}}
    assert fingerprint_fields(cfg, model, {}, "v", {})["conditioning"]["text_encoder"] == "e"
    assert "text_encoder" not in fingerprint_fields(cfg, {"conditioning": {"sha256": "t"}}, {}, "v", {})["conditioning"]


def test_negative_prompt_is_encoded_once_for_the_classifier_free_guide(tmp_path):
    """negative_prompt "" with guidance_scale 4: the guide sees the encoding of "" for every row (Stable
    Diffusion's unconditional embedding), the network its row's prompt."""
    from pipeline.models.diffusers_folder import load
    from pipeline.output.reader import read_samples
    from pipeline.output.verify import verify_output
    from pipeline.run.driver import JobError, prepare
    from pipeline.run.sampling import build_sampler

    folder, tokenizer, model = save_clip(tmp_path / "clip")
    cfg, _ = prompt_job(tmp_path, text_encoder=str(folder), negative_prompt="")
    data = cfg.resolved()
    data["sampler"]["guidance_scale"] = 4.0
    cfg = validate_config(data)
    manifest = run_in_process(cfg)
    assert manifest.model["conditioning"]["negative_prompt"] == ""
    net = samplers.wrap(load(**cfg.model.kwargs), cfg.model.interface, **cfg.model.interface_kwargs)

    def encode(prompts):
        ids = tokenizer(prompts, padding="max_length", max_length=8, truncation=True, return_tensors="pt").input_ids
        return model(ids).last_hidden_state

    expected = []
    with torch.inference_mode():
        for start, stop in ((0, 3), (3, 4)):  # the job's batches
            expected.append(build_sampler(cfg).sample(
                stop - start, "cpu", net=net, shape=(3, 8, 8), seed=2, start_index=start, g_net=net,
                guidance_scale=4.0, net_kwargs={"encoder_hidden_states": encode(PROMPTS[start:stop])},
                guide_kwargs={"encoder_hidden_states": encode([""] * (stop - start))}))
    np.testing.assert_allclose(read_samples(cfg.run.output), torch.cat(expected).numpy(), rtol=0, atol=1e-5)
    with torch.inference_mode():
        unguided = build_sampler(cfg).sample(4, "cpu", net=net, shape=(3, 8, 8), seed=2,
                                             net_kwargs={"encoder_hidden_states": encode(PROMPTS)})
    assert not np.allclose(read_samples(cfg.run.output), unguided.numpy(), atol=1e-3)
    assert verify_output(cfg.run.output) == []
    data["conditioning"]["negative_prompt"] = "blurry"  # other negatives, other samples: no resume
    with pytest.raises(JobError, match=r'conditioning.negative_prompt: "" -> "blurry"'):
        prepare(validate_config(data))


def test_a_remote_encoder_updated_in_place_is_not_served_from_a_stale_cache(tmp_path, monkeypatch):
    """A remote text encoder is copied to a cache keyed by its URL only: after the folder was updated in place, every
    later job encoded with the old copy while its fingerprint recorded the new folder's sha256."""
    import fsspec

    from pipeline.text_encoder import TextEncoder

    monkeypatch.setenv("SEEDSHARD_CACHE", str(tmp_path / "cache"))
    url = f"memory://seedshard-test/{tmp_path.name}/encoder"
    fs = fsspec.filesystem("memory")
    old, _, _ = save_clip(tmp_path / "old")
    fs.put(f"{old}/", url, recursive=True)
    TextEncoder(url)(PROMPTS)  # fills the cache
    new, tokenizer, model = save_clip(tmp_path / "new")
    model = transformers.CLIPTextModel.from_pretrained(new)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    model.save_pretrained(new)
    fs.rm(url, recursive=True)
    fs.put(f"{new}/", url, recursive=True)
    ids = tokenizer(PROMPTS, padding="max_length", max_length=8, truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        expected = model(ids).last_hidden_state
    torch.testing.assert_close(TextEncoder(url)(PROMPTS), expected, rtol=0, atol=1e-6)


def test_an_encoder_other_than_the_jobs_is_refused_on_the_worker(tmp_path):
    """Workers get the sha256 the driver recorded: a folder changed since then is one line, not other embeddings."""
    from pipeline.text_encoder import TextEncoder

    folder, _, _ = save_clip(tmp_path / "clip")
    TextEncoder(str(folder), sha256=folder_sha256(str(folder)))
    with pytest.raises(ConditioningError, match=r"conditioning.text_encoder .* changed since the job started"):
        TextEncoder(str(folder), sha256="0" * 64)
