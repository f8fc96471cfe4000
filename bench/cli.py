"""The ``anchor bench ...`` command line: one sub-command per measurement module of this
package. Nothing heavy is imported here (``anchor --help`` stays fast and torch-free); each
handler imports its module when it runs. ``app.cli`` loads this module by name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import AnchorError

if TYPE_CHECKING:
    from app.config import AppConfig


def register(bench: Any) -> None:
    """Add every ``anchor bench X`` to the ``bench`` sub-parsers."""
    model_bench = bench.add_parser(
        "model", help="ms per UNet+ControlNet call on a 16-frame window, per attention mode"
    )
    _timing_arguments(model_bench, 3, "latent sizes (default: 16 32 for tiny, 64 for sd15)")
    model_bench.set_defaults(handler=_bench_model)

    bench_render = bench.add_parser("render", help="mesh rendering frames/s (16-frame windows)")
    bench_render.add_argument("--json", action="store_true", help="print JSON")
    bench_render.add_argument("--windows", type=int, default=4, help="timed windows")
    bench_render.set_defaults(handler=_bench_render)

    parser = bench.add_parser(
        "sampler",
        help="ms per committed frame, overhead and latency of offline, exact and low sampling",
        description=(
            "Runs offline, exact (stream-batched, unbatched, eager) and low sampling on the "
            "same clip with the configured model (tiny preset by default), frames pushed one "
            "at a time, and prints cost, overhead (wall / model time), stream-batch speedup "
            "and latency in frames for each mode."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--frames", type=int, default=64, help="clip length (default 64)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (sampler.steps)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.set_defaults(handler=_bench_sampler)

    e2e = bench.add_parser("e2e", help="glass-to-glass latency, delivered fps, server RSS")
    e2e.add_argument("--json", action="store_true")
    e2e.add_argument("--frames", type=int, default=90, help="frames per measurement")
    e2e.add_argument("--viewers", default="1,4", help="viewer counts to measure")
    e2e.add_argument(
        "--demo-model",
        action="store_true",
        help="the trained demo bundle (128 px, faces) as `anchor demo` runs it, not tiny",
    )
    e2e.set_defaults(handler=_bench_e2e)

    soak = bench.add_parser(
        "soak", help="producer at fps + N viewers for S s: RSS, threads, recording exactness"
    )
    soak.add_argument("--json", action="store_true")
    soak.add_argument("--seconds", type=float, default=600.0, help="how long to stream")
    soak.add_argument("--viewers", type=int, default=2, help="WebRTC viewers")
    soak.add_argument("--demo-model", action="store_true", help="the trained demo bundle")
    soak.add_argument(
        "--fuzz", type=int, default=0, help="malformed messages sent midway (RSS before/after)"
    )
    soak.set_defaults(handler=_bench_soak)

    a2m = bench.add_parser("audio2motion", help="generator real-time factor, bot latency")
    a2m.add_argument("--json", action="store_true")
    a2m.add_argument("--no-bot", action="store_true", help="skip the loopback bot latency")
    a2m.set_defaults(handler=_bench_audio2motion)

    pipecat = bench.add_parser(
        "pipecat",
        help="AnchorVideoService in a pipecat pipeline: speech-to-frame, A/V offset, fps, barge-in",
    )
    pipecat.add_argument("--json", action="store_true", help="print JSON")
    pipecat.set_defaults(handler=_bench_pipecat)

    train = bench.add_parser(
        "train",
        help="it/s of a training step (tiny preset, CPU) and the demo model's figures",
    )
    train.add_argument("--steps", type=int, default=5, help="timed training steps")
    heldout_arguments(train)
    train.set_defaults(handler=_bench_train)

    quality = bench.add_parser(
        "quality",
        help="the demo model vs ground truth: the paper's Table 1/2 rows on held-out motion",
    )
    quality.add_argument("--frames", type=int, default=96, help="held-out frames per row")
    heldout_arguments(quality)
    quality.add_argument(
        "--variants", default=None, help="comma-separated rows to run (default: all)"
    )
    quality.add_argument(
        "--steps", type=int, default=None, help="DDIM steps (default: the bundle's own)"
    )
    quality.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    quality.set_defaults(handler=_bench_quality)

    distill = bench.add_parser(
        "distill",
        help="a teacher and its consistency student side by side on held-out motion",
        description=(
            "Rows: the teacher at --reference-steps (20) DDIM steps with CFG, at each of "
            "--steps, and the student (LCM, no CFG) at each of --steps; face rows too when "
            "both bundles have a face model. SSIM/PSNR vs ground truth, SSIM vs the 20-step "
            "teacher, flicker, face-crop SSIM, ms per frame here, TFLOPs per frame at 512."
        ),
    )
    distill.add_argument("--teacher", type=Path, default=None,
                         help="teacher bundle (default: the student's bundle.json)")  # fmt: skip
    distill.add_argument("--student", type=Path, default=Path("clients/models/demo"),
                         help="student bundle (anchor distill's final/)")  # fmt: skip
    distill.add_argument("--frames", type=int, default=96, help="held-out frames per row")
    distill.add_argument("--steps", default="1,2,4", help="comma-separated few-step rows")
    distill.add_argument("--reference-steps", type=int, default=20, help="the teacher's steps")
    distill.add_argument(
        "--guidance-scale", type=float, default=None, help="teacher CFG (default: the student's)"
    )
    heldout_arguments(distill, bundle=False)
    distill.set_defaults(handler=_bench_distill)

    presets = bench.add_parser(
        "presets",
        help="ms per committed frame, latency and SSIM of each preset (quality, live, cpu-tiny)",
    )
    presets.add_argument("--frames", type=int, default=48, help="held-out frames per preset")
    heldout_arguments(presets, bundle=False)
    presets.add_argument("--presets", default=None, help="comma-separated (default: all)")
    presets.set_defaults(handler=_bench_presets)

    onnx_bench = bench.add_parser(
        "onnx", help="ms per 16-frame denoiser call: torch vs ONNX Runtime"
    )
    _timing_arguments(
        onnx_bench, 5, "latent sizes (default: 8 16 32 for tiny, else the model's own size)"
    )
    onnx_bench.set_defaults(handler=_bench_onnx)

    fanout = bench.add_parser(
        "fanout", help="server CPU per viewer: direct aiortc viewers vs through Janus"
    )
    fanout.add_argument("--json", action="store_true")
    fanout.add_argument("--frames", type=int, default=150, help="frames per measurement")
    fanout.add_argument("--viewers", default="1,4,16", help="viewer counts to measure")
    fanout.set_defaults(handler=_bench_fanout)

    flops = bench.add_parser(
        "flops",
        help="FLOPs per committed frame of each preset by stage, counted on meta tensors",
    )
    flops.add_argument("--json", action="store_true", help="print JSON")
    flops.add_argument(
        "--utilization",
        type=float,
        default=0.4,
        help="fraction of GPU peak for the implied frames/s (default 0.4)",
    )
    flops.set_defaults(handler=_bench_flops)

    gpu = bench.add_parser(
        "gpu",
        help="SD1.5-size random weights in the authors' layout: quality and live at 512 "
        "with fp16 + torch.compile on one CUDA GPU (ms/frame, latency, peak memory, TF/s)",
    )
    gpu.add_argument("--json", action="store_true", help="print JSON")
    gpu.add_argument("--frames", type=int, default=48, help="frames per preset run")
    gpu.add_argument("--presets", default="quality,live", help="comma-separated presets")
    gpu.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="write the random weights here (default: a temporary folder)",
    )
    gpu.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime figures")
    gpu.add_argument(
        "--tensorrt",
        action="store_true",
        help="onnxruntime on TensorRT instead of CUDA (engine builds take minutes)",
    )
    gpu.set_defaults(handler=_bench_gpu)


def _timing_arguments(parser: argparse.ArgumentParser, repeats: int, sizes_help: str) -> None:
    """--json, --repeats and --latent-sizes of the benches that time network calls."""
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per figure")
    parser.add_argument("--latent-sizes", type=int, nargs="+", default=None, help=sizes_help)


def heldout_arguments(parser: argparse.ArgumentParser, bundle: bool = True) -> None:
    """--json, --heldout (and --demo) of the benches scored on the held-out synthetic clip."""
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--heldout", type=Path, default=None, help="held-out synthetic dataset (ground truth)"
    )
    if bundle:
        parser.add_argument(
            "--demo", type=Path, default=Path("clients/models/demo"), help="model bundle"
        )


def _bench_model(args: argparse.Namespace, config: AppConfig) -> int:

    from bench.model import bench_model, format_report

    sizes = args.latent_sizes or ([16, 32] if config.model.preset == "tiny" else [64])
    report = bench_model(config.model, tuple(sizes), args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_sampler(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench sampler``."""
    from bench.sampler import bench_sampler, format_report

    if args.frames < 1:
        raise AnchorError(f"--frames must be >= 1, got {args.frames}")
    sampler = config.sampler
    if args.steps is not None:
        if args.steps < 1:
            raise AnchorError(f"--steps must be >= 1, got {args.steps}")
        sampler = sampler.model_copy(update={"steps": args.steps})
    report = bench_sampler(config.model, sampler, args.frames, args.threads)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_e2e(args: argparse.Namespace, config: AppConfig) -> int:
    from bench.e2e import run_bench

    counts = [int(part) for part in args.viewers.split(",") if part]
    results = asyncio.run(run_bench(config, counts, args.frames, args.demo_model))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        cold = results["cold_start"]
        print(f"cold start (first session): glass-to-glass median {cold['latency_ms_median']} ms")
        for row in results["runs"]:
            print(
                f"{row['viewers']} viewer(s): glass-to-glass median {row['latency_ms_median']} ms "
                f"(p90 {row['latency_ms_p90']}), delivered {row['delivered_fps']} fps "
                f"(distinct frames {row['distinct_fps']}, {row['skipped_frames']} skipped), "
                f"server RSS {row['server_rss_mb']} MB"
            )
    return 0


