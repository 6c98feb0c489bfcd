from __future__ import annotations

import pytest

from mlds.remotes.rdm.client import RDMClient
from tests.servers.rdm_server import TOKEN_ADMIN, RDMServer


@pytest.fixture
def srv():
    with RDMServer.default() as s:
        yield s


@pytest.fixture
def make_client(srv):
    made = []

    def make(token=TOKEN_ADMIN, **kw):
        kw.setdefault("backoff", 0.001)
        kw.setdefault("max_backoff", 0.01)
        kw.setdefault("retries", 5)
        c = RDMClient(token, srv.api_url, remote="rdm-test", **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(make_client):
    return make_client()
