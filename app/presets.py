"""Speed/quality presets: named sets of config fields, picked with ``anchor --preset NAME``.

A preset sets only its own fields, on top of the TOML file and under the environment and
``--set`` (order: TOML -> preset -> ANCHOR_* -> --set), so the weights a config file
names stay and any single field can still be overridden. Each preset's measured cost is
printed by ``anchor bench presets`` and listed in the README.

- ``quality``: the authors' inference. 20 DDIM steps, CFG 7.5, ControlNet scale 2,
  all-frame attention, ws/os 16/4, one noise for every frame drawn as they draw it
  (``sampler.noise_device = "authors"``), exact streaming (identical to offline
  Algorithm 1), the face stage at 20 steps / CFG 3.5, every frame rendered. For the
  authors' weights (any model but a project bundle) it also runs their network as they
  did: GroupNorm statistics over the window (``model.window_groupnorm``) and the in-place
  ControlNet residuals (``model.controlnet_residuals = "authors"``), and their face stage's
  sampled masked-image latent, blend and crops aligned at 512 (``face.masked_latent``,
  ``face.blend``, ``face.align_size``). A bundle
  (``model.preset = "bundle"``, the embedded demo included) keeps the per-frame GroupNorm,
  diffusers' residuals and the face stage it was trained and measured with; a part
  distilled by ``anchor distill`` keeps its own LCM steps (a student has no DDIM sampling).
- ``live``: real time first. 4 steps, CFG off, ws/os 8/2, low-latency streaming (with a
  distilled student, ``anchor distill``: its LCM steps in exact mode),
  all-frame attention up to 256 px and sparse attention above, the cached ControlNet
  conditioning embedding, stream batching, fp16 and torch.compile on a GPU (precision and
  compile ``auto``: both off on the CPU), face stage at 4 steps without CFG, live rate
  control (frames skipped, not queued, when the machine falls behind).
- ``cpu-tiny``: the CPU demo: the committed demo bundle (clients/models/demo) with the
  settings it was measured with (``bundle.json``: one LCM body step, the face student at 2),
  one torch thread, exact streaming (the paper's temporal denoising; 7 frames of latency at
  one step) and live rate control.
"""

from __future__ import annotations

from typing import Any

PRESETS = ("quality", "live", "cpu-tiny")
# Above this model resolution the live preset uses sparse attention (first + previous
# frame) instead of all-frame attention, whose cost grows with the window's pixels.
LIVE_ALL_FRAME_MAX_SIZE = 256


def preset_fields(name: str, tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields (section -> field -> value) preset ``name`` sets, given the config tree
    it is applied to (the live preset's attention depends on the resolution)."""
    if name == "quality":
        # No model.preset in any source means the embedded demo bundle.
        bundle = tree.get("model", {}).get("preset", "bundle") == "bundle"
        network = {} if bundle else {"window_groupnorm": True, "controlnet_residuals": "authors"}
        face = {} if bundle else {"masked_latent": "sample", "blend": "authors", "align_size": 512}
        quality: dict[str, dict[str, Any]] = {
            "sampler": {"steps": 20, "guidance_scale": 7.5, "controlnet_scale": 2.0,
                        "scheduler": "ddim", "lcm_strength": 1.0,
                        "window_size": 16, "overlap": 4, "mode": "exact",
                        "same_frame_noise": True, "noise_device": "authors"},
            "model": {"attention": "all-frame", "compile": "off", **network},
            "face": {"enabled": True, "steps": 20, "guidance_scale": 3.5, "scheduler": "ddim",
                     "lcm_strength": 1.0, "face_temporal": False, **face},
            "server": {"max_lag_s": None},
        }  # fmt: skip
        # A distilled student has no DDIM sampling: it keeps its own LCM steps, without CFG.
        body_student, face_student = student_settings(tree, distilled=True)
        if body_student is not None:
            quality["sampler"].update(body_student, guidance_scale=1.0)
        if face_student is not None:
            quality["face"].update(face_student, guidance_scale=1.0)
        return quality
    if name == "live":
        model = tree.get("model", {})
        size = model.get("image_size") or tree.get("render", {}).get("width", 512)
        attention = "all-frame" if int(size) <= LIVE_ALL_FRAME_MAX_SIZE else "sparse"
        live: dict[str, dict[str, Any]] = {
            "sampler": {"steps": 4, "guidance_scale": 1.0, "window_size": 8, "overlap": 2,
                        "mode": "low", "max_batch": 4},
            "model": {"attention": attention, "cache_conditioning": True, "precision": "auto",
                      "compile": "auto"},
            "face": {"steps": 4, "guidance_scale": 1.0, "face_temporal": False},
            "server": {"max_lag_s": 0.25},
        }  # fmt: skip
        body, face_student = student_settings(tree)
        if body is not None:
            # A consistency student: the paper's exact temporal denoising at its few LCM
            # steps (latency ((m+1)(T-1)) strides + ws - 1 frames: 19 at 2 steps, ws/os
            # 8/2), every window of the wavefront in one model call.
            live["sampler"].update(mode="exact", **body)
        if face_student is not None:
            live["face"].update(face_student)
        return live
    if name == "cpu-tiny":
        from app.defaults import DEMO_MAX_LAG_S, DEMO_MODE, demo_model_settings

        fields = demo_model_settings()
        fields["model"].update(device="cpu", threads=1, compile="off")
        fields["sampler"]["mode"] = DEMO_MODE
        fields["server"] = {"max_lag_s": DEMO_MAX_LAG_S}
        return fields
    raise KeyError(name)


def student_settings(
    tree: dict[str, Any], distilled: bool = False
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Sampler and face fields (scheduler, steps, lcm_strength) of the configured body and
    face students, None for a part that is not one: the bundle's ``bundle.json`` names the
    LCM scheduler for it (``model.preset = "bundle"``, or the embedded demo bundle when no
    source chooses a model) and no source sets another scheduler; with ``distilled``, only
    parts made by ``anchor distill`` (``distilled`` in their bundle.json). (An LCM-LoRA on
    SD1.5 weights keeps the live preset's 4 low-mode steps.)"""
    from pathlib import Path

    from app.defaults import DEMO_MODEL, bundle_json

    model = tree.get("model", {})
    preset = model.get("preset")
    folder = DEMO_MODEL if preset is None else model.get("checkpoint_path")
    meta: dict[str, Any] = {}
    if preset in (None, "bundle") and folder is not None:
        meta = bundle_json(Path(folder))

    def fields(section: dict[str, Any], part: dict[str, Any]) -> dict[str, Any] | None:
        if part.get("scheduler") != "lcm" or section.get("scheduler", "lcm") != "lcm":
            return None
        if distilled and "distilled" not in part:
            return None
        return {
            "scheduler": "lcm",
            "steps": int(part.get("steps", 2)),
            "lcm_strength": float(part.get("lcm_strength", 1.0)),
        }

    return fields(tree.get("sampler", {}), meta), fields(tree.get("face", {}), meta.get("face", {}))