def _bench_soak(args: argparse.Namespace, config: AppConfig) -> int:
    from bench.soak import run_bench

    results = asyncio.run(run_bench(config, args.seconds, args.viewers, args.demo_model, args.fuzz))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for sample in results["samples"]:
        print(f"t={sample['t_s']:>6} s  RSS {sample['rss_mb']} MB  threads {sample['threads']}")
    keys = "accepted skipped committed credited dropped committed_fps recording_frames"
    keys += " recording_duration_s recording_exact viewer_frames viewer_last_seq"
    keys += " viewer_close_codes viewer_ends"
    if args.fuzz:
        keys += " fuzz_answered fuzz_s rss_before_fuzz_mb rss_peak_fuzz_mb rss_after_fuzz_mb"
    for key in keys.split():
        print(f"{key}: {results[key]}")
    return 0


def _bench_audio2motion(args: argparse.Namespace, config: AppConfig) -> int:
    from bench.audio2motion import run_bench

    results = run_bench(config, with_bot=not args.no_bot)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    generator = results["generator"]
    print(
        f"built-in generator: {generator['rtf_20ms_chunks']}x real time in 20 ms chunks, "
        f"{generator['rtf_whole']}x as one block ({generator['audio_seconds']} s of audio)"
    )
    if "bot" in results:
        bot = results["bot"]
        print(
            f"bot speech-to-video latency (tiny preset, loopback): median "
            f"{bot['speech_to_video_ms_median']} ms over {bot['utterances']} utterances"
        )
    return 0


