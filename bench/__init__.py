"""Load, benchmarks and fault checks that drive the real service from the outside.

- ``load``: the HTTP load generators (closed-loop clients, open-loop arrivals), for our API and the baseline.
- ``naive``: the baseline, the tutorials' design: one synchronous endpoint, the model in-process.
- ``procs``: CPU and resident memory of each part (gateway, workers, Redis), to see which one saturates.
- ``table``: ``phonereader bench all``: model only, end to end, baseline, bulk, batch sizes; one table.
- ``faults``: worker kill -9, Redis restart, gateway restart, backpressure; ``soak``: 20,000 jobs in a row.

Every scenario sends traffic to 127.0.0.1 only, is bounded in count and time, and starts its own private
Redis (``api.up.Stack``), so it never touches anyone else's data.
"""
