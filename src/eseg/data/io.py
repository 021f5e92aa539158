"""Reading images and label masks from disk, with every failure turned into a ``DataError``.

``read_image`` always returns uint8 RGB (H, W, 3): EXIF orientation is applied, grayscale is
replicated, alpha is composited onto black, 16-bit images are scaled down to 8 bits and palette
images are expanded. ``read_mask`` returns the raw label values as int64 (H, W) and refuses colour
masks, whose RGB triplets are not label ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")

# PIL modes that hold one label value per pixel (P: palette index; I;16*: 16-bit; I: 32-bit).
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N", "1")


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


def header_size(path: str | Path, *, mask: bool = False) -> tuple[int, int]:
    """(H, W) of an image as :func:`read_image` (or a mask as :func:`read_mask`) would return it,
    from the file's header and a structural check, without decoding the pixels."""
    path = Path(path)
    _require_file(path)
    try:
        with Image.open(path) as img:
            width, height, mode = img.width, img.height, img.mode
            img.verify()  # chunk structure and checksums (PNG); catches most corrupt files cheaply
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: the image header claims more pixels than PIL will decode ({exc})") from exc
    except _PIL_ERRORS as exc:
        raise DataError(f"{path}: cannot decode image ({exc}); the file is corrupt or truncated") from exc
    transposed = not mask and _orientation(path) in (5, 6, 7, 8)
    if mask and mode not in _LABEL_MODES:
        raise DataError(f"{path}: mask has mode {mode!r}; masks must be single-channel label images (mode L, P or "
                        "16-bit) whose pixel values are class ids, not colour-coded RGB. Convert colours to ids first.")
    return (width, height) if transposed else (height, width)


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


def read_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel label image as int64 (H, W) raw label values.

    P-mode PNGs give their palette indices (the usual way to store labels with colours), L and
    16/32-bit modes give their values. RGB(A) masks are refused: convert them to label ids first.
    """
    path = Path(path)
    img = _open_fully(path)
    if img.mode not in _LABEL_MODES:
        raise DataError(
            f"{path}: mask has mode {img.mode!r} ({len(img.getbands())} channels); masks must be "
            "single-channel label images (mode L, P or 16-bit) whose pixel values are class ids, "
            "not colour-coded RGB. Convert colours to ids first."
        )
    return np.asarray(img).astype(np.int64)


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
