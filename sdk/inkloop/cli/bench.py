"""``inkloop bench``: the throughput benchmark as a command (see :mod:`inkloop.benchmarks.bench`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def served_contender(
    model: str | None, triton: str | None, local_model: str | None
) -> tuple[str | None, str | None]:
    """``--model triton://…`` names the served contender: the benchmark's question is always "this
    pipeline with local inference vs through the server", so a served model needs a local copy to
    stand beside it (``--local-model``, default the bundled model; the report checks it is the same
    model by the cards' SHA-256). Returns the (local model, served model) pair."""
    from inkloop.models.references import is_triton_ref

    if model is None or not is_triton_ref(model):
        if local_model is not None:
            raise typer.BadParameter("--local-model only goes with --model triton://…")
        return model, triton
    if triton is not None:
        raise typer.BadParameter(f"--model {model} and --triton {triton} both name a served model; give one")
    return local_model, model


def bench_command(
    model: Annotated[
        str | None,
        typer.Option(
            help="Model reference (default: the bundled model). A served model (triton://host:port/model) "
            "is measured against its local copy (--local-model), as with --triton."
        ),
    ] = None,
    local_model: Annotated[
        str | None,
        typer.Option(help="With --model triton://…: the local copy to compare with (default: bundled)."),
    ] = None,
    pages: Annotated[
        int | None,
        typer.Option(
            help="Pages per input kind (images, scanned PDFs, born-digital PDFs). Default 120, --quick 8."
        ),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(help="Timed rounds per contender; the median is reported. Default 3, --quick 1."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Pipeline batch size (default: the pipeline's).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="onnxruntime intra-op threads (default: the pipeline's).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Inference workers (default: the pipeline's).")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smoke-sized: a few pages, one round, a small memory check.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the full report as JSON here.")
    ] = None,
    alternative: Annotated[
        bool, typer.Option(help="Also time pymupdf 150 dpi + ultralytics predict, and compare detections.")
    ] = True,
    memory: Annotated[
        bool, typer.Option(help="Measure peak RSS on a long vs a short scanned PDF in fresh processes.")
    ] = True,
    memory_pages: Annotated[
        str | None,
        typer.Option(help="Short,long page counts for the memory check. Default 5,500; --quick 2,20."),
    ] = None,
    variants: Annotated[
        bool, typer.Option("--variants", help="Also measure INT8 / OpenVINO variants where available.")
    ] = False,
    variant: Annotated[
        list[str] | None, typer.Option(help="Extra variant NAME=PATH.onnx (repeatable); implies --variants.")
    ] = None,
    triton: Annotated[
        str | None,
        typer.Option(
            help="Also run the pipeline and the bare model through this served copy of the model "
            "(triton://host:port/model, e.g. from `inkloop serve`): pages/s ratio and per-request overhead."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Box agreement tolerance in page pixels (150 dpi for PDFs).")
    ] = 4.0,
    agreement_conf: Annotated[
        float | None,
        typer.Option(help="Also compare detections at this lower score threshold (untimed extra pass)."),
    ] = None,
    pages_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of page images to build the corpus from (default: tests/fixtures/pages)."),
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Build the corpus here and keep it (default: a temp folder, removed).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """Throughput: the pipeline vs the bare model vs pymupdf+ultralytics, detections compared, peak memory."""
    from inkloop.benchmarks.bench import run_bench
    from inkloop.benchmarks.config import BenchConfig
    from inkloop.cli.console import make_console

    model, triton = served_contender(model, triton, local_model)
    console = make_console(json_out)  # a wide table in logs and CI output too
    overrides: dict[str, Any] = {
        "model": model,
        "batch_size": batch_size,
        "threads": threads,
        "workers": workers,
        "alternative": alternative,
        "memory": memory,
        "variants": variants or bool(variant),
        "tolerance_px": tolerance,
        "triton": triton,
        "agreement_conf": agreement_conf,
        "pages_dir": str(pages_dir) if pages_dir else None,
        "workdir": str(workdir) if workdir else None,
    }
    if pages is not None:
        overrides["pages"] = pages
    if rounds is not None:
        overrides["rounds"] = rounds
    if memory_pages:
        try:
            small, large = (int(x) for x in memory_pages.split(","))
        except ValueError:
            raise typer.BadParameter("--memory-pages takes two integers, e.g. 5,500") from None
        overrides["memory_pages"] = (small, large)
    vp: dict[str, str] = {}
    for spec in variant or []:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise typer.BadParameter(f"--variant takes NAME=PATH.onnx, got {spec!r}")
        vp[name] = path
    overrides["variant_paths"] = vp
    cfg = BenchConfig.quick(**overrides) if quick else BenchConfig(**overrides)
    with console.status("benchmarking") as status:
        report = run_bench(cfg, log=lambda msg: status.update(msg))
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n")
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    print_report(console, report)
    if out:
        console.print(f"report written to {out}")


def print_report(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    from inkloop.benchmarks.bench import pages_per_hour
    from inkloop.benchmarks.config import KINDS

    m, c, tm, r = report["model"], report["config"], report["timings"], report["ratios"]
    t = Table(
        title=f"inkloop bench: {m['version']} ({m['input_size']} px {m['preprocessing']}); pipeline batch "
        f"{c['batch_size']}, {c['workers']} inference worker(s) × {c['threads']} thread(s); "
        f"median of {c['rounds']} round(s)"
    )
    for col in (
        "input",
        "contender",
        "pages",
        "pages/s",
        "ms/page",
        "cpu ms/page",
        "cores busy",
        "vs model",
        "vs best bare",
        "vs alternative",
        "same detections",
    ):
        t.add_column(col, justify="left" if col in ("input", "contender") else "right")
    for kind in KINDS:
        ratios, agree = r[kind], report.get("agreement", {}).get(kind)
        for name, row in tm[kind].items():
            pipe = name == "pipeline"
            t.add_row(
                kind if name == next(iter(tm[kind])) else "",
                name,
                str(row["pages"]),
                f"{row['pages_per_second']:.2f}",
                f"{1000 / row['pages_per_second']:.1f}" if row["pages_per_second"] else "-",
                f"{row['cpu_ms_per_page']:.1f}",
                f"{row['cores_busy']:.2f}",
                f"{ratios['pipeline_vs_model']:.3f}×" if pipe else "",
                f"{ratios['pipeline_vs_model_best']:.3f}×" if pipe else "",
                f"{ratios['pipeline_vs_alternative']:.3f}×"
                if pipe and "pipeline_vs_alternative" in ratios
                else "",
                f"{agree['pages_agree']}/{agree['pages']} pages" if pipe and agree else "",
                end_section=name == list(tm[kind])[-1],
            )
    console.print(t)
    console.print(
        "vs model: against the faster of a plain onnxruntime session at batch 1 and at the pipeline's batch "
        "(the issue's definition); vs best bare: against the best bare arrangement measured, including the "
        "pipeline's own session and threading. Targets: ≥ 0.9× the model, ≥ 1.5× the alternative, "
        "identical detections."
    )
    for kind in KINDS:
        p = tm[kind]["pipeline"]["pages_per_second"]
        console.print(
            f"  {kind}: {p:.2f} pages/s ≈ {pages_per_hour(p):,} pages/hour per worker "
            f"(model inputs {', '.join(m['input_shapes'][kind])})"
        )
    for kind in KINDS:
        rk = r[kind]
        if rk.get("ceiling_vs_model_best") is not None:
            console.print(
                f"  CPU per page, {kind}: model {rk['cpu_ms_per_page_model']:.1f} ms, pipeline "
                f"{rk['cpu_ms_per_page_pipeline']:.1f} ms (+{rk['cpu_overhead_ms_per_page']:.1f} ms for "
                f"opening, decoding, resizing, NMS, writing): with every core busy the pipeline can reach "
                f"at most {rk['ceiling_vs_model_best']:.2f}× the best bare model"
            )
    sections = [("agreement", "at the operating threshold")]
    if "agreement_low_threshold" in report:
        sections.append(
            ("agreement_low_threshold", f"at score ≥ {report['agreement_low_threshold']['conf']}")
        )
    for key, label in sections:
        for kind in KINDS:
            a = report.get(key, {}).get(kind)
            if a is None:
                continue
            console.print(
                f"  detections {label}, {kind}: {a['pages_agree']}/{a['pages']} pages identical within "
                f"{a['tolerance_px']:g} px; {a['boxes_pipeline']} vs {a['boxes_alternative']} boxes, "
                f"{a['boxes_paired']} paired; deviation median {a['median_deviation_px']} / max "
                f"{a['max_deviation_px']} px; max score diff {a['max_score_diff']}; "
                f"{a['threshold_flips']} of the differing pages are threshold flips"
            )
    for name, v in report.get("targets", {}).items():
        mark = "[green]met[/green]" if v["met"] else "[red]not met[/red]"
        console.print(f"  target {name}: {v['value']} (target {v['target']}) {mark}")
    if "memory" in report:
        mem = report["memory"]
        rows = [
            f"{k.split('_')[1]} pages: peak {v['peak_rss_mb']} MB (ready {v['rss_ready_mb']} MB)"
            for k, v in mem.items()
            if k.startswith("pages_")
        ]
        console.print(f"peak RSS: {'; '.join(rows)}; ratio {mem['ratio']} (target ≤ {mem['target']})")
    if "variants" in report:
        v = report["variants"]
        for name, row in v.items():
            if name != "notes":
                console.print(
                    f"variant {name}: model {row['model_pages_per_second']:.2f} pages/s, pipeline (scanned) "
                    f"{row['pipeline_scanned_pages_per_second']:.2f} pages/s"
                    + (
                        f", agreement with fp32 {row['agreement_with_fp32']}"
                        if "agreement_with_fp32" in row
                        else ""
                    )
                    + (f" ({row['note']})" if row.get("note") else "")
                )
        for note in v["notes"]:
            console.print(f"variant {note}")
    if "triton" in report:
        tr = report["triton"]
        if not tr.get("same_model", True):
            console.print(
                f"[yellow]note:[/yellow] {tr['ref']} serves {tr['served_model']} (SHA-256 "
                f"{str(tr['served_sha256'])[:12]}…), not the local model ({str(tr['local_sha256'])[:12]}…): "
                "the ratios compare two models; pass the served model's local copy with --local-model"
            )
        for kind in KINDS:
            row = tr[kind]
            ag = row["agreement"]
            console.print(
                f"triton {kind}: pipeline {row['pipeline_pages_per_second']:.2f} pages/s local, "
                f"{row['pipeline_triton_pages_per_second']:.2f} through {tr['ref']} "
                f"({row['ratio_triton_vs_local']:.3f}×); a request {row['request_ms_local']} ms local, "
                f"{row['request_ms_triton']} ms served (+{row['overhead_ms_per_request']} ms); "
                f"{ag['pages_agree']}/{ag['pages']} pages identical"
            )
    if "triton" in report:
        rq = report["triton"]["request"]
        console.print(
            f"triton request (one page, alternating, {rq['requests']}×): local median "
            f"{rq['median_ms_local']} "
            f"/ min {rq['min_ms_local']} ms, served median {rq['median_ms_triton']} / min "
            f"{rq['min_ms_triton']} ms: overhead {rq['overhead_ms_median']} ms (median), "
            f"{rq['overhead_ms_min']} ms (min)"
        )
    la = report["machine"]
    console.print(
        f"load average at start {la['loadavg_start']}, at end {la.get('loadavg_end')}, on {la['cpus']} CPUs "
        "(other load lowers absolute numbers; ratios within one run are what matter)"
    )
