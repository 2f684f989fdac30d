"""Train SPLADE-doc from a YAML config: `python train.py --config configs/tiny_cpu.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, help="Train SPLADE-doc; every saved checkpoint is evaluated.")


@app.command()
def main(
    config: Annotated[Path, typer.Option("--config", "-c", help="Training config (YAML).")],
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint of output_dir.")] = False,
    allow_change: Annotated[
        list[str] | None,
        typer.Option(
            help="With --resume: a setting that may differ from the checkpoint's (train.max_steps, "
            "train.save_every, train.log_every, train.keep_checkpoints); repeatable; recorded."
        ),
    ] = None,
    leaderboard: Annotated[
        Path | None, typer.Option(help="Leaderboard database (default: the harness's).")
    ] = None,
) -> None:
    """Train, evaluating every checkpoint on the config's eval datasets into the leaderboard."""
    import os
    import sqlite3

    import torch
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from common.errors import WorkbenchError
    from harness.console import console, describe_error, fail
    from harness.leaderboard import default_path
    from harness.training import check_before_training, make_trainer, progress_line
    from models.config import TrainingConfig
    from models.trainer import NonFiniteError, RunComplete

    hf_logging.disable_progress_bar()
    try:
        cfg = TrainingConfig.from_yaml(config)
        check_before_training(cfg, config, resume=resume, allow_changes=allow_change or ())
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(), TextColumn("{task.fields[parts]}"), console=console,
            disable=not console.is_terminal,
        ) as progress:  # fmt: skip
            task = progress.add_task(cfg.name, total=cfg.train.max_steps, parts="")

            def show(record: dict[str, float]) -> None:
                if not console.is_terminal:  # logs: a bar never draws there, so one line per log_every
                    samples = cfg.train.batch_size * cfg.train.grad_accum
                    line = progress_line(record, cfg.train.max_steps, samples)
                    console.print(line, highlight=False, soft_wrap=True)
                    return
                parts = " ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in {"step"})
                progress.update(task, completed=record["step"], parts=parts)

            trainer = make_trainer(cfg, leaderboard or default_path(), log=show, resume=resume)
            result = trainer.train(resume=resume, allow_changes=allow_change or ())
    except RunComplete as exc:
        console.print(escape(str(exc)), soft_wrap=True)
        return
    except (WorkbenchError, ValueError, OSError, sqlite3.Error) as exc:  # bad input, environment
        raise fail(describe_error(exc)) from None
    except NonFiniteError as exc:
        console.print(
            f"[red]stopped:[/] {escape(str(exc))}; the last good checkpoint is kept", soft_wrap=True
        )
        raise typer.Exit(3) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] a checkpoint was saved; continue with --resume")
        raise typer.Exit(130) from None
    console.print(
        f"{cfg.name}: {result.steps} steps in {result.seconds:.0f} s; best {cfg.eval.metric} "
        f"{result.best_metric if result.best_metric is None else round(result.best_metric, 4)} "
        f"at step {result.best_step}; models in {cfg.output_dir}"
    )


if __name__ == "__main__":
    app()
