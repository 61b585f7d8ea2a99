import json
import os
import shutil

import pytest

from harness import Envoy, Standin, tempdir


@pytest.fixture(scope="session")
def workdir():
    d = tempdir()
    yield d
    if not os.environ.get("KEEP_E2E_LOGS"):
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def standin(workdir):
    """The upstream behind the default route, over TLS (certs/upstream.crt, upstream.inferguard.test)."""
    s = Standin(workdir, cert="upstream")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def plain_standin(workdir):
    """The plaintext upstream behind the `legacy-plaintext` route (`Host: legacy.inferguard.test`)."""
    s = Standin(workdir)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def envoy(workdir, standin, plain_standin):
    """Envoy with inferguard under the default policy (an empty configuration)."""
    e = Envoy(workdir, standin.address, "", plain_upstream=plain_standin.address)
    yield e
    e.stop()


@pytest.fixture(scope="session")
def files_envoy(workdir, standin, plain_standin):
    """Envoy with inferguard under the default policy, plus the OpenAI files API (`/v1/files/...`)
    admitted: for tests of what is scanned on a path that is not an inference API."""
    e = Envoy(workdir, standin.address, json.dumps({"admission": {"endpoints": ["/v1/files/"]}}),
              plain_upstream=plain_standin.address)
    yield e
    e.stop()


@pytest.fixture(scope="session")
def make_envoy(workdir, standin, plain_standin):
    """Starts extra Envoys with other plugin configurations (keywords as `harness.Envoy` takes
    them: upstream=, upstream_plaintext=, upstream_sni=, log_jwt_metadata=, ...); all are stopped
    at the end."""
    started = []

    def start(plugin_config: str, **kw):
        kw.setdefault("plain_upstream", plain_standin.address)
        e = Envoy(workdir, kw.pop("upstream", standin.address), plugin_config, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()
