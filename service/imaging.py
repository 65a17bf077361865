"""Turning client images into MNIST-like 28x28 inputs, and 28x28 inputs back into PNGs.

Pure functions (no web framework): the API maps ImageError.status onto the HTTP response.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from service.quoting import echo

SIDE = 28
PIXELS = SIDE * SIDE
FIT = 20  # MNIST digits were scaled to fit a 20x20 box, then centred by mass in 28x28
# Phones save JPEGs with a multi-picture extension, which Pillow reports as MPO.
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "GIF", "BMP", "WEBP"})
# As messages name them: an MPO is a JPEG to its user; WebP as its makers spell it.
_NAMES = sorted(f.replace("WEBP", "WebP") for f in ACCEPTED_FORMATS - {"MPO"})
ACCEPTED_NAMES = f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]}"
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_16BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
MIN_CONTRAST = 0.1  # ink must differ from the background by ~25 of 255 levels, else the image is blank
NOISE = 0.1  # after stretching, fainter pixels are paper texture or JPEG ringing, not ink
TARGET_STROKE = 2.0  # stroke width in the 28x28 output, in pixels: MNIST's is 1.2-2.9 (5th-95th percentile)
MID_SCALE = 4  # thin strokes are measured and widened at 4x the 20-pixel box
# A progressive JPEG is decoded a scan at a time, each over the whole image: encoders write about 10;
# thousands of empty ones in a few hundred kB held a decoding slot for seconds (docs/reliability.md).
MAX_JPEG_SCANS = 100
SCAN_MARKER = b"\xff\xda"  # a JPEG's start of scan, a byte pair its entropy-coded data never holds
# Uploads (and JSON batches past routes.predictions.ON_LOOP_BYTES) one API process handles together:
# bounds their memory; more would not be faster on its cores.
DECODES_AT_ONCE = 2
DECODES_PER_CLIENT = (
    2  # of those turns one client holds or waits for: its third a 429 (a burst of small PNGs)
)
DECODES_WAITING = (
    64  # decodes waiting for a turn, their bodies read (small, or in an upload turn): more a 503
)
# Large bodies are read (at most MLPLAB_MAX_UPLOAD_BYTES each) and kept until answered by so many
# requests at once: one client holds at most UPLOADS_PER_CLIENT of those turns, read or waited for, so
# that one sending slowly (8 kB/s keeps a connection) does not keep every other client's upload waiting.
UPLOADS_AT_ONCE = 8
UPLOADS_PER_CLIENT = 2
UPLOADS_WAITING = 16  # large bodies waiting, unread, for a turn: more get a 503


class ImageError(ValueError):
    """A client's image that cannot be used; .status is 413 or 422, str() says what is wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def preprocess_upload(data: bytes, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """An uploaded PNG/JPEG of any size -> float32 (784,) in [0, 1], white digit on black like MNIST."""
    if not data:
        raise ImageError(422, "the uploaded file is empty")
    if len(data) > max_bytes:
        raise ImageError(
            413,
            f"the upload is {len(data):,} bytes; the limit is {max_bytes:,} bytes ({max_bytes / 1e6:g} MB)",
        )
    too_big = f"the image is larger than the limit of {max_pixels:,} pixels (width x height)"
    try:
        # Image.open only parses the header; nothing is decoded until load().
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(422, f"the upload is not a {ACCEPTED_NAMES} image") from None
    except Image.DecompressionBombError:
        # Pillow's own global guard (2 x Image.MAX_IMAGE_PIXELS) fires inside open(), before our check.
        raise ImageError(422, too_big) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(422, f"the image header cannot be read: {exc}") from None
    with im:
        if im.format not in ACCEPTED_FORMATS:
            raise ImageError(
                422, f"{im.format or 'this'} images are not accepted: send a {ACCEPTED_NAMES} image"
            )
        # Checked explicitly, before decoding, so the limit holds even if Image.MAX_IMAGE_PIXELS is changed.
        width, height = im.size
        if width * height > max_pixels:
            raise ImageError(
                422,
                f"the image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels",
            )
        scans = data.count(SCAN_MARKER) if im.format in ("JPEG", "MPO") else 0
        if scans > MAX_JPEG_SCANS:
            raise ImageError(
                422, f"the JPEG has {scans:,} scans; the limit is {MAX_JPEG_SCANS} (encoders write about 10)"
            )
        try:
            im.load()
            gray = _ink(_upright(im))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(422, f"the image data cannot be decoded: {exc}") from None
    return _mnist_like(gray)


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation phone cameras write instead of rotating pixels."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block should not reject an otherwise good picture
        return im


