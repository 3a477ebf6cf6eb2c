"""`seedshard export` (pipeline.export): PNG folders, zip, ADM npz and WebDataset, read back by the tools they target;
and the standard FID promise: an in-job FID equals the FID of the exported PNGs."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.cli import main, parser
from pipeline.export import EXPORTS, export_output, image_name
from pipeline.output.reader import read_samples
from pipeline.output.shards import decode_shard
from tests.pipeline.jobs import gaussian_job, probe_job, write_output_in_process

N = 1005  # two PNG folders (000000/, 001000/), three shards


def make_output(url: str, dtype: str = "float32", shape=(3, 5, 4), labeled: bool = True, **run) -> str:
    """A complete output of N samples written in-process (labels = index % 10 when labelled)."""
    if labeled:
        cfg = probe_job(url)
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"shape": list(shape), "num_classes": 10})})
    else:
        cfg = gaussian_job(url, model={"shape": list(shape)})
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"num_samples": N, "shard_size": 400, "batch_size": 400,
                                                                   "dtype": dtype, **run})})
    write_output_in_process(cfg)
    return url


def edm_uint8(x: np.ndarray) -> np.ndarray:
    """EDM generate.py, line for line: (N, C, H, W) float -> (N, H, W, C) uint8."""
    return (torch.as_tensor(x) * 127.5 + 128).clip(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def float_output(tmp_path_factory):
    return make_output(str(tmp_path_factory.mktemp("export") / "out"))


def test_png_folder_in_edm_layout(float_output, tmp_path):
    x, labels = read_samples(float_output, with_labels=True)
    dest = tmp_path / "png"
    assert export_output(float_output, "png", str(dest), progress=False) == N
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == sorted([image_name(i) for i in range(N)] + ["dataset.json"])
    assert image_name(1004) == "001000/001004.png" and image_name(999) == "000000/000999.png"
    images = np.stack([np.asarray(Image.open(dest / image_name(i))) for i in range(N)])
    assert images.dtype == np.uint8 and images.shape == (N, 5, 4, 3)
    np.testing.assert_array_equal(images, edm_uint8(x))
    assert json.loads((dest / "dataset.json").read_text())["labels"] == [[image_name(i), i % 10] for i in range(N)]
    assert labels.tolist() == [i % 10 for i in range(N)]
    assert os.listdir(tmp_path) == ["png"]  # no temp left


def test_zip_holds_the_same_files(float_output, tmp_path):
    export_output(float_output, "png", str(tmp_path / "png"), progress=False)
    export_output(float_output, "zip", str(tmp_path / "x.zip"), progress=False)
    with zipfile.ZipFile(tmp_path / "x.zip") as z:
        assert z.testzip() is None
        names = z.namelist()
        assert sorted(names) == sorted([image_name(i) for i in range(N)] + ["dataset.json"])
        for name in (names[0], names[777], "dataset.json"):
            assert z.read(name) == (tmp_path / "png" / name).read_bytes()
        assert {info.date_time for info in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_npz_is_what_the_adm_evaluator_reads(float_output, tmp_path):
    x, labels = read_samples(float_output, with_labels=True)
    export_output(float_output, "npz", str(tmp_path / "x.npz"), progress=False)
    with np.load(tmp_path / "x.npz") as z:  # the ADM evaluator: np.load(path)["arr_0"]
        assert sorted(z.keys()) == ["arr_0", "arr_1"]
        assert z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (N, 5, 4, 3)
        np.testing.assert_array_equal(z["arr_0"], edm_uint8(x))
        np.testing.assert_array_equal(z["arr_1"], labels)


def test_uint8_storage_is_exported_as_stored_and_unlabelled_has_no_labels(tmp_path):
    url = make_output(str(tmp_path / "u8"), dtype="uint8", shape=(1, 3, 3), labeled=False)
    stored = read_samples(url)
    export_output(url, "npz", str(tmp_path / "x.npz"), progress=False)
    export_output(url, "png", str(tmp_path / "png"), progress=False)
    with np.load(tmp_path / "x.npz") as z:
        assert list(z.keys()) == ["arr_0"]
        np.testing.assert_array_equal(z["arr_0"], stored.transpose(0, 2, 3, 1))
    assert not (tmp_path / "png" / "dataset.json").exists()
    png = Image.open(tmp_path / "png" / image_name(1003))
    assert png.mode == "L"
    np.testing.assert_array_equal(np.asarray(png), stored[1003, 0])


def test_webdataset_export_is_read_by_webdataset(float_output, tmp_path):
    wds = pytest.importorskip("webdataset")
    x, labels = read_samples(float_output, with_labels=True)
    dest = tmp_path / "wds"
    export_output(float_output, "webdataset", str(dest), progress=False)
    assert sorted(os.listdir(dest)) == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    shards = [decode_shard((dest / name).read_bytes(), "webdataset") for name in sorted(os.listdir(dest))]
    np.testing.assert_array_equal(np.concatenate([s.samples for s in shards]), x)  # float32 kept as .npy
    assert shards[1].metadata["seedshard.seed"] == "1"
    urls = [str(dest / name) for name in sorted(os.listdir(dest))]
    rows = list(wds.WebDataset(urls, shardshuffle=False).decode().to_tuple("__key__", "npy", "cls"))
    assert [r[0] for r in rows] == [f"{i:010d}" for i in range(N)]
    np.testing.assert_array_equal(np.stack([r[1] for r in rows]), x)
    assert [r[2] for r in rows] == labels.tolist()


def test_refusals_leave_nothing_behind(float_output, tmp_path):
    (tmp_path / "taken.npz").write_bytes(b"keep me")
    with pytest.raises(ValueError, match="taken.npz already exists"):
        export_output(float_output, "npz", str(tmp_path / "taken.npz"), progress=False)
    assert (tmp_path / "taken.npz").read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="unknown export format 'jpg'; allowed: png, zip, npz, webdataset"):
        export_output(float_output, "jpg", str(tmp_path / "x"), progress=False)
    flat = make_output(str(tmp_path / "flat"), shape=(6,), labeled=False)
    with pytest.raises(ValueError, match=r"--to png needs image samples .* shape \[6\]"):
        export_output(flat, "png", str(tmp_path / "x"), progress=False)
    export_output(flat, "webdataset", str(tmp_path / "flat-wds"), progress=False)  # any shape
    assert sorted(os.listdir(tmp_path)) == ["flat", "flat-wds", "taken.npz"]


@pytest.mark.parametrize("to,dest", [("png", "png"), ("zip", "x.zip"), ("npz", "x.npz"), ("webdataset", "wds")])
def test_a_corrupt_shard_fails_the_export_atomically(tmp_path, to, dest):
    url = make_output(str(tmp_path / "out"), labeled=False)
    path = tmp_path / "out" / "shard-00002.parquet"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="shard-00002.parquet .* does not match its manifest entry"):
        export_output(url, to, str(tmp_path / dest), progress=False)
    assert os.listdir(tmp_path) == ["out"]  # neither DEST nor a temp file


def test_cli(float_output, tmp_path, capsys):
    assert main(["export", float_output, "--to", "npz", str(tmp_path / "x.npz"), "--no-progress"]) == 0
    assert f"exported {N} samples" in capsys.readouterr().out
    assert np.load(tmp_path / "x.npz")["arr_0"].shape == (N, 5, 4, 3)
    assert main(["export", float_output, "--to", "npz", str(tmp_path / "x.npz")]) == 2  # bad input: exit 2
    assert "already exists" in capsys.readouterr().err
    sub = next(a for a in parser()._subparsers._group_actions[0].choices["export"]._actions if a.dest == "to")
    assert tuple(sub.choices) == EXPORTS  # the CLI offers exactly the exports that exist


@pytest.mark.slow
def test_in_job_fid_equals_the_fid_of_the_exported_pngs(ray_local, tmp_path):
    from pipeline import load_config, run_job

    def demo(out, *overrides):
        return load_config("configs/demo.yaml", [f"run.output={tmp_path / out}", "run.progress=none", "run.grid=0",
                                                 "run.num_samples=120", "run.shard_size=50", "sampler.steps=4", *overrides])

    job = run_job(demo("out")).metrics["fid"]
    x = read_samples(str(tmp_path / "out"))
    assert ((x < -1) | (x > 1)).mean() > 0.01  # float storage outside [-1, 1]: clipping matters here
    export_output(str(tmp_path / "out"), "png", str(tmp_path / "png"), progress=False)
    assert main(["fid", "--samples", str(tmp_path / "png"), "--report", str(tmp_path / "png.json")]) == 0
    assert main(["fid", "--samples", str(tmp_path / "out"), "--report", str(tmp_path / "out.json")]) == 0
    wds = run_job(demo("wds", "run.format=webdataset", "run.dtype=float16")).metrics["fid"]
    pngs = json.loads((tmp_path / "png.json").read_text())
    assert pngs["num_samples"] == job["num_samples"] == 120
    assert pngs["fid"] == pytest.approx(job["fid"], rel=1e-5)
    assert json.loads((tmp_path / "out.json").read_text())["fid"] == pytest.approx(job["fid"], rel=1e-5)
    assert wds["fid"] == pytest.approx(job["fid"], rel=1e-2)  # float16 storage moves a few pixels by one level


def test_export_reads_any_backend(output, tmp_path):
    url, options = output
    make_output(url, dtype="uint8", shape=(3, 2, 2), labeled=False, storage_options=options)
    export_output(url, "npz", str(tmp_path / "x.npz"), storage_options=options, progress=False)
    with np.load(tmp_path / "x.npz") as z:
        np.testing.assert_array_equal(z["arr_0"], read_samples(url, storage_options=options).transpose(0, 2, 3, 1))
