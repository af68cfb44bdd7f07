"""
Compares two latent dumps point by point: a reference (the golden fixtures in test/fixtures/golden,
or a dump you made from diffusers the same way) and `reelbot render|edit --dump-latents DIR`'s
DIR/latents.safetensors. Prints one line per point (frame0.<i>, image, initial, step.<i>) with the
largest difference relative to the reference's largest value, then the frames' largest pixel
difference. numpy only (no torch). See docs/draws.md.

Usage: python3 scripts/compare-latents.py REFERENCE.safetensors DIR/latents.safetensors
"""
import json
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        dtype = {"F32": "<f4", "U8": "u1"}[entry["dtype"]]
        out[name] = np.frombuffer(data[8 + length + begin:8 + length + end], dtype=dtype).reshape(entry["shape"])
    return out


def order(name):
    stage, _, step = name.partition(".")
    return ({"frame0": 0, "image": 1, "initial": 2, "step": 3}.get(stage, 4), int(step or -1))


reference, ours = read(sys.argv[1]), read(sys.argv[2])
worst = 0.0
for name in sorted((n for n in reference if n != "frames" and not n.startswith("text.")), key=order):
    if name not in ours or ours[name].shape != reference[name].shape:
        print(f"{name:12s} missing or of another shape in {sys.argv[2]}")
        worst = float("inf")
        continue
    scale = max(float(np.abs(reference[name]).max()), 1e-6)
    error = float(np.abs(ours[name].astype(np.float64) - reference[name]).max()) / scale
    worst = max(worst, error)
    print(f"{name:12s} max |a-b| / max |ref| = {error:.2e}")
if "frames" in reference and "frames" in ours and ours["frames"].shape == reference["frames"].shape:
    print(f"frames       max pixel difference = {int(np.abs(ours['frames'].astype(int) - reference['frames']).max())}")
print(json.dumps({"worst_latent_relative_error": worst}))
