"""The job fingerprint (pipeline/run/fingerprint.py) and what it decides: resume keeps only shards of the
same job, refuses each field that changes bytes by name (old -> new), ignores what does not, grows a job;
weights are identical by construction on every worker."""

import json
import os
import shutil

import pytest

from pipeline.output.layout import SIDE_DIR, side_path
from pipeline.output.verify import verify_output
from pipeline.run.driver import JobError, execute, prepare, run_job
from tests.pipeline.jobs import digests, gaussian_job, job_identity, reference_digests, snapshot, write_output_in_process

GUIDE = {"factory": "pipeline.models.gaussian:build_gaussian", "kwargs": {"interface": "edm", "s": 0.9},
         "interface": "edm", "shape": [3, 4]}


def fingerprint(url, **sections):
    return job_identity(gaussian_job(url, **sections))[3]


def test_the_fingerprint_changes_with_what_changes_bytes_and_only_with_that(tmp_path):
    url = str(tmp_path / "out")
    base = fingerprint(url)
    changes_bytes = [{"run": {"seed": 2}}, {"run": {"batch_size": 7}}, {"run": {"shard_size": 10}},
                     {"run": {"dtype": "float16"}}, {"run": {"format": "safetensors"}}, {"cluster": {"cpus_per_worker": 2}},
                     {"sampler": {"steps": 4}}, {"model": {"kwargs": {"interface": "edm", "s": 0.7}}},
                     {"model": {"guide": GUIDE}, "sampler": {"guidance_scale": 2.0}},
                     {"model": {"dtype": "bfloat16"}}, {"model": {"autocast": "bf16"}}]
    for change in changes_bytes:
        assert fingerprint(url, **change) != base, change
    same_bytes = [{"run": {"num_samples": 500}}, {"run": {"on_nonfinite": "skip"}},
                  {"run": {"progress": "log"}}, {"cluster": {"num_workers": 1, "max_restarts": 0, "cpus_per_worker": 1.5}},
                  {"run": {"output": str(tmp_path / "elsewhere")}}]
    for change in same_bytes:
        assert fingerprint(url, **change) == base, change
    image = {"shape": [1, 4, 4]}  # run.grid needs image samples
    assert fingerprint(url, model=image, run={"grid": 4}) == fingerprint(url, model=image)
    assert fingerprint(url, model={"guide": GUIDE}, sampler={"guidance_scale": 2.0}) != \
        fingerprint(url, model={"guide": GUIDE}, sampler={"guidance_scale": 3.0})


def test_the_device_type_workers_sample_on_is_in_the_fingerprint(tmp_path):
    """cluster.device: auto means cuda with GPUs (a worker without CUDA then refuses to start), cpu keeps the GPU
    reservation but samples on the CPU: a different device type, a different fingerprint."""
    url = str(tmp_path / "out")
    gpu_auto = fingerprint(url, cluster={"gpus_per_worker": 1})
    assert gpu_auto == fingerprint(url, cluster={"gpus_per_worker": 1, "device": "cuda"}) != fingerprint(url)
    assert fingerprint(url, cluster={"gpus_per_worker": 1, "device": "cpu"}) == fingerprint(url)


def test_manifest_shards_and_sidecars_carry_the_fingerprint(tmp_path):
    cfg = gaussian_job(str(tmp_path / "out"))
    manifest = write_output_in_process(cfg)
    from pipeline.output.fs import open_output
    from pipeline.output.shards import decode_shard

    fs, root = open_output(cfg.run.output)
    assert manifest.fingerprint == job_identity(cfg)[3] and len(manifest.fingerprint) == 64
    for record in manifest.shards:
        assert decode_shard(fs.cat_file(f"{root}/{record.path}"), "parquet").metadata["seedshard.fingerprint"] == manifest.fingerprint
        assert json.load(open(side_path(cfg.run.output, record.path.replace(".parquet", ".json"))))["fingerprint"] == manifest.fingerprint


def test_resume_does_not_keep_a_shard_of_another_job(tmp_path):
    """Issue 14 case 2: shard 1 of a guidance_scale=3 job copied into a guidance_scale=2 job."""
    other = gaussian_job(str(tmp_path / "other"), model={"guide": GUIDE}, sampler={"guidance_scale": 3.0})
    cfg = gaussian_job(str(tmp_path / "out"), model={"guide": GUIDE}, sampler={"guidance_scale": 2.0})
    write_output_in_process(other)
    write_output_in_process(cfg)
    for name in ("shard-00001.parquet", f"{SIDE_DIR}/shard-00001.json"):
        shutil.copy(os.path.join(other.run.output, name), os.path.join(cfg.run.output, name))
    plan = prepare(cfg)
    assert [s.index for s in plan.todo] == [1] and [r.index for r in plan.done] == [0, 2, 3]
    text = "\n".join(verify_output(cfg.run.output))
    assert "shard-00001.parquet: metadata seedshard.fingerprint is" in text
    assert "shard-00001.json: disagrees with the manifest on bytes, sha256, fingerprint" in text


