"""ImageDecoder: decode an encoded image byte stream into [H, W, C] uint8.

kiln decodes the simple formats itself (BMP, PNM, PNG, uncompressed TIFF) with numpy and the
standard library's zlib. JPEG, JPEG 2000 and WebP need real codecs: such a stream raises
UnsupportedError rather than returning a wrong image. A stream that is corrupt in a format kiln
reads gives an empty image, as ONNX specifies.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..errors import UnsupportedError
from ..ir import dtypes
from .infer import InferContext, TensorType
from .registry import op


class _Corrupt(Exception):
    """The stream claims a format kiln reads but cannot be decoded."""


# --- BMP -----------------------------------------------------------------------------------------
def _decode_bmp(data: bytes) -> np.ndarray:
    offset, = struct.unpack_from("<I", data, 10)
    width, height, _, bpp, compression = struct.unpack_from("<iiHHI", data, 18)
    if compression != 0 or bpp not in (24, 32):
        raise UnsupportedError(f"ImageDecoder: BMP with {bpp} bits per pixel and compression "
                               f"{compression} is not supported (24/32-bit uncompressed only)")
    channels = bpp // 8
    stride = (width * channels + 3) // 4 * 4
    rows = np.frombuffer(data, np.uint8, stride * abs(height), offset).reshape(abs(height), stride)
    pixels = rows[:, : width * channels].reshape(abs(height), width, channels)
    if height > 0:                                   # stored bottom-up
        pixels = pixels[::-1]
    return pixels[..., 2::-1]                        # BGR(A) -> RGB


# --- PNM (PBM/PGM/PPM) ---------------------------------------------------------------------------
def _pnm_tokens(data: bytes, count: int):
    """The first `count` header tokens (skipping # comments) and the offset after them."""
    tokens, i = [], 2
    while len(tokens) < count:
        while i < len(data) and (data[i:i + 1].isspace() or data[i:i + 1] == b"#"):
            if data[i:i + 1] == b"#":
                while i < len(data) and data[i:i + 1] not in (b"\n", b"\r"):
                    i += 1
            i += 1
        start = i
        while i < len(data) and not data[i:i + 1].isspace():
            i += 1
        if start == i:
            raise _Corrupt("truncated PNM header")
        tokens.append(int(data[start:i]))
    return tokens, i + 1


def _decode_pnm(data: bytes) -> np.ndarray:
    kind = data[1:2]
    if kind in (b"5", b"6", b"2", b"3"):
        (width, height, maxval), pos = _pnm_tokens(data, 3)
        channels = 3 if kind in (b"6", b"3") else 1
        n = width * height * channels
        if kind in (b"5", b"6"):
            dt = np.dtype(">u2") if maxval > 255 else np.uint8
            values = np.frombuffer(data, dt, n, pos).astype(np.int64)
        else:
            values = np.array(data[pos:].split()[:n], dtype=np.int64)
        values = values * 255 // max(maxval, 1)
        return values.astype(np.uint8).reshape(height, width, channels)
    if kind == b"4":
        (width, height), pos = _pnm_tokens(data, 2)
        stride = (width + 7) // 8
        bits = np.unpackbits(np.frombuffer(data, np.uint8, stride * height, pos))
        bits = bits.reshape(height, stride * 8)[:, :width]
        return ((1 - bits) * 255).astype(np.uint8)[..., None]      # 1 is black
    raise UnsupportedError(f"ImageDecoder: PNM variant P{kind.decode(errors='replace')} "
                           "is not supported")


# --- PNG -----------------------------------------------------------------------------------------
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_chunks(data: bytes):
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        yield kind, data[pos + 8:pos + 8 + length]
        pos += 12 + length


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _png_unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-scanline filters (None, Sub, Up, Average, Paeth)."""
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = np.frombuffer(raw, np.uint8, stride, start + 1).astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        else:
            cur = line.copy()
            for x in range(stride):
                left = cur[x - bpp] if x >= bpp else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + prev[x]) >> 1
                elif kind == 4:
                    pred = _paeth(left, prev[x], prev[x - bpp] if x >= bpp else 0)
                else:
                    raise _Corrupt(f"PNG filter type {kind}")
                cur[x] = (cur[x] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return out


def _decode_png(data: bytes) -> np.ndarray:
    header, palette, idat = None, None, []
    for kind, body in _png_chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
    if header is None:
        raise _Corrupt("PNG without IHDR")
    width, height, depth, color, _, _, interlace = header
    if interlace or depth not in (8, 16) or color not in _PNG_CHANNELS:
        raise UnsupportedError(f"ImageDecoder: PNG with bit depth {depth}, color type {color}, "
                               f"interlace {interlace} is not supported")
    channels = _PNG_CHANNELS[color]
    bpp = channels * depth // 8
    rows = _png_unfilter(zlib.decompress(b"".join(idat)), height, width * bpp, bpp)
    pixels = rows.reshape(height, width, channels * depth // 8)
    if depth == 16:
        pixels = pixels[..., 0::2]                    # keep the high byte
    if color == 3:
        pixels = palette[pixels[..., 0]]
    return pixels


# --- TIFF (uncompressed, chunky, 8-bit) ----------------------------------------------------------
def _tiff_tags(data: bytes):
    order = "<" if data[:2] == b"II" else ">"
    ifd, = struct.unpack_from(order + "I", data, 4)
    count, = struct.unpack_from(order + "H", data, ifd)
    sizes = {1: "B", 3: "H", 4: "I"}
    tags = {}
    for k in range(count):
        tag, kind, n, value = struct.unpack_from(order + "HHI4s", data, ifd + 2 + 12 * k)
        if kind not in sizes:
            continue
        fmt = order + sizes[kind] * n
        raw = value if struct.calcsize(fmt) <= 4 else data[struct.unpack(order + "I", value)[0]:]
        tags[tag] = list(struct.unpack_from(fmt, raw))
    return tags


def _decode_tiff(data: bytes) -> np.ndarray:
    tags = _tiff_tags(data)
    width, height = tags[256][0], tags[257][0]
    channels = tags.get(277, [1])[0]
    bits = tags.get(258, [8])
    if tags.get(259, [1])[0] != 1 or any(b != 8 for b in bits) or tags.get(284, [1])[0] != 1:
        raise UnsupportedError("ImageDecoder: only uncompressed 8-bit chunky TIFF is supported")
    strips = b"".join(data[o:o + n] for o, n in zip(tags[273], tags[279]))
    pixels = np.frombuffer(strips, np.uint8, width * height * channels)
    pixels = pixels.reshape(height, width, channels)
    if tags.get(262, [2])[0] == 0:                    # WhiteIsZero
        pixels = 255 - pixels
    return pixels


# --- the op --------------------------------------------------------------------------------------
def _decode(data: bytes) -> np.ndarray:
    if data[:2] == b"BM":
        return _decode_bmp(data)
    if data[:1] == b"P" and data[1:2] in b"123456":
        return _decode_pnm(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _decode_png(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _decode_tiff(data)
    if data[:2] == b"\xff\xd8":
        name = "JPEG"
    elif data[4:8] == b"jP  " or data[:4] == b"\xff\x4f\xff\x51":
        name = "JPEG 2000"
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        name = "WebP"
    else:
        raise _Corrupt("unknown image format")
    raise UnsupportedError(f"ImageDecoder: kiln cannot decode {name} images "
                           "(it reads BMP, PNM, PNG and uncompressed TIFF)")


def _to_format(pixels: np.ndarray, pixel_format: str) -> np.ndarray:
    """[H, W, 1-4] -> RGB, BGR or Grayscale (ITU-R 601 luma), dropping alpha."""
    if pixels.shape[-1] in (1, 2):
        rgb = np.repeat(pixels[..., :1], 3, axis=-1)
    else:
        rgb = pixels[..., :3]
    if pixel_format == "BGR":
        return np.ascontiguousarray(rgb[..., ::-1])
    if pixel_format == "Grayscale":
        if pixels.shape[-1] in (1, 2):
            return np.ascontiguousarray(pixels[..., :1])
        luma = rgb.astype(np.int64) @ np.array([299, 587, 114]) + 500
        return (luma // 1000).astype(np.uint8)[..., None]
    return np.ascontiguousarray(rgb)


def _infer_image(ctx: InferContext):
    channels = 1 if ctx.attrs["pixel_format"] == "Grayscale" else 3
    return [TensorType(dtypes.u8, (None, None, channels))]


@op("ImageDecoder", inputs=["encoded_stream"], outputs=["image"],
    attrs=dict(pixel_format="RGB"), infer=_infer_image)
def image_decoder(encoded_stream, *, pixel_format):
    """Decode a BMP / PNM / PNG / TIFF byte stream into [H, W, C] uint8 (empty when corrupt)."""
    channels = 1 if pixel_format == "Grayscale" else 3
    data = np.asarray(encoded_stream, np.uint8).tobytes()
    try:
        pixels = _decode(data)
    except (_Corrupt, struct.error, zlib.error, ValueError, KeyError, IndexError):
        return np.zeros((0, 0, channels), np.uint8)
    return _to_format(np.asarray(pixels, np.uint8), pixel_format)
