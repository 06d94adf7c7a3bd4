"""The data fingerprint borrows a pooled DB-API connection in autocommit: it must give it back as it found it."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from stevedores_operations import summary


@pytest.mark.timeout(60)
def test_a_failing_fingerprint_returns_its_connection_in_transactional_mode(postgres_url: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)  # one connection: the next checkout reuses it
    try:
        monkeypatch.setattr(summary, "FINGERPRINT_SQL", "SELECT 1 / 0")  # an error that is not a dropped connection
        with pytest.raises(DBAPIError):
            summary.data_fingerprint(engine)
        raw = engine.raw_connection()
        try:
            assert raw.driver_connection.autocommit is False
        finally:
            raw.close()
        with engine.begin() as conn:  # a transaction really is one: a rolled-back write leaves nothing
            assert conn.execute(text("SELECT txid_current_if_assigned() IS NULL")).scalar() is True
            conn.execute(text("CREATE TEMP TABLE t (x int) ON COMMIT DROP"))
            assert conn.execute(text("SELECT txid_current_if_assigned() IS NOT NULL")).scalar() is True
    finally:
        engine.dispose()
