#!/usr/bin/env python3
"""Seed corpora for graft's fuzz harnesses, made at build time (nothing large is
committed): small images in every accepted format, some cut from ../shared's
photos; tiny archives as uploads look (and as attacks look); .pth files and
pickles from Debian's torch; manifests; the repo's job spec examples.

usage: make_seeds.py OUT_DIR SHARED_DIR REPO_DIR
"""
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import zipfile
from collections import OrderedDict

from PIL import Image

out, shared, repo = sys.argv[1:4]


def write(sub, name, data):
    d = os.path.join(out, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def encode(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


# --- images: every format graft accepts, modes and options the decoders branch on
photos = []
for name in sorted(os.listdir(os.path.join(shared, "images"))):
    if name.lower().endswith((".jpg", ".jpeg", ".png")):
        im = Image.open(os.path.join(shared, "images", name)).convert("RGB")
        im.thumbnail((48, 48))
        photos.append((os.path.splitext(name)[0], im))
base = photos[0][1] if photos else Image.new("RGB", (40, 30), (200, 10, 10))
for stem, im in photos[:3]:
    write("image", stem + ".jpg", encode(im, "JPEG", quality=70))
write("image", "progressive.jpg", encode(base, "JPEG", progressive=True, quality=60))
write("image", "gray.jpg", encode(base.convert("L"), "JPEG"))
write("image", "cmyk.jpg", encode(base.convert("CMYK"), "JPEG"))
exif = Image.Exif()
exif[0x0112] = 6  # orientation: rotate 90
write("image", "exif_rotated.jpg", encode(base, "JPEG", exif=exif))
write("image", "rgb.png", encode(base, "PNG"))
write("image", "rgba.png", encode(base.convert("RGBA"), "PNG"))
write("image", "palette.png", encode(base.convert("P"), "PNG"))
write("image", "gray16.png", encode(Image.frombytes("I;16", (8, 6), bytes(range(96))), "PNG"))
write("image", "optimized.png", encode(base, "PNG", optimize=True))
write("image", "rgb.bmp", encode(base, "BMP"))
write("image", "gray.bmp", encode(base.convert("L"), "BMP"))
write("image", "lossy.webp", encode(base, "WEBP", quality=50))
write("image", "lossless.webp", encode(base, "WEBP", lossless=True))
write("image", "alpha.webp", encode(base.convert("RGBA"), "WEBP"))
write("image", "raw.tiff", encode(base, "TIFF"))
write("image", "lzw.tiff", encode(base, "TIFF", compression="tiff_lzw"))
write("image", "deflate.tiff", encode(base.convert("L"), "TIFF", compression="tiff_adobe_deflate"))
b = io.BytesIO()
base.save(b, "TIFF", save_all=True, append_images=[base.rotate(90, expand=True)])
write("image", "two_pages.tiff", b.getvalue())
write("image", "tiny.png", encode(Image.new("RGB", (1, 1)), "PNG"))

# --- archives: a dataset as uploaded, and the entries ingestion must refuse
small = encode(base, "JPEG", quality=50)
small_png = encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG")


def tar_bytes(mode, entries):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = data.decode()
                t.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = data.decode()
                t.addfile(ti)
    return b.getvalue()


dataset = [("cats", "dir", b""), ("cats/a.jpg", "file", small), ("dogs/b.png", "file", small_png),
           ("train/cats/c.jpg", "file", small), ("val/dogs/d.png", "file", small_png)]
hostile = [("../escape.jpg", "file", small), ("/abs.jpg", "file", small), ("cats/link.jpg", "symlink", b"/etc/passwd"),
           ("cats/hard.jpg", "hardlink", b"cats/a.jpg"), ("cats/./x/../y.jpg", "file", small),
           ("cats/" + "x" * 200 + ".jpg", "file", small)]
write("archive", "dataset.tar", tar_bytes("w", dataset))
write("archive", "dataset.tar.gz", tar_bytes("w:gz", dataset))
write("archive", "hostile.tar", tar_bytes("w", hostile))
for name, compression in (("dataset.zip", zipfile.ZIP_DEFLATED), ("stored.zip", zipfile.ZIP_STORED)):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression) as z:
        z.writestr("cats/a.jpg", small)
        z.writestr("dogs/b.png", small_png)
        z.writestr("../evil.jpg", small)
    write("archive", name, b.getvalue())
b = io.BytesIO()
with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("cats/zeros.bin", b"\0" * 300000)  # expands well past its size
write("archive", "expanding.zip", b.getvalue())

# --- .pth files and pickles (Debian's torch writes what users upload)
try:
    import torch

    def pth(obj):
        b = io.BytesIO()
        torch.save(obj, b)
        return b.getvalue()

    sd = OrderedDict(
        [("fc.weight", torch.arange(6, dtype=torch.float32).reshape(2, 3)), ("fc.bias", torch.zeros(2)),
         ("bn.num_batches_tracked", torch.tensor(3)), ("half", torch.ones(2, dtype=torch.float16)),
         ("view", torch.arange(10.0)[2:8:2])])
    write("pth", "state_dict.pth", pth(sd))
    write("pth", "shared_storage.pth", pth({"a": sd["fc.weight"], "b": sd["fc.weight"][1]}))
    write("pth", "nested.pth", pth({"state_dict": sd, "epoch": 3}))
    write("pth", "plain_dict.pth", pth({"w": torch.ones(1, 1, dtype=torch.float64)}))
    for name in ("state_dict.pth", "nested.pth"):
        with zipfile.ZipFile(os.path.join(out, "pth", name)) as z:
            for rec in z.namelist():
                if rec.endswith("data.pkl"):
                    write("pickle", name.replace(".pth", ".pkl"), z.read(rec))
    # The TorchScript pre-load check sees .pth files and TorchScript archives.
    m = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()))
    b = io.BytesIO()
    torch.jit.save(m, b)
    write("torch_archive", "script.pt", b.getvalue())
    write("torch_archive", "state_dict.pth", pth(sd))
