"""Pascal VOC segmentation, and CVAT's "Segmentation mask 1.1" export (the same layout)::

    root/JPEGImages/<name>.jpg
    root/SegmentationClass/<name>.png            # VOC: palette PNG, index = class id, 255 = void
                                                 # CVAT: RGB colours of labelmap.txt
    root/ImageSets/Segmentation/<split>.txt      # VOC: train.txt, val.txt, trainval.txt
                                                 # CVAT: default.txt (no train/val split)
    root/labelmap.txt                            # CVAT: name:r,g,b:: per class, in id order

``root`` may also be a ``VOCdevkit`` folder holding one ``VOC20xx``. Classes: the spec's
``classes``, else ``labelmap.txt``, else the 21 VOC classes with the VOC colour map. Palette
(P-mode) masks give their indices; RGB masks are decoded through the classes' colours, VOC's void
border colour (224, 224, 192) becoming the ignore index 255.

Splits: the spec's ``splits`` lists, else the lists in ``ImageSets/Segmentation`` (split
``train`` reads ``train.txt``). A ``default.txt`` alone (CVAT) lists the whole pool: use
``val_fraction`` to hold images out. Without any list the pool is every image with a mask.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..palette import VOC_CLASSES, voc_colormap
from .base import Sample, SegDataset, Transform
from .classes import LABELMAP_FILE, read_labelmap, resolve_classes
from .folder import files_by_stem
from .io import IMAGE_EXTENSIONS, LOSSY_MASK_EXTENSIONS, MASK_EXTENSIONS
from .labels import ColorTable, LabelOptions
from .splits import SplitOptions, SplitRule, read_split_list, refuse_mixed

VOID_COLOR = (224, 224, 192)
LISTS_DIR = Path("ImageSets") / "Segmentation"
POOL_LIST = "default"  # CVAT's one list of every image


def find_voc_root(root: Path) -> Path:
    """``root`` itself when it holds JPEGImages, else its one VOC20xx folder (``root`` being a
    VOCdevkit or the folder holding one)."""
    if (root / "JPEGImages").is_dir():
        return root
    children = sorted(p for pattern in ("VOC*", "VOCdevkit/VOC*") for p in root.glob(pattern)
                      if (p / "JPEGImages").is_dir()) if root.is_dir() else []
    if len(children) == 1:
        return children[0]
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    found = f"; it holds {', '.join(p.name for p in children)}: point root at one" if children else ""
    raise DataError(f"{root}: no JPEGImages/ folder (expected a VOC or CVAT 'Segmentation mask' export){found}")


class VOCDataset(SegDataset):
    """Pascal VOC layout; see the module docstring."""

    requires_labelmap = False

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        classes: str | Path | list[str] | None = None,
        label_options: LabelOptions | None = None,
        split_options: SplitOptions | None = None,
        transform: Transform | None = None,
        on_bad_data: str = "error",
    ):
        self.root = find_voc_root(Path(root))
        info = self._classes(classes)
        super().__init__(split=split, class_names=info["names"], palette=info["colors"], ignore_index=info["ignore_index"],
                         transform=transform, on_bad_data=on_bad_data, label_options=label_options,
                         split_options=split_options)
        self.mask_colors = ColorTable(info["colors"], source=info["source"], extra={VOID_COLOR: self.ignore_index})
        images = files_by_stem(self.root / "JPEGImages", IMAGE_EXTENSIONS)
        mask_dir = self.root / "SegmentationClass"
        masks = files_by_stem(mask_dir, MASK_EXTENSIONS + LOSSY_MASK_EXTENSIONS) if mask_dir.is_dir() else {}
        lists = self.split_options.lists(self.root) or self._found_lists()
        pool_list = self.root / LISTS_DIR / f"{POOL_LIST}.txt"
        where = f"{self.root} ({pool_list.relative_to(self.root)}: one list, no train/val)" \
            if pool_list.is_file() and not lists else str(self.root)
        rule = SplitRule(split, where, lists, self.split_options.val_fraction)
        refuse_mixed(rule, bool(lists), f"split lists ({', '.join(f'{k}: {v}' for k, v in lists.items())})")
        names = self._pool(images, masks, bool(lists))
        keep, self.split_source = rule.select(names)
        self.samples = [Sample(image=images[names[i]], mask=masks.get(names[i]), name=names[i]) for i in keep]
        self._finalize_samples(self.root / "JPEGImages", "images")

    def _classes(self, classes) -> dict:
        labelmap = self.root / LABELMAP_FILE
        if classes not in (None, ""):
            info = resolve_classes(classes, None, "data.dataset.classes")
        elif labelmap.is_file():
            info = {**read_labelmap(labelmap), "source": str(labelmap)}
        elif self.requires_labelmap:
            raise DataError(f"{labelmap}: not found; a CVAT 'Segmentation mask 1.1' export keeps its classes and "
                            "colours there (or give classes: [...] with masks that hold class ids)")
        else:
            info = {"names": list(VOC_CLASSES), "colors": None, "ignore_index": None, "source": "the VOC colour map"}
        if not info["colors"]:
            info["colors"] = voc_colormap(len(info["names"])).tolist()
        return info

    def _found_lists(self) -> dict[str, Path]:
        folder = self.root / LISTS_DIR
        found = {p.stem: p for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}
        return {} if set(found) <= {POOL_LIST} else {k: v for k, v in found.items() if k != POOL_LIST}

    def _pool(self, images: dict[str, Path], masks: dict[str, Path], listed: bool) -> list[str]:
        """The names splits pick from: every image when split lists pick, else CVAT's default.txt,
        else every image with a mask."""
        pool_list = self.root / LISTS_DIR / f"{POOL_LIST}.txt"
        if listed:
            return list(images)
        if pool_list.is_file():
            names = read_split_list(pool_list)
            missing = [n for n in names if n not in images]
            if missing:
                raise DataError(f"{pool_list}: {len(missing)} listed image(s) are not in {self.root / 'JPEGImages'}: "
                                + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
            return names
        return [name for name in images if name in masks]


class CVATDataset(VOCDataset):
    """A CVAT "Segmentation mask 1.1" export: VOC's layout with colour masks and labelmap.txt."""

    requires_labelmap = True
