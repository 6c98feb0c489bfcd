"""A real S3 endpoint for tests: moto in server mode on 127.0.0.1.

The server speaks the S3 wire protocol over HTTP, so s3fs/botocore go through
their full request signing, retries and error parsing.  Credentials are
*validated*: at start-up we create an IAM user with an access key and a policy
allowing ``s3:*``, then switch moto's request authentication on (the
``/moto-api/reset-auth`` endpoint, i.e. ``INITIAL_NO_AUTH_ACTION_COUNT=0``).
From then on an unknown access key gives ``InvalidAccessKeyId`` and a wrong
secret gives ``SignatureDoesNotMatch``, exactly like AWS.

Anonymous requests (s3fs ``anon=True``) get 403 AccessDenied: moto does not
evaluate bucket policies for anonymous principals, so a *public* bucket cannot
be emulated; use the HTTP mirror for public read tests.

Note: moto keeps this auth switch in a process-global setting.  Tests that use
moto's in-process ``mock_aws`` at the same time would see it too; stop the
server (``S3Server.stop``) to restore the previous value.

Conditional writes: moto's PutObject honours ``If-None-Match: *`` and
``If-Match: <etag>`` (412 PreconditionFailed), and s3fs exposes the former as
``fs.pipe_file(path, data, mode="create")`` (raises ``FileExistsError``).
"""

from __future__ import annotations

import json
import socket
import uuid
from dataclasses import dataclass, field

from urllib.parse import quote, unquote

import boto3
import httpx
import moto.iam.access_control as _moto_access_control
from moto.server import ThreadedMotoServer

REGION = "us-east-1"

_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def _patch_moto_query_canonicalisation() -> None:
    """Work around a moto server-mode bug in signature checking.

    botocore sends ``/`` unescaped in S3 query strings (``prefix=a/``) but signs
    the canonical form (``prefix=a%2F``).  moto re-signs the raw URL, and
    botocore's URL canonicalisation does not re-escape it, so every listing
    with a prefix or delimiter fails with SignatureDoesNotMatch once
    authentication is on.  We canonicalise the query before moto re-signs.
    Only affects this in-process test server.
    """
    cls = _moto_access_control.IAMRequestBase
    if getattr(cls, "_mlds_patched", False):
        return
    original = cls._create_aws_request

    def _create_aws_request(self):
        path, sep, query = self._path.partition("?")
        if sep:
            pairs = []
            for pair in query.split("&"):
                key, eq, value = pair.partition("=")
                pairs.append(quote(unquote(key), safe="-_.~") + eq + quote(unquote(value), safe="-_.~"))
            self._path = path + "?" + "&".join(pairs)
        return original(self)

    cls._create_aws_request = _create_aws_request
    cls._mlds_patched = True

    # Anonymous (unsigned) requests make moto fail with a 500 (KeyError on the
    # Authorization header) once auth is on; answer 403 AccessDenied like AWS
    # does for a non-public bucket.
    s3cls = _moto_access_control.S3IAMRequest
    original_init = s3cls.__init__

    def __init__(self, *args, **kwargs):
        headers = kwargs.get("headers") or {}
        if "Authorization" not in headers:
            raise _moto_access_control.S3AccessDeniedError()
        original_init(self, *args, **kwargs)

    s3cls.__init__ = __init__


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """A running moto server.  ``key``/``secret`` are valid credentials."""

    endpoint_url: str
    key: str
    secret: str
    _server: ThreadedMotoServer = field(repr=False)
    _previous_auth: str = field(default="inf", repr=False)

    # -- helpers for tests ------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment variables that make the AWS credential chain pick up
        this server's valid credentials (for ``monkeypatch.setenv``)."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": REGION,
            "MLDS_S3_ENDPOINT_URL": self.endpoint_url,
        }

    @property
    def storage_options(self) -> dict:
        """Keyword arguments for ``s3fs.S3FileSystem`` (direct use in tests)."""
        return {
            "endpoint_url": self.endpoint_url,
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"region_name": REGION},
            "skip_instance_cache": True,
        }

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name=REGION,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """Create a fresh bucket and return its name (unique if not given)."""
        name = name or f"mlds-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        return f"s3://{bucket}/{prefix}".rstrip("/")

    def stop(self) -> None:
        try:
            httpx.post(f"{self.endpoint_url}/moto-api/reset-auth", content=self._previous_auth.encode(), timeout=5)
        except httpx.HTTPError:
            pass
        self._server.stop()


def start_s3_server(*, validate_credentials: bool = True) -> S3Server:
    _patch_moto_query_canonicalisation()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # Bootstrap with auth still off: any credentials are accepted.
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
    )
    user = f"mlds-test-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3-all", PolicyDocument=json.dumps(_POLICY))
    access = iam.create_access_key(UserName=user)["AccessKey"]
    previous = "inf"
    if validate_credentials:
        resp = httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0", timeout=10)
        resp.raise_for_status()
        previous = resp.json().get("PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT", "inf")
    return S3Server(
        endpoint_url=endpoint,
        key=access["AccessKeyId"],
        secret=access["SecretAccessKey"],
        _server=server,
        _previous_auth=previous,
    )