def test_resume_names_each_field_that_changes_bytes_with_old_and_new_value(tmp_path):
    url = str(tmp_path / "out")
    write_output_in_process(gaussian_job(url))
    before = snapshot(url)
    with pytest.raises(JobError) as e:
        prepare(gaussian_job(url, run={"seed": 2, "num_samples": 50}, cluster={"cpus_per_worker": 2}))
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{url} holds a different job (run.seed: 1 -> 2; torch.threads: 1 -> 2; "
                              "run.num_samples: 70 -> 50 (an output grows, never shrinks)); set run.overwrite=true")
    with pytest.raises(JobError, match=r"\(sampler.steps: 8 -> 9\)"):
        prepare(gaussian_job(url, sampler={"steps": 9}))
    assert snapshot(url) == before


def test_resume_ignores_what_does_not_change_bytes(tmp_path):
    ckpt = tmp_path / "a" / "net.safetensors"
    ckpt.parent.mkdir()
    from safetensors.torch import save_file

    from tests.pipeline.random_nets import random_init

    save_file({k: v.contiguous() for k, v in random_init().state_dict().items()}, str(ckpt))
    model = {"factory": "tests.pipeline.random_nets:random_init", "kwargs": {}, "checkpoint": str(ckpt),
             "shape": [1, 4, 4]}  # image samples: run.grid may change
    url = str(tmp_path / "out")
    write_output_in_process(gaussian_job(url, model=model))
    moved = tmp_path / "b" / "copy.safetensors"
    moved.parent.mkdir()
    shutil.copy(ckpt, moved)
    resumed = gaussian_job(url, model={**model, "checkpoint": str(moved)},
                           run={"on_nonfinite": "skip", "grid": 4, "progress": "log", "take_over_lease": True},
                           cluster={"num_workers": 1, "max_restarts": 0, "max_shard_attempts": 1,
                                    "shard_timeout_s": 30.0, "retry_backoff_s": 0.5})
    plan = prepare(resumed)
    assert plan.todo == () and [r.index for r in plan.done] == [0, 1, 2, 3]


def test_an_output_written_before_fingerprints_still_verifies_and_resumes(tmp_path):
    cfg = gaussian_job(str(tmp_path / "out"))
    write_output_in_process(cfg)
    for name in os.listdir(side_path(cfg.run.output, "")):
        if name.endswith(".json"):
            path = side_path(cfg.run.output, name)
            data = json.load(open(path))
            for key in ("fingerprint", "runtime"):
                data.pop(key, None)
            for shard in data.get("shards", []):
                shard.pop("fingerprint")
            json.dump(data, open(path, "w"))
    assert verify_output(cfg.run.output) == []
    plan = prepare(cfg)
    assert plan.todo == () and plan.manifest.fingerprint is None


def test_lowering_num_samples_is_refused_unless_overwrite(tmp_path):
    url = str(tmp_path / "out")
    write_output_in_process(gaussian_job(url))
    with pytest.raises(JobError, match=r"\(run.num_samples: 70 -> 50 \(an output grows, never shrinks\)\)"):
        prepare(gaussian_job(url, run={"num_samples": 50}))
    assert prepare(gaussian_job(url, run={"num_samples": 50, "overwrite": True})).done == ()


@pytest.mark.slow
def test_raising_num_samples_grows_a_job_to_the_bytes_of_a_fresh_run(ray2, tmp_path):
    url = str(tmp_path / "out")
    write_output_in_process(gaussian_job(url))  # 70 samples: shards [0,20) [20,40) [40,60) [60,70)
    before = snapshot(url)
    grown = gaussian_job(url, run={"num_samples": 105}, cluster={"num_workers": 1})
    plan = prepare(grown)
    assert [s.index for s in plan.todo] == [3, 4, 5]  # the partial shard 3 and the new ones
    manifest = run_job(grown)
    assert manifest.status == "complete" and manifest.num_samples == 105
    assert digests(manifest) == reference_digests(grown)
    after = snapshot(url)
    kept = [name for k in (0, 1, 2) for name in (f"shard-0000{k}.parquet", f"{SIDE_DIR}/shard-0000{k}.json")]
    assert {n: after[n] for n in kept} == {n: before[n] for n in kept}  # untouched: same mtime
    assert verify_output(url) == []


@pytest.mark.slow
def test_a_randomly_initialised_factory_gives_the_same_bytes_on_any_number_of_workers(ray2, tmp_path):
    """Issue 14 case 1: every process seeds torch randomly (tests.pipeline.random_nets)."""
    model = {"factory": "tests.pipeline.random_nets:random_init", "kwargs": {}}
    runs = [run_job(gaussian_job(str(tmp_path / f"w{n}-{k}"), model=model, cluster={"num_workers": n, "max_in_flight": 1}))
            for n, k in ((1, 0), (2, 0), (2, 1))]
    expected = reference_digests(gaussian_job(str(tmp_path / "ref"), model=model))
    assert [digests(m) for m in runs] == [expected] * 3
    assert len({m.model["sha256"] for m in runs}) == 1


