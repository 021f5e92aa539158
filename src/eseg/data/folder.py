"""The generic folder dataset for users' own data.

Layout (``root``)::

    classes.yaml            # or classes.yml / classes.json / a CVAT labelmap.txt (see data/classes.py)
    images/train/xxx.jpg    # any of io.IMAGE_EXTENSIONS
    masks/train/xxx.png     # label image with the same stem (+ mask_suffix)
    images/val/...  masks/val/...

Splits (see :mod:`eseg.data.splits`): split folders as above; or one flat ``images/`` +
``masks/`` with split lists (``splits: {train: FILE, val: FILE}``) or ``val_fraction``; or, with
neither, every split name reads the whole folder (for evaluation; training refuses it unless
``allow_train_val_overlap: true``).

Masks: single-channel PNG/BMP/TIFF whose values are class ids (pixels equal to ``ignore_index``
are ignored), or RGB colour masks decoded through the classes' colours (``colors`` in
classes.yaml, or labelmap.txt). JPEG masks are found and refused by name (lossy). ``classes``
in the spec may be a file or a list of names; ``label_map`` / ``reduce_zero_label`` remap ids.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, DataError
from .base import Sample, SegDataset, Transform
from .classes import CLASSES_FILES, find_classes_file, load_classes_file, resolve_classes
from .io import IMAGE_EXTENSIONS, LOSSY_MASK_EXTENSIONS, MASK_EXTENSIONS
from .labels import ColorTable, LabelOptions
from .splits import SplitOptions, SplitRule, refuse_mixed

__all__ = ["CLASSES_FILES", "FolderDataset", "find_classes_file", "load_classes_file"]


def files_by_stem(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
    """{stem: file}; two files with one stem (a.png and a.jpg) are an error, not one silently dropped."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in files:
                raise DataError(f"{files[path.stem]} and {path}: two files with the stem '{path.stem}'; images and "
                                "masks are matched by stem, so keep only one of them")
            files[path.stem] = path
    return files


class FolderDataset(SegDataset):
    """Images and masks matched by file stem; see the module docstring for the layout."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        classes: str | Path | list[str] | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        mask_suffix: str = "",
        label_options: LabelOptions | None = None,
        split_options: SplitOptions | None = None,
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        info = resolve_classes(classes, self.root, "data.dataset.classes")
        super().__init__(split=split, class_names=info["names"], palette=info["colors"], ignore_index=info["ignore_index"],
                         transform=transform, on_bad_data=on_bad_data, label_options=label_options,
                         split_options=split_options)
        if info["colors"]:
            self.mask_colors = ColorTable(info["colors"], source=info["source"])
        rule = self.split_options.rule(split, str(self.root), self.root)
        image_folder, mask_folder, own_split = self._split_folders(self.root / images_dir, self.root / masks_dir, rule)
        masks = files_by_stem(mask_folder, MASK_EXTENSIONS + LOSSY_MASK_EXTENSIONS) if mask_folder.is_dir() else {}
        pool = [Sample(image=image, mask=masks.get(stem + mask_suffix), name=stem)
                for stem, image in files_by_stem(image_folder, IMAGE_EXTENSIONS).items()]
        if own_split:
            self.samples, self.split_source = pool, f"split folder {image_folder} ({len(pool)} images)"
        else:
            keep, self.split_source = rule.select([sample.name for sample in pool])
            self.samples = [pool[i] for i in keep]
        self._finalize_samples(image_folder, "images")

    def _split_folders(self, images: Path, masks: Path, rule: SplitRule) -> tuple[Path, Path, bool]:
        """(image folder, mask folder, whether they are the split's own folders)."""
        if not images.is_dir():
            raise DataError(f"{images}: image folder not found (expected {images}/{self.split}/ or images directly in it)")
        subfolders = sorted(p.name for p in images.iterdir() if p.is_dir())
        if subfolders and rule.lists:
            raise ConfigError(f"{images}: has split folders ({', '.join(subfolders)}) and the spec gives split lists; "
                              "use one of the two")
        refuse_mixed(rule, bool(subfolders), f"split folders ({', '.join(subfolders)})")
        if (images / self.split).is_dir():
            return images / self.split, masks / self.split, True
        if subfolders:
            raise DataError(f"{images / self.split}: split folder not found; available splits: {', '.join(subfolders)}")
        return images, masks, False
