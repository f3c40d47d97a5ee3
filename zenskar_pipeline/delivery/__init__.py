"""Usage events to Zenskar, exactly once: the copy's rows of a window become events (`events.py`), planned
into batches recorded in a ledger beside the copy before they are sent (`ledger.py`), sent with their
idempotency keys and retried (`client.py`), and answered into the ledger or the dead letters
(`deliver.py`). `settings.py` checks a stream's `deliver:` block against its source; `resource.py` is the
connection, as the Dagster resource `zenskar`.
"""
