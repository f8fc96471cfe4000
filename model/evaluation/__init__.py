"""Quality metrics of generated videos: ``anchor eval`` and the library behind it.

Modules (import what you use; this package file imports nothing, so the CLI stays
torch-free): ``evaluate`` (``Evaluator``, ``evaluate``), ``pixels`` (SSIM, PSNR, L1,
flicker), ``lpips``, ``frechet`` (FID, FVD), ``landmarks`` (reference keypoints from
the motion), ``pose`` (the ONNX pose estimator), ``lmd``, ``video``, ``config``.
"""