except ImportError:
    print("make_seeds: no torch for this python; .pth seeds skipped", file=sys.stderr)
for proto in range(0, 6):
    write("pickle", "p%d.pkl" % proto, pickle.dumps({"a": [1, 2.5, ("x", None)], "b": {"c": b"\x00\x01"}, "t": True},
                                                    protocol=proto))
deep = []
for _ in range(30):
    deep = [deep]
write("pickle", "deep.pkl", pickle.dumps(deep, protocol=2))
shared_list = [1, 2]
write("pickle", "memo.pkl", pickle.dumps([shared_list, shared_list, {"k": shared_list}], protocol=4))

# --- custom backbone manifests
write("manifest", "full.json", json.dumps({
    "name": "my-net", "torchscript": "my-net.pt", "feature_dim": 1280,
    "preprocessing": {"height": 224, "width": 224, "resize_size": 256, "mean": [0.5, 0.5, 0.5],
                      "std": [0.25, 0.25, 0.25], "interpolation": "bicubic"}}).encode())
write("manifest", "minimal.json", json.dumps({"name": "n", "torchscript": "/abs/n.pt", "feature_dim": 8}).encode())
write("manifest", "sizes_only.json", json.dumps({
    "name": "s", "torchscript": "s.pt", "feature_dim": 64, "preprocessing": {"height": 96}}).encode())

# --- job specs: the repository's examples
jobs = os.path.join(repo, "deploy", "jobs")
for name in sorted(os.listdir(jobs)):
    if name.endswith(".json"):
        with open(os.path.join(jobs, name), "rb") as f:
            write("job_spec", name, f.read())

# --- Open Inference Protocol REST bodies: 2 bytes of JSON length, then the body
def infer_body(header, binary=b""):
    text = json.dumps(header).encode()
    return struct.pack("<H", len(text)) + text + binary


def length_prefixed(*elements):
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


write("infer_json", "bytes.bin", infer_body({"id": "a", "inputs": [
    {"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGVsbG8=", "d29ybGQ="]}],
    "outputs": [{"name": "probabilities", "parameters": {"classification": 2}}]}))
write("infer_json", "fp32_nested.bin", infer_body({"inputs": [
    {"name": "tensor", "datatype": "FP32", "shape": [1, 3, 1, 2], "data": [[[[0.5, 1]], [[2, 3]], [[-1, 1e-3]]]]}],
    "parameters": {"binary_data_output": True}}))
write("infer_json", "binary.bin", infer_body({"inputs": [
    {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 14}}],
    "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}, length_prefixed(b"abc", b"defg")))
