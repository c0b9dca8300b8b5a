"""Training, evaluation, export and benchmarks of the digit models (torch is imported lazily by the CLI)."""

import os

# OpenMP threads that spin while waiting make torch collapse (40x slower, measured) when other processes
# share the 2 cores; sleeping waiters cost little when the machine is idle. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
