"""`phonereader` subcommands owned by the `worker` package: `worker`, `worker-health` and `bench batcher`."""

from typing import Optional

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def worker(
        concurrency: Optional[int] = typer.Option(None, help="Task threads (default: PHONEREADER_WORKER_CONCURRENCY)."),
        name: Optional[str] = typer.Option(None, help="Name in heartbeats and results (default: host-pid)."),
        loglevel: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
    ) -> None:
        """Run one worker: load the model once, then read tasks from Redis (REDIS_URL) until Ctrl-C."""
        from phonereader.config import get_settings
        from phonereader.modelcard import ModelFileError
        from worker.service import run_worker

        try:
            run_worker(get_settings(), concurrency, name, loglevel)
        except ModelFileError as e:
            typer.echo(f"error: cannot load the model: {e}", err=True)
            raise typer.Exit(2)

    @app.command("worker-health")
    def worker_health() -> None:
        """Exit 0 if a worker on this host has a live heartbeat in Redis (a container healthcheck)."""
        from phonereader.config import get_settings
        from worker.health import check

        ok, message = check(get_settings())
        typer.echo(message, err=not ok)
        raise typer.Exit(0 if ok else 1)

    @bench.command("batcher")
    def bench_batcher(
        clients: str = typer.Option("1,8,32", help="Concurrent callers, comma-separated."),
        sizes: str = typer.Option("32,128,256", help="batch_max_size values to try."),
        delays: str = typer.Option("0,1,5", help="batch_max_delay_ms values to try."),
        crops: int = typer.Option(11, help="Crops per request (a phone number)."),
        seconds: float = typer.Option(2.0, help="Duration of each measurement."),
        threads: int = typer.Option(1, help="ONNX Runtime threads (0: one per core)."),
    ) -> None:
        """Model throughput by batch size, then the dynamic batcher under concurrent callers."""
        from worker.benchmark import run_batcher_benchmark

        ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
        run_batcher_benchmark(ints(clients), ints(sizes), [float(x) for x in delays.split(",")], crops, seconds, threads)
