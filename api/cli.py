"""`phonereader` subcommands owned by the `api` package: `gateway` and `up`."""

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def gateway(
        host: Optional[str] = typer.Option(None, help="Interface to listen on (default: PHONEREADER_HOST)."),
        port: Optional[int] = typer.Option(None, help="Port (default: PHONEREADER_PORT, 8000)."),
        log_level: str = typer.Option("info", help="uvicorn log level: debug, info, warning, error."),
        access_log: bool = typer.Option(False, help="Log every request."),
    ) -> None:
        """Run the HTTP gateway (uvicorn) against the Redis in REDIS_URL. Stateless: run as many as you like."""
        import logging

        import uvicorn

        from phonereader.config import get_settings

        settings = get_settings()
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        uvicorn.run("api.app:create_app", factory=True, host=host or settings.host, port=port or settings.port,
                    log_level=log_level, access_log=access_log, proxy_headers=True, server_header=False,
                    timeout_graceful_shutdown=10, timeout_keep_alive=settings.keep_alive_s)

    @app.command()
    def up(
        workers: int = typer.Option(2, min=1, help="Worker processes."),
        host: Optional[str] = typer.Option(None, help="Gateway interface (default: PHONEREADER_HOST, 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, help="Gateway port (default: PHONEREADER_PORT, 8000; 0 picks a free one)."),
        data_dir: Optional[Path] = typer.Option(None, help="Where Redis keeps its AOF (default: PHONEREADER_STATE_DIR/redis)."),
        log_level: str = typer.Option("warning", help="Log level of the parts: debug, info, warning, error."),
    ) -> None:
        """Run everything on this machine: a private Redis, the gateway and N workers. Ctrl-C stops it all."""
        from api.up import run_up
        from phonereader.config import get_settings

        settings = get_settings()
        raise typer.Exit(run_up(workers, host or settings.host, settings.port if port is None else port,
                                data_dir or settings.state_dir / "redis", log_level))

    @bench.command("queue")
    def bench_queue(
        workers: str = typer.Option("1,2", help="Worker counts, comma-separated."),
        clients: str = typer.Option("1,8,32", help="Concurrent closed-loop clients, comma-separated."),
        batch: str = typer.Option("128:1", help="batch_max_size:batch_max_delay_ms pairs, comma-separated."),
        concurrency: int = typer.Option(8, help="Task threads per worker."),
        chunk: int = typer.Option(1, help="Units per task."),
        seconds: float = typer.Option(8.0, help="Duration of each closed-loop measurement."),
        bulk: int = typer.Option(500, help="Line images in the bulk zip (0: skip)."),
        model_threads: int = typer.Option(1, help="ONNX Runtime threads per worker (0: one per core)."),
    ) -> None:
        """The whole service under load: images/s, latency percentiles, batch sizes, bulk time."""
        from api.benchmark import run_queue_benchmark

        pairs = [(int(a), float(b)) for a, b in (p.split(":") for p in batch.split(","))]
        run_queue_benchmark([int(w) for w in workers.split(",")], [int(c) for c in clients.split(",")], pairs,
                            concurrency, chunk, seconds, bulk, model_threads)
