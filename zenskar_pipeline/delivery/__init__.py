"""Usage events to Zenskar, exactly once. The copy's rows of a window become events (`events.py`), planned
into batches (`batches.py`) recorded in a ledger beside the copy before they are sent (`ledger.py`), sent
with their idempotency keys and retried (`client.py`, `sending.py`), and answered into the ledger or the
dead letters; `deliver.py` runs the steps, `run.py` holds what a run is given and reports. `settings.py`
checks a stream's `deliver:` block against its source; `resource.py` is the connection, as the Dagster
resource `zenskar`.
"""
