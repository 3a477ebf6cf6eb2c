"""One rule for secrets (pipeline.redact): storage options by allowlist, URLs without userinfo or query,
and messages scrubbed of exact secret values, never of ordinary words."""

from __future__ import annotations

import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from pipeline.network import ModelError, read_checkpoint
from pipeline.redact import redact_options, redact_url, scrub, secrets

SIGNATURE = "9f3c0a7be21d44c6a1f0e5d2c3b4a5968778695a4b3c2d1e0f"
PRESIGNED = f"https://bucket.s3.amazonaws.com/w.pt?X-Amz-Credential=AKIAEXAMPLE42&X-Amz-Signature={SIGNATURE}"
ACCOUNT_KEY = "c2VlZHNoYXJkLWZha2UtYWNjb3VudC1rZXk="
CONNECTION = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
OPTIONS = {
    "endpoint_url": "http://alice:pw-12345678@minio:9000/?token=tok-abcdefgh",
    "region_name": "us-east-1", "anon": False, "key": "AKIA-id-1234", "secret": "s3cr3t-value",
    "connection_string": CONNECTION, "some_new_option": "unvetted-value",
    "client_kwargs": {"region_name": "eu-west-1", "aws_secret_access_key": "s3cr3t-value-2",
                      "headers": {"Authorization": "Bearer abcdefgh", "Cookie": "session=cookie-1234567"}},
    "config_kwargs": {"proxies": {"https": "http://proxyuser:proxy-pass-99@proxy:3128"}, "s3": {"addressing_style": "path"}},
}


def test_the_manifest_keeps_only_safe_options():
    assert redact_options(OPTIONS) == {
        "endpoint_url": "http://***@minio:9000/?***", "region_name": "us-east-1", "anon": False, "key": "***",
        "secret": "***", "connection_string": "***", "some_new_option": "***",
        "client_kwargs": {"region_name": "eu-west-1", "aws_secret_access_key": "***", "headers": "***"},
        "config_kwargs": {"proxies": "***", "s3": {"addressing_style": "path"}},
    }


@pytest.mark.parametrize("url, redacted", [
    ("s3://user:pw@bucket/x", "s3://***@bucket/x"),
    ("gs://bucket/x", "gs://bucket/x"),
    ("/local/path/w.safetensors", "/local/path/w.safetensors"),
    (PRESIGNED, "https://bucket.s3.amazonaws.com/w.pt?***"),
    ("https://u:p@host/w.pt?sig=abc#frag", "https://***@host/w.pt?***"),
])
def test_urls_lose_userinfo_and_query(url, redacted):
    assert redact_url(url) == redacted


@pytest.mark.parametrize("url", [
    "out/run #1", "/data/a#b/c", "out/run?1", "C:\\data\\out#1",  # local paths: '#' and '?' are file name characters
    "s3://bucket/x#y", "memory://bucket/x#y",  # object stores read '#' as part of the key
])
def test_a_path_holding_a_hash_or_question_mark_is_kept_whole(url):
    """redact_url cut local paths and object keys at '#' (run.output 'out/run #1' was stored in the manifest, and
    named in errors, as 'out/run '; '/data/a#b/c' as '/data/a'), masked a local '?1' as a query and lowercased 'C:'."""
    assert redact_url(url) == url
    assert redact_url("s3://user:pw@bucket/x#y") == "s3://***@bucket/x#y"


