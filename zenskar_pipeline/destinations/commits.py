"""How a Delta commit carries an application's version (the change feed's synced-through version) with the
data it lands, so that both become visible at once or not at all."""

from __future__ import annotations

from deltalake import CommitProperties, Transaction

from zenskar_pipeline.destinations.base import AppTransaction


def commit_properties(app_transaction: AppTransaction | None) -> CommitProperties | None:
    if app_transaction is None:
        return None
    return CommitProperties(app_transactions=[Transaction(app_transaction.app_id, app_transaction.version)])