@pytest.mark.slow
def test_a_factory_whose_file_changes_between_driver_and_workers_fails_before_any_shard(ray2, tmp_path):
    scale = tmp_path / "scale.txt"
    scale.write_text("1.0")
    cfg = gaussian_job(str(tmp_path / "out"), model={"factory": "tests.pipeline.random_nets:random_init",
                                                     "kwargs": {"scale_file": str(scale)}})
    plan = prepare(cfg)
    scale.write_text("2.0")  # a training run writes its next checkpoint while the job starts
    with pytest.raises(JobError, match=r"a worker failed to start: .*differ from the driver's"):
        execute(plan)
    assert not os.path.exists(cfg.run.output) or not [n for n in os.listdir(cfg.run.output) if n.startswith("shard-")]


def test_a_malformed_sidecar_or_manifest_is_a_one_line_refusal_or_a_regeneration_not_a_crash(tmp_path):
    cfg = gaussian_job(str(tmp_path / "out"))
    write_output_in_process(cfg)
    side = side_path(cfg.run.output, "shard-00002.json")
    json.dump({**json.load(open(side)), "index": "4"}, open(side, "w"))
    assert [s.index for s in prepare(cfg).todo] == [2]
    path = side_path(cfg.run.output, "manifest.json")
    data = json.load(open(path))
    data["sampler_state"].pop("name")
    json.dump(data, open(path, "w"))
    with pytest.raises(JobError, match=r"holds a different job \(sampler.name: \(none\) -> \"heun\"\); set run.overwrite=true"):
        prepare(cfg)
    data["config"]["run"] = [1, 2]
    json.dump(data, open(path, "w"))
    with pytest.raises(JobError, match=r"^\S+: its manifest cannot be read as a job \(.*\); set run.overwrite=true"):
        prepare(cfg)


def test_a_decoder_factorys_kwargs_are_part_of_the_fingerprint(tmp_path):
    """A decoder factory's kwargs may change every stored byte without changing a weight (here a parameter-free
    clamp): like the model's factory and kwargs they are part of the job, or a resume would keep shards decoded
    one way beside shards decoded another."""
    url = str(tmp_path / "out")

    def clamped(lo):
        return gaussian_job(url, model={"decoder": {"factory": "torch.nn:Hardtanh", "kwargs": {"min_val": lo, "max_val": 1.0},
                                                    "shape": [3, 4]}})

    assert reference_digests(clamped(-1.0)) != reference_digests(clamped(-0.5))
    assert job_identity(clamped(-1.0))[3] != job_identity(clamped(-0.5))[3]


_ISA_PROBE = """
import json, sys
import torch
from pipeline.config import validate_config
from tests.pipeline.jobs import job_identity, reference_digests
cfg = validate_config(json.loads(sys.argv[1]))
print(json.dumps([job_identity(cfg)[3], reference_digests(cfg), torch.backends.cpu.get_cpu_capability()]))
"""


def test_the_cpu_kernels_a_worker_samples_with_are_part_of_the_fingerprint(tmp_path):
    """Same weights, threads and batch layout, yet torch's CPU kernels for another instruction set (an older or an
    ARM node; ATEN_CPU_CAPABILITY=default here) give other float32 bits. DESIGN counts the CPU vector width among
    what the bytes depend on; a resume on such a worker kept the old shards and wrote new ones under the same
    fingerprint (seen on a Ray cluster whose raylet had ATEN_CPU_CAPABILITY=default: verify OK, bytes differ)."""
    import subprocess
    import sys

    diffusers = pytest.importorskip("diffusers")
    import torch

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                                 down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    diffusers.DDIMPipeline(unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(tmp_path / "pipe")
    job = {"run": {"num_samples": 4, "seed": 0, "shard_size": 4, "batch_size": 4, "output": str(tmp_path / "out")},
           "model": {"diffusers": {"path": str(tmp_path / "pipe"), "subfolder": "unet"}, "shape": [3, 8, 8]},
           "sampler": {"name": "ddim", "steps": 3, "time_dist": "diffusers"}}

    def probe(capability):  # started, not waited for: both run side by side
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        env.update({"ATEN_CPU_CAPABILITY": capability} if capability else {})
        return subprocess.Popen([sys.executable, "-c", _ISA_PROBE, json.dumps(job)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=os.getcwd())

    def result(process):
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    native_run, plain_run = probe(None), probe("default")
    (fingerprint, digest, native), (plain_fingerprint, plain_digest, plain) = result(native_run), result(plain_run)
    if native == plain:
        pytest.skip(f"this CPU's kernels are torch's default ones ({native})")
    assert digest != plain_digest  # the bytes differ ...
    assert fingerprint != plain_fingerprint  # ... so the job must
