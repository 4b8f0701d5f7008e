"""What predict and embed accept: paths, encoded bytes, PIL images, numpy arrays."""
import io
import os

from graft_client._gen.graft.v1 import common_pb2, inference_pb2


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def to_image_inputs(images):
    """One ImageInput per item.

    str / os.PathLike: a file read as encoded bytes. bytes: an encoded image
    (JPEG, PNG, ...). PIL.Image: sent losslessly as PNG. numpy arrays: uint8
    H x W x 3 (or H x W) pixels are images (sent as PNG); float arrays of shape
    [3, H, W] or [N, 3, H, W] are preprocessed tensors (sent as raw float32).
    """
    if isinstance(images, (str, bytes, os.PathLike)) or not hasattr(images, "__iter__") or _is_array(images) \
            or _is_pil(images):
        images = [images]
    out = []
    for i, item in enumerate(images):
        if isinstance(item, (str, os.PathLike)):
            with open(item, "rb") as f:
                out.append(inference_pb2.ImageInput(encoded=f.read()))
        elif isinstance(item, (bytes, bytearray, memoryview)):
            out.append(inference_pb2.ImageInput(encoded=bytes(item)))
        elif _is_pil(item):
            out.append(inference_pb2.ImageInput(encoded=_png(item)))
        elif _is_array(item):
            out.append(_from_array(item, i))
        else:
            raise TypeError(f"image {i}: a path, bytes, a PIL image or a numpy array, not {type(item).__name__}")
    return out


def _is_pil(x) -> bool:
    return type(x).__module__.startswith("PIL.")


def _is_array(x) -> bool:
    return type(x).__module__ == "numpy" and hasattr(x, "dtype")


def _from_array(a, i):
    import numpy as np

    if a.dtype == np.uint8:
        from PIL import Image

        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
            raise ValueError(f"image {i}: a uint8 array must be H x W, H x W x 3 or H x W x 4; got {a.shape}")
        return inference_pb2.ImageInput(encoded=_png(Image.fromarray(a)))
    if a.ndim not in (3, 4) or a.shape[-3] != 3:
        raise ValueError(f"image {i}: a float array must be a preprocessed [3, H, W] or [N, 3, H, W] tensor; "
                         f"got {a.shape} (pass uint8 H x W x 3 pixels for raw images)")
    t = np.ascontiguousarray(a, dtype="<f4")
    return inference_pb2.ImageInput(tensor=common_pb2.FloatTensor(shape=list(t.shape), raw_values=t.tobytes()))
