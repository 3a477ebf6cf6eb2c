"""Object-store credentials (moto S3) never appear in logs, the manifest, shard files or error messages."""

import logging
import os

import pytest
import yaml

from pipeline.output.fs import open_output
from pipeline.cli import main
from tests.pipeline.jobs import gaussian_job

pytestmark = pytest.mark.slow
KEY_ID = "seedshard-fake-key-id"


def test_the_secret_is_in_no_output_log_or_error(ray2, s3, s3_secret, tmp_path, capsys, caplog):
    prefix, options = s3
    secret_options = {**options, "key": KEY_ID, "secret": s3_secret}  # explicit, and in the environment too
    url = f"{prefix}/creds-{os.getpid()}"
    data = gaussian_job(url, run={"num_samples": 30, "storage_options": secret_options}, cluster={"num_workers": 1}).resolved()
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(data))
    texts = []
    with caplog.at_level(logging.INFO):  # what `seedshard --debug` shows
        assert main(["generate", str(job)]) == 0
        assert main(["inspect", url, "--json", "--storage-options", yaml.safe_dump(secret_options)]) == 0
        # Errors that involve the storage and its options: a missing bucket, a missing checkpoint on S3,
        # another job on this output.
        for overrides in (["run.output=s3://no-such-bucket-4242/out"],
                          [f"model.checkpoint={prefix}/missing.safetensors"],
                          ["run.seed=5"]):
            assert main(["generate", str(job), *overrides]) == 1
            err = capsys.readouterr().err
            assert err.startswith("seedshard: error: ") and len(err.strip().splitlines()) == 1, err
            texts.append(err)
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text]
    fs, root = open_output(url, options)
    files = {path: fs.cat_file(path) for path in fs.find(root)}
    assert {p.rsplit("/", 1)[-1] for p in files} >= {"manifest.json", "shard-00000.parquet", "shard-00000.json"}
    manifest = yaml.safe_load(files[f"{root}/__seedshard__/manifest.json"])
    assert manifest["config"]["run"]["storage_options"] == {**options, "key": "***", "secret": "***"}
    for secret in (s3_secret, KEY_ID):
        assert not [path for path, data in files.items() if secret.encode() in data]
        leaks = [line for text in texts for line in text.splitlines() if secret in line]
        assert not leaks, leaks[:5]
    # Ray's own logs of this session (the actors received the options to write the shards)
    for dirpath, _, names in os.walk(ray2):
        for name in names:
            if name.endswith((".log", ".out", ".err", ".txt")):
                with open(os.path.join(dirpath, name), "rb") as f:
                    assert s3_secret.encode() not in f.read(), os.path.join(dirpath, name)