def _border_median(a: np.ndarray) -> float:
    frame = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    return float(np.median(frame))


def _unit(im: Image.Image, peak: float) -> np.ndarray:
    """The single-band image as float32 in [0, 1], divided in place: one full-size array, not two."""
    a = np.asarray(im, dtype=np.float32)
    a = a if a.flags.writeable else a.copy()
    a /= peak
    return a


def _ink(im: Image.Image) -> np.ndarray:
    """Grayscale float (H, W) in [0, 1]; not yet oriented (ink may be dark or light).

    Bands are taken one at a time, in place where possible: a 4-megapixel RGBA upload decoded to
    float RGBA at once, with its temporaries, was 160 MB of one request."""
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        alpha = _unit(rgba.getchannel("A"), 255)
        if _border_median(alpha) < 0.5:
            # Drawn on a transparent canvas (a browser export): the stroke colour may be anything,
            # including white or black on transparent black, so the coverage itself is the ink.
            return alpha
        luma = np.zeros(alpha.shape, dtype=np.float32)
        for band, weight in zip("RGB", (0.299, 0.587, 0.114), strict=True):
            luma += _unit(rgba.getchannel(band), 255 / weight)
        del rgba
        luma *= alpha  # opaque background: composite onto white paper
        luma += 1
        luma -= alpha
        return luma
    if im.mode in _16BIT_MODES:
        # convert("L") clips 16-bit values at 255, which would turn most 16-bit PNGs white.
        return _unit(im, 65535)
    return _unit(im.convert("L"), 255)


def stroke_width(ink: np.ndarray, threshold: float = 0.5) -> float:
    """Mean width in pixels of the strokes above threshold: twice the area over the outline's length
    (a stroke of width w and length L has area wL and two edges of length L)."""
    b = np.pad(ink > threshold, 1)
    edges = int(np.count_nonzero(b[1:] != b[:-1]) + np.count_nonzero(b[:, 1:] != b[:, :-1]))
    return 2 * int(np.count_nonzero(b)) / edges if edges else 0.0


def _thicken_thin_strokes(crop: np.ndarray) -> np.ndarray:
    """A crop whose strokes would come out thinner than MNIST's, drawn thicker; others unchanged.

    A pen line on a photo or a scan is a few pixels wide on a canvas of a thousand, so shrunk to
    the 20-pixel box it becomes a faint hairline, where MNIST's strokes are about two pixels wide
    (`stroke_width` of the test set: median 1.84). Such a crop is resized to 4x the box, where its
    strokes are measured and widened (a max filter) to 4x the target, then returned at that size.
    """
    h, w = crop.shape
    side = MID_SCALE * FIT
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    mid = np.clip(
        np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)), 0, 1
    )
    peak = float(mid.max())
    if peak <= 0:
        return crop
    mid = mid / peak
    width = stroke_width(mid)
    target = MID_SCALE * TARGET_STROKE
    if width >= target - MID_SCALE / 2:  # within half an output pixel of MNIST's: as drawn
        return crop
    grow = 2 * round((target - width) / 2) + 1  # a max filter of size k widens a stroke by k - 1
    return np.asarray(Image.fromarray(mid).filter(ImageFilter.MaxFilter(grow)))