def test_messages_lose_every_secret_value_and_every_url_query(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", CONNECTION)
    text = (f"denied: key AKIA-id-1234, secret s3cr3t-value, Bearer abcdefgh, cookie-1234567, proxy-pass-99, "
            f"pw-12345678, tok-abcdefgh, unvetted-value at http://minio:9000 in us-east-1 and eu-west-1; "
            f"AccountKey={ACCOUNT_KEY}; GET {PRESIGNED} failed; signature {SIGNATURE} does not match")
    out = scrub(text, OPTIONS, [PRESIGNED])
    for secret in ("AKIA-id-1234", "s3cr3t-value", "Bearer abcdefgh", "cookie-1234567", "proxy-pass-99", "pw-12345678",
                   "tok-abcdefgh", "unvetted-value", ACCOUNT_KEY, SIGNATURE, "AKIAEXAMPLE42"):
        assert secret not in out, (secret, out)
    assert "http://minio:9000 in us-east-1 and eu-west-1" in out  # what helps and is no secret stays
    assert "https://bucket.s3.amazonaws.com/w.pt?***" in out


def test_ordinary_words_are_never_masked(monkeypatch):
    monkeypatch.setenv("SEEDSHARD_TEST_TOKEN", "shard")  # too short to be a secret worth a mask
    monkeypatch.setenv("SEEDSHARD_TEST_KEY_MODE", "disabled")  # a setting, not a secret
    options = {"region_name": "us-east-1", "endpoint_url": "http://minio:9000", "secret": "us"}
    text = "shard 3 in us-east-1 failed; auth disabled; http://minio:9000"
    assert scrub(text, options) == text
    assert not {"shard", "disabled", "us-east-1", "us"} & secrets(options)


def test_everything_under_an_unsafe_key_is_secret():
    options = {"credentials": {"user": "alice-user", "tokens": ["tok-1234", "tok-5678"]}}
    assert redact_options(options) == {"credentials": "***"}
    assert secrets(options) >= {"alice-user", "tok-1234", "tok-5678"}


def test_secret_environment_variables_are_scrubbed_but_not_ordinary_ones(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "env-token-9876")
    monkeypatch.setenv("XDG_SESSION_CLASS", "user")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert scrub("token env-token-9876; user; disabled") == "token ***; user; disabled"


@pytest.fixture
def http_server():
    """A local HTTP server that answers 404 for everything under a missing path; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_a_missing_presigned_checkpoint_prints_no_signature(http_server):
    url = f"{http_server}/missing/w.pt?X-Amz-Credential=AKIAEXAMPLE42&X-Amz-Signature={SIGNATURE}"
    with pytest.raises(ModelError) as err:
        read_checkpoint(url, None, 2**20)
    message = str(err.value)
    assert "cannot read" in message and "/missing/w.pt?***" in message and len(message.splitlines()) == 1
    assert SIGNATURE not in message and "AKIAEXAMPLE42" not in message


def test_the_manifest_config_holds_no_secret(monkeypatch, tmp_path):
    """What the manifest stores of a job with secret options, a presigned checkpoint and a URL with userinfo."""
    import json

    from pipeline.run.resume import manifest_config
    from tests.pipeline.jobs import gaussian_job

    cfg = gaussian_job("s3://writer:out-pass-1234@bucket/out", run={"storage_options": OPTIONS},
                       model={"checkpoint": PRESIGNED})
    stored = manifest_config(cfg)
    text = json.dumps(stored)
    for secret in ("AKIA-id-1234", "s3cr3t-value", "abcdefgh", "cookie-1234567", "proxy-pass-99", "pw-12345678",
                   ACCOUNT_KEY, SIGNATURE, "AKIAEXAMPLE42", "out-pass-1234", "unvetted-value"):
        assert secret not in text, secret
    assert stored["run"]["output"] == "s3://***@bucket/out"
    assert stored["model"]["checkpoint"] == "https://bucket.s3.amazonaws.com/w.pt?***"
    assert stored["run"]["storage_options"]["client_kwargs"]["region_name"] == "eu-west-1"


def test_a_presigned_fid_reference_leaves_no_secret_in_the_manifest_config_or_the_fid_report(tmp_path):
    """metrics.fid.ref (and the extractor's weights) may be presigned URLs too: the stored config and the FID report
    (fid.json, the manifest's metrics, the CLI's FID line, `inspect`) keep neither their userinfo nor their query."""
    import functools
    import json
    import shutil

    from pipeline.fid.reference import default_reference, fid_report, load_reference
    from pipeline.fid.stats import FeatureStats
    from pipeline.run.resume import manifest_config
    from tests.pipeline.jobs import gaussian_job

    shutil.copy(default_reference("digits"), tmp_path / "ref.npz")
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ref = f"http://reader:ref-pass-1234@127.0.0.1:{server.server_port}/ref.npz?X-Amz-Signature={SIGNATURE}"
        weights = PRESIGNED
        cfg = gaussian_job(str(tmp_path / "out"), metrics={"fid": {"ref": ref, "extractor_kwargs": {"weights": weights}}})
        mu, sigma = load_reference(ref)
        stats = FeatureStats(mu.shape[0])
        rng = np.random.default_rng(0)
        stats.update(rng.multivariate_normal(mu, sigma + 1e-3 * np.eye(len(mu)), size=50))
        report = fid_report(stats, "digits", ref)
    finally:
        server.shutdown()
    text = json.dumps(manifest_config(cfg)) + json.dumps(report)
    for secret in (SIGNATURE, "ref-pass-1234", "AKIAEXAMPLE42"):
        assert secret not in text, secret
    assert report["reference"] == f"http://***@127.0.0.1:{server.server_port}/ref.npz?***"
