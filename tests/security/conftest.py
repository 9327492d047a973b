"""The security tests' fixtures: their certificates and the secured Mosquitto of
``tests/support/secure_broker.py``, made once per session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.secure_broker import Pki, SecureBroker, make_pki, start_secure_broker


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The broker's CA and certificates, and an unrelated CA."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[SecureBroker]:
    secure = start_secure_broker(tmp_path_factory.mktemp("secure-mosquitto"), pki)
    yield secure
    secure.broker.stop()
