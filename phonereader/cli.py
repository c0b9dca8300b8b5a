"""The ``phonereader`` command. Each package adds its own subcommands, so this file stays a table of contents.

Heavy imports (torch, onnxruntime, celery) happen inside the commands, so ``phonereader --help`` is instant.
"""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.splitlines()[0])
bench = typer.Typer(no_args_is_help=True, help="Benchmarks: they print figures, compare within one run.")
app.add_typer(bench, name="bench")

from training.cli import register as _register_training  # noqa: E402
from worker.cli import register as _register_worker  # noqa: E402
from worker.recognition.cli import register as _register_recognition  # noqa: E402
from api.cli import register as _register_api  # noqa: E402
from bench.cli import register as _register_bench  # noqa: E402

_register_training(app, bench)
_register_recognition(app, bench)
_register_worker(app, bench)
_register_api(app, bench)
_register_bench(app, bench)

if __name__ == "__main__":
    app()