def _mnist_like(gray: np.ndarray) -> np.ndarray:
    background = _border_median(gray)
    lo, hi = float(gray.min()), float(gray.max())
    if background - lo > hi - background:
        # The ink is darker than the background (pen on paper): MNIST has bright ink on black.
        np.subtract(1, gray, out=gray)
        background, hi = 1 - background, 1 - lo
    if hi - background < MIN_CONTRAST:
        raise ImageError(422, "no digit found: the image is blank")
    ink = gray  # stretched in place: `gray` is this call's own array
    ink -= background
    ink /= hi - background
    np.clip(ink, 0, 1, out=ink)
    ink[ink < NOISE] = 0

    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = _thicken_thin_strokes(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    h, w = crop.shape
    scale = FIT / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # LANCZOS filters over the whole source footprint, so big photos are averaged rather than aliased;
    # reducing_gap box-shrinks huge crops first to keep that cheap.
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
    small = np.clip(small, 0, 1)
    peak = small.max()
    if peak <= 0:
        raise ImageError(422, "no digit found: the image is blank")
    small = small / peak  # thin pen strokes shrink to grey; MNIST strokes have a full-white core

    h, w = small.shape
    total = small.sum()
    cy = float(small.sum(axis=1) @ np.arange(h)) / total
    cx = float(small.sum(axis=0) @ np.arange(w)) / total
    half = SIDE // 2
    top = min(max(math.floor(half - cy + 0.5), 0), SIDE - h)
    left = min(max(math.floor(half - cx + 0.5), 0), SIDE - w)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    out[top : top + h, left : left + w] = small
    return out.reshape(PIXELS)


def pixels_to_image(values: object) -> np.ndarray:
    """JSON pixels (784 numbers, or 28 rows of 28) in 0..255 -> float32 (784,) in [0, 1]."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise ImageError(422, "pixels must be a list of 784 numbers (or 28 rows of 28)")
    # 784 values is the flat form: skip scanning them for rows, which costs more than the forward pass.
    nested = len(values) != PIXELS and any(isinstance(v, (list, tuple)) for v in values)
    if nested:
        if len(values) != SIDE:
            raise ImageError(422, f"pixels must have 784 values (or 28 rows of 28), got {len(values)} rows")
        for r, row in enumerate(values):
            if not isinstance(row, (list, tuple)):
                raise ImageError(422, f"pixels row {r} is {echo(row)}, not a row of 28 numbers")
            if len(row) != SIDE:
                raise ImageError(422, f"pixels row {r} has {len(row)} values: expected 28")
        flat = [v for row in values for v in row]
    else:
        flat = values if isinstance(values, list) else list(values)
        if len(flat) != PIXELS:
            raise ImageError(422, f"pixels must have 784 values (or 28 rows of 28), got {len(flat)}")

    def where(i: int) -> str:
        return f"pixel {i} (row {i // SIDE}, column {i % SIDE})" if nested else f"pixel {i}"

    # bool is an int subclass and numpy would quietly turn "12" or True into numbers: check types first.
    if not set(map(type, flat)) <= {int, float}:
        for i, v in enumerate(flat):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ImageError(422, f"{where(i)} is {echo(v)}: pixels must be numbers")
    try:
        arr = np.array(flat, dtype=np.float64)
    except OverflowError:  # an int too large for a float
        i = next(i for i, v in enumerate(flat) if abs(v) > 1e300)
        raise ImageError(422, f"{where(i)} is {echo(flat[i])}: values must be in 0-255") from None
    bad = np.flatnonzero(~((arr >= 0) & (arr <= 255)))  # NaN fails both comparisons
    if bad.size:
        i, v = int(bad[0]), float(arr[bad[0]])
        if math.isnan(v):
            raise ImageError(422, f"{where(i)} is NaN")
        if math.isinf(v):
            raise ImageError(422, f"{where(i)} is {echo(v)}: values must be finite and in 0-255")
        raise ImageError(422, f"{where(i)} is {v}: values must be in 0-255")
    return (arr / 255).astype(np.float32)


def to_png(image: np.ndarray, scale: int = 1) -> bytes:
    """float (784,) / (28, 28) in [0, 1], or uint8 28x28 -> 8-bit grayscale PNG, nearest-upscaled by scale."""
    if not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 64:
        raise ValueError(f"scale must be an integer in 1-64, got {scale!r}")  # 64 -> 1792 px: plenty
    arr = np.asarray(image)
    if arr.size != PIXELS:
        raise ValueError(f"expected 784 pixels, got {arr.size}")
    arr = arr.reshape(SIDE, SIDE)
    if arr.dtype != np.uint8:
        arr = np.rint(np.clip(np.nan_to_num(arr.astype(np.float64)), 0, 1) * 255).astype(np.uint8)
    if scale > 1:
        arr = np.repeat(np.repeat(arr, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