def _bench_pipecat(args: argparse.Namespace, config: AppConfig) -> int:
    from bench.pipecat import run_bench

    results = run_bench(config)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    offset = results["av_offset_ms"]
    print(
        f"pipecat avatar: speech to first frame {results['speech_to_first_frame_ms']} ms, "
        f"A/V offset median {offset['median']} ms (p90 |offset| {offset['p90']} ms), "
        f"{results['fps']} of {results['target_fps']} frames/s, "
        f"interruption to silence {results['interruption_to_silence_ms']} ms"
    )
    return 0


def _bench_train(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench train``."""
    from bench.heldout import demo_figures
    from bench.train import bench_train, format_report

    report = bench_train(args.steps, args.demo, args.heldout, config, demo_figures)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_quality(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench quality``."""
    from bench.quality import bench_quality, format_report

    if args.frames < 2:
        raise AnchorError(f"--frames must be >= 2, got {args.frames}")
    names = [name.strip() for name in args.variants.split(",")] if args.variants else None
    if args.steps is not None and args.steps < 1:
        raise AnchorError(f"--steps must be >= 1, got {args.steps}")
    report = bench_quality(config, args.demo, args.heldout, args.frames, names, args.steps)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text if args.json else format_report(report))
    return 0


def _bench_distill(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench distill``."""
    from bench.distill import bench_distill, format_report
    from bench.quality import heldout_folder
    from model.bundle import bundle_meta

    if args.frames < 2:
        raise AnchorError(f"--frames must be >= 2, got {args.frames}")
    try:
        steps = tuple(int(n) for n in args.steps.split(","))
    except ValueError:
        raise AnchorError(f"--steps must be comma-separated integers, got {args.steps!r}") from None
    if not steps or min(steps) < 1 or args.reference_steps < 1:
        raise AnchorError("--steps and --reference-steps must be >= 1")
    teacher = args.teacher
    if teacher is None:
        meta = bundle_meta(args.student)
        provenance = meta.get("distilled") or meta.get("face", {}).get("distilled") or {}
        named = provenance.get("teacher")
        if named is None or not (Path(named) / "bundle.json").is_file():
            raise AnchorError(
                f"--student {args.student}: its teacher ({named}) is not a bundle here; "
                "pass --teacher FOLDER (clients/models/demo/bundle.json's reproduce list "
                "rebuilds the demo's)"
            )
        teacher = Path(named)
    report = bench_distill(
        config, teacher, args.student, heldout_folder(args.heldout), args.frames,
        args.guidance_scale, None, steps, args.reference_steps,
    )  # fmt: skip
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_presets(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench presets`` (loads each preset over --config and --set)."""
    from app.presets import PRESETS
    from bench.presets import bench_presets, format_report

    names = [name.strip() for name in args.presets.split(",")] if args.presets else None
    unknown = sorted(set(names or []) - set(PRESETS))
    if unknown:
        raise AnchorError(f"--presets: unknown {unknown} (choose from {', '.join(PRESETS)})")
    if args.frames < 2:
        raise AnchorError(f"--frames must be >= 2, got {args.frames}")
    report = bench_presets(args.config, args.overrides, args.heldout, args.frames, names)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_onnx(args: argparse.Namespace, config: AppConfig) -> int:

    from bench.onnx import bench_onnx, format_report

    sizes: list[int | None] = args.latent_sizes or (
        [8, 16, 32] if config.model.preset == "tiny" else [None]
    )
    report = bench_onnx(config.model, config.sampler, tuple(sizes), args.repeats)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_fanout(args: argparse.Namespace, config: AppConfig) -> int:
    from bench.fanout import format_table, run_bench

    counts = [int(part) for part in args.viewers.split(",") if part]
    results = asyncio.run(run_bench(config, counts, args.frames))
    print(json.dumps(results, indent=2) if args.json else format_table(results))
    return 0


def _bench_render(args: argparse.Namespace, config: AppConfig) -> int:
    from bench.render import bench_render, format_report

    result = bench_render(config.render, args.windows)
    print(json.dumps(result) if args.json else format_report(result))
    return 0


def _bench_flops(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench flops``."""
    from bench.flops import bench_flops, format_report

    report = bench_flops(config, args.utilization)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _bench_gpu(args: argparse.Namespace, config: AppConfig) -> int:
    """Handler of ``anchor bench gpu``: needs CUDA (exit status 2 without it)."""
    import dataclasses

    import torch

    from bench.gpu import NEEDS_CUDA, SD15, bench_gpu, format_report
    from bench.gpu import PRESETS as GPU_PRESETS

    if not torch.cuda.is_available():
        print("anchor bench gpu needs CUDA: no CUDA device is visible to torch here "
              f"(torch {torch.__version__}); run it on a machine with an NVIDIA GPU",
              file=sys.stderr)  # fmt: skip
        return NEEDS_CUDA
    if args.frames < 1:
        raise AnchorError(f"--frames must be >= 1, got {args.frames}")
    presets = tuple(name.strip() for name in args.presets.split(",") if name.strip())
    unknown = [name for name in presets if name not in GPU_PRESETS]
    if unknown or not presets:
        raise AnchorError(f"--presets: {unknown or 'none'}; choose from {', '.join(GPU_PRESETS)}")
    architecture = dataclasses.replace(SD15, frames=args.frames)
    report = bench_gpu(
        "cuda", architecture, presets, args.weights_dir, not args.no_onnx, args.tensorrt
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
