"""`phonereader bench all | e2e | naive | faults | soak`: the service measured and broken on purpose."""

from __future__ import annotations

from typing import Optional

import typer


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _settings(pairs: list[str] | None) -> dict[str, str]:
    """--set NAME=VALUE (Settings field names, e.g. batch_max_delay_ms=2) -> PHONEREADER_* variables."""
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r}: expected NAME=VALUE")
        out[f"PHONEREADER_{name.strip().upper().removeprefix('PHONEREADER_')}"] = value.strip()
    return out


SET_HELP = "A service setting for the stacks under test, NAME=VALUE (repeatable), e.g. corrections_enabled=false."


def register(app: typer.Typer, bench: typer.Typer) -> None:
    def table(workers: str, clients: str, seconds: float, bulk: int, images: int, naive: bool, model: bool,
              naive_bulk: bool, settings: list[str] | None = None) -> None:
        from bench.table import run_all

        run_all(_ints(workers), _ints(clients), seconds, bulk, images, naive, model, naive_bulk, _settings(settings))

    @bench.command("all")
    def bench_all(
        workers: str = typer.Option("1,2", help="Worker processes, comma-separated (one stack each)."),
        clients: str = typer.Option("1,8,32,128", help="Concurrent closed-loop clients, comma-separated."),
        seconds: float = typer.Option(10.0, help="Duration of each measurement."),
        bulk: int = typer.Option(2000, help="Line images in the bulk zip (0: skip)."),
        images: int = typer.Option(200, help="Distinct synthetic line images to draw requests from."),
        naive: bool = typer.Option(True, help="Also measure the naive baseline (--no-naive: our service only)."),
        naive_bulk: bool = typer.Option(True, help="Also send the bulk images to the naive baseline, one by one."),
        settings: Optional[list[str]] = typer.Option(None, "--set", help=SET_HELP),
    ) -> None:
        """The whole comparison: model only, naive baseline, end to end for each W and C, bulk, batch sizes."""
        table(workers, clients, seconds, bulk, images, naive, naive, naive and naive_bulk, settings)

    @bench.command("naive")
    def bench_naive(
        clients: str = typer.Option("1,8,32,128", help="Concurrent closed-loop clients, comma-separated."),
        seconds: float = typer.Option(10.0, help="Duration of each measurement."),
        bulk: int = typer.Option(0, help="Also send this many images one by one (0: skip)."),
        images: int = typer.Option(200, help="Distinct synthetic line images."),
    ) -> None:
        """The tutorials' design alone: one synchronous endpoint, the model in-process, one request at a time."""
        table("", clients, seconds, bulk, images, True, False, bulk > 0)

    @bench.command("faults")
    def bench_faults(
        which: str = typer.Option("worker,redis,gateway,backpressure", help="Scenarios, comma-separated."),
        items: int = typer.Option(500, help="Items in the bulk job the worker is killed under."),
        queue_limit: int = typer.Option(200, help="PHONEREADER_QUEUE_LIMIT for the backpressure scenario."),
    ) -> None:
        """Break one part at a time on a real stack; exits 1 if any promise is broken."""
        from bench.faults import run_faults
        from bench.load import line_images
        from bench.table import make_console

        console = make_console()
        images = [data for data, _ in line_images(50)]
        outcomes = run_faults(items, images, queue_limit, [w.strip() for w in which.split(",") if w.strip()],
                              log=console.log)
        for out in outcomes:
            console.print(f"{'passed' if out.passed else '[red]FAILED[/red]'}: {out.name}: {out.figures}")
            for p in out.problems:
                console.print(f"    problem: {p}")
        raise typer.Exit(0 if all(o.passed for o in outcomes) else 1)

    @bench.command("soak")
    def bench_soak(
        jobs: int = typer.Option(20_000, help="Jobs to run in a row."),
        clients: int = typer.Option(32, help="Concurrent closed-loop clients."),
        workers: int = typer.Option(2, help="Worker processes."),
        rounds: int = typer.Option(10, help="Memory is sampled after each round."),
        max_growth: float = typer.Option(0.25, help="Largest allowed memory growth after round 1 (0.25 = 25 %)."),
        images: int = typer.Option(200, help="Distinct synthetic line images."),
    ) -> None:
        """Sustained load: none lost, no errors, gateway and worker memory flat; exits 1 otherwise."""
        from bench.soak import run_soak

        raise typer.Exit(0 if run_soak(jobs, clients, workers, rounds, max_growth, images) else 1)
