"""The console tests' real OpenID Connect provider, one per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.oidc import MockIdP, running_idp


@pytest.fixture(scope="session")
def idp() -> Iterator[MockIdP]:
    with running_idp() as provider:
        yield provider
