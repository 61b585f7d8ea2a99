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
    s = Standin(workdir)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def envoy(workdir, standin):
    """Envoy with inferguard under the default policy (an empty configuration)."""
    e = Envoy(workdir, standin.address, "")
    yield e
    e.stop()


@pytest.fixture(scope="session")
def make_envoy(workdir, standin):
    """Starts extra Envoys with other plugin configurations; all are stopped at the end."""
    started = []

    def start(plugin_config: str, **kw):
        e = Envoy(workdir, kw.pop("upstream", standin.address), plugin_config, **kw)
        started.append(e)
        return e

    yield start
    for e in started:
        e.stop()
