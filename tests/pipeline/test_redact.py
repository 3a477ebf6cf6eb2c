"""One rule for secrets (pipeline.redact): the manifest's masking and the error messages' scrubbing agree."""

from __future__ import annotations

from pipeline.redact import redact_options, redact_url, scrub, secrets

OPTIONS = {"endpoint_url": "http://minio:9000", "key": "AKIA-id-1234", "client_kwargs": {
    "region_name": "eu-west-1", "aws_secret_access_key": "s3cr3t-value", "headers": {"Authorization": "Bearer abcd"}}}


def test_secret_named_values_are_masked_in_options_and_messages():
    assert redact_options(OPTIONS) == {"endpoint_url": "http://minio:9000", "key": "***", "client_kwargs": {
        "region_name": "eu-west-1", "aws_secret_access_key": "***", "headers": {"Authorization": "***"}}}
    assert secrets(OPTIONS) >= {"AKIA-id-1234", "s3cr3t-value", "Bearer abcd"}
    text = "denied: key AKIA-id-1234, secret s3cr3t-value, Bearer abcd at http://minio:9000 in eu-west-1"
    assert scrub(text, OPTIONS) == "denied: key ***, secret ***, *** at http://minio:9000 in eu-west-1"


def test_everything_under_a_secret_key_is_secret():
    options = {"credentials": {"user": "alice-user", "tokens": ["tok-1234", "tok-5678"]}}
    assert redact_options(options) == {"credentials": "***"}
    assert secrets(options) >= {"alice-user", "tok-1234", "tok-5678"}


def test_secret_environment_variables_are_scrubbed_but_not_ordinary_ones(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_TOKEN", "env-token-9876")
    monkeypatch.setenv("XDG_SESSION_CLASS", "user")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert scrub("token env-token-9876; user; disabled") == "token ***; user; disabled"


def test_url_user_info_is_masked():
    assert redact_url("s3://user:pw@bucket/x") == "s3://***@bucket/x"
    assert redact_url("gs://bucket/x") == "gs://bucket/x"
