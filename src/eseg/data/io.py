"""Reading images and label masks from disk, with every failure turned into a ``DataError``.

``read_image`` always returns uint8 RGB (H, W, 3): EXIF orientation is applied, grayscale is
replicated, alpha is composited onto black, 16-bit images are scaled down to 8 bits and palette
images are expanded. ``read_mask`` returns the raw label values as int64 (H, W); a colour (RGB)
mask is decoded through a :class:`~eseg.data.labels.ColorTable` when the dataset has one and
refused otherwise. JPEG masks are refused by name: JPEG's lossy compression invents label values
along every edge. ``mask_value_counts`` gives the distinct stored values of a mask and their pixel
counts, for the full scan before training (:mod:`eseg.data.scan`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from .labels import ColorTable, pack_rgb

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")
LOSSY_MASK_EXTENSIONS = (".jpg", ".jpeg")  # found next to images so they are named, never used

# PIL modes that hold one label value per pixel (P: palette index; I;16*: 16-bit; I: 32-bit).
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "1")
_COLOR_MODES = ("RGB", "RGBA")


_PIL_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _open_fully(path: Path) -> Image.Image:
    """Open and decode the whole file now, so a truncated file fails here with its name."""
    _require_file(path)
    try:
        img = Image.open(path)
        img.load()
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: the image header claims more pixels than PIL will decode ({exc})") from exc
    except (*_PIL_ERRORS, MemoryError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc}); the file is corrupt or truncated") from exc
    return img


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise DataError(f"{path}: file not found")


def header_size(path: str | Path, *, mask: bool = False, color_masks: bool = False) -> tuple[int, int]:
    """(H, W) of an image as :func:`read_image` (or a mask as :func:`read_mask`) would return it,
    from the file's header and a structural check, without decoding the pixels. ``color_masks``:
    RGB masks are accepted (the dataset decodes them through its classes' colours)."""
    path = Path(path)
    _require_file(path)
    if mask:
        _refuse_lossy(path)
    try:
        with Image.open(path) as img:
            width, height, mode = img.width, img.height, img.mode
            img.verify()  # chunk structure and checksums (PNG); catches most corrupt files cheaply
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: the image header claims more pixels than PIL will decode ({exc})") from exc
    except _PIL_ERRORS as exc:
        raise DataError(f"{path}: cannot decode image ({exc}); the file is corrupt or truncated") from exc
    transposed = not mask and _orientation(path) in (5, 6, 7, 8)
    if mask and mode not in _LABEL_MODES and not (color_masks and mode in _COLOR_MODES):
        raise DataError(_mode_message(str(path), mode))
    return (width, height) if transposed else (height, width)


def _mode_message(source: str, mode: str) -> str:
    if mode in _COLOR_MODES:
        return (f"{source}: mask has mode {mode!r}, a colour mask, but the dataset has no class colours to decode it: "
                "give them as 'colors' in classes.yaml (or a CVAT labelmap.txt in the dataset root), or save the "
                "masks as single-channel PNGs whose pixel values are class ids")
    return (f"{source}: mask has mode {mode!r}; masks must be single-channel label images (mode L, P or 16-bit) "
            "whose pixel values are class ids, or RGB colour masks with the class colours in classes.yaml")


def _refuse_lossy(path: Path) -> None:
    if path.suffix.lower() in LOSSY_MASK_EXTENSIONS:
        raise DataError(f"{path}: a JPEG mask; JPEG is lossy and changes label values along every edge. Export "
                        "the masks again as PNG (re-saving this JPEG as PNG keeps the damage)")


def _orientation(path: Path) -> int:
    """The EXIF orientation tag, read again after ``verify()`` (which must come first: a PNG's
    ``getexif()`` decodes the pixels, after which PNG ``verify()`` refuses). For a PNG only the
    metadata before the pixel data is read, so the check stays cheap. A broken EXIF block is a
    ``DataError``, as in :func:`image_to_rgb`."""
    try:
        with Image.open(path) as img:
            exif = Image.Image.getexif(img) if img.format == "PNG" else img.getexif()
            return exif.get(0x0112, 1)
    except Exception as exc:
        raise DataError(f"{path}: unreadable EXIF orientation ({exc})") from exc


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16/32-bit or float array to uint8 using the range its dtype implies."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        # float images (mode 'F') are taken as 0..1 when they fit, else as 0..255
        scale = 255.0 if array.max(initial=0.0) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    # integer images: 16-bit data (PIL keeps it in int32 'I' mode) spans 0..65535
    peak = 65535.0 if array.max(initial=0) > 255 or array.dtype == np.uint16 else 255.0
    return np.clip(array.astype(np.float64) * (255.0 / peak), 0, 255).round().astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3) whatever its mode, honouring EXIF orientation."""
    path = Path(path)
    return image_to_rgb(_open_fully(path), source=str(path))


def image_to_rgb(img: Image.Image, *, source: str = "image") -> np.ndarray:
    """A PIL image of any mode as uint8 RGB (H, W, 3), honouring EXIF orientation."""
    try:
        img.load()  # a lazily opened, truncated file fails here, not as an "EXIF" problem below
    except (*_PIL_ERRORS, MemoryError) as exc:
        raise DataError(f"{source}: cannot decode image ({exc}); the file is corrupt or truncated") from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # a broken EXIF block must not hide the pixels; report it clearly
        raise DataError(f"{source}: unreadable EXIF orientation ({exc})") from exc
    mode = img.mode
    if mode in ("P", "PA", "LA", "La", "RGBa"):
        return array_to_rgb(np.asarray(img.convert("RGBA")), source=source)
    if mode in ("RGB", "RGBA"):
        return array_to_rgb(np.asarray(img), source=source)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.array(img.convert("RGB"), dtype=np.uint8)
    # single channel: L, 1, I, I;16*, F
    array = np.asarray(img)
    return array_to_rgb(array[..., :3] if array.ndim == 3 else array, source=source)


def array_to_rgb(array: np.ndarray, *, source: str = "image") -> np.ndarray:
    """An (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of any numeric dtype as a writable
    uint8 RGB (H, W, 3): gray is repeated, alpha composited onto black, 16-bit and float rescaled."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(f"{source}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{source}: unsupported image dtype {array.dtype}; pass uint8, uint16 or float images")
    array = _to_uint8(array)
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        return (array[..., :3].astype(np.float32) * alpha).round().astype(np.uint8)  # composite onto black
    return np.array(array, dtype=np.uint8)  # a writable copy (PIL-backed arrays are read-only)


def read_mask(path: str | Path, colors: ColorTable | None = None) -> np.ndarray:
    """Read a label image as int64 (H, W) raw label values.

    P-mode PNGs give their palette indices (the usual way to store labels with colours), L and
    16/32-bit modes give their values. RGB(A) masks are decoded through ``colors`` (alpha is
    dropped) and refused without it. JPEG masks are refused (lossy).
    """
    path = Path(path)
    _refuse_lossy(path)
    return decode_mask(_open_fully(path), str(path), colors)


def decode_mask(img: Image.Image, source: str, colors: ColorTable | None = None) -> np.ndarray:
    """A decoded PIL mask as int64 (H, W) label values; see :func:`read_mask`."""
    if img.mode in _LABEL_MODES:
        return np.asarray(img).astype(np.int64)
    if colors is not None and img.mode in _COLOR_MODES:
        return colors.decode(np.asarray(img.convert("RGB")), source)
    raise DataError(_mode_message(source, img.mode))


def mask_value_counts(img: Image.Image, source: str) -> tuple[bool, np.ndarray, np.ndarray]:
    """(is_color, distinct stored values, their pixel counts) of a decoded mask. Colour masks give
    packed ``r << 16 | g << 8 | b`` keys (decoded later, so the counts do not depend on the class
    colours). Label masks of up to 16 bits are counted with one ``bincount`` pass."""
    if img.mode in _COLOR_MODES:
        values, counts = np.unique(pack_rgb(np.asarray(img.convert("RGB"))), return_counts=True)
        return True, values, counts
    if img.mode not in _LABEL_MODES:
        raise DataError(_mode_message(source, img.mode))
    array = np.asarray(img)
    if array.dtype in (np.bool_, np.uint8, np.uint16):
        counts = np.bincount(array.ravel().astype(np.int64) if array.dtype == np.bool_ else array.ravel())
        values = np.flatnonzero(counts)
        return False, values.astype(np.int64), counts[values].astype(np.int64)
    values, counts = np.unique(array, return_counts=True)
    return False, values.astype(np.int64), counts.astype(np.int64)


def read_mask_value_counts(path: str | Path) -> tuple[bool, np.ndarray, np.ndarray]:
    """:func:`mask_value_counts` of a mask file."""
    path = Path(path)
    _refuse_lossy(path)
    return mask_value_counts(_open_fully(path), str(path))


def as_rgb(image, *, source: str = "image array") -> np.ndarray:
    """A path, PIL image or array as uint8 RGB (H, W, 3); ``DataError`` for anything unusable,
    including an empty (0-pixel) image."""
    if isinstance(image, (str, Path)):
        rgb = read_image(image)
    elif isinstance(image, Image.Image):  # named by its file when it was opened from one
        source = getattr(image, "filename", None) or "PIL image"
        rgb = image_to_rgb(image, source=source)
    else:
        rgb = array_to_rgb(image, source=source)
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise DataError(f"{image if isinstance(image, (str, Path)) else source}: the image is empty "
                        f"({rgb.shape[0]}x{rgb.shape[1]} pixels)")
    return rgb
