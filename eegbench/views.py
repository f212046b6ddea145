"""Image views: transformed copies of the *training* images that a method may train against.

Some methods align brain responses not (only) to the features of the images as shown but to
features of transformed images: UBP blurs them (the brain sees less detail than the backbone),
NeuroBridge augments them. A method declares such views with :meth:`Method.image_views
<eegbench.submissions.Method.image_views>`; the harness applies each view to the training images,
extracts the features of the method's layers for it and caches them like any layer (the view is
part of the feature cache key), and hands them to the method as ``TrainingData.views[view.key]``.

Views are declarations, not code: a submission never runs code on the harness's side, so the
kinds of views are the harness's (below: blur, foveated blur, pixel noise, downscaling, mosaic),
with bounded parameters, and the same view always gives the same pixels (noise is drawn from the
view's seed and the image's row). Sizes are in pixels of a 224-pixel image, scaled to the actual
image. The test gallery is always the original images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from eegbench._check import InvalidInputError, describe_validation_error

__all__ = ["GaussianBlur", "GaussianNoise", "Downscale", "Mosaic", "ImageView", "MAX_VIEWS", "check_views"]

#: at most this many views per method (each costs one feature extraction of the training images)
MAX_VIEWS = 16
#: blur strengths are given in pixels of an image of this size, and scaled to the actual image
REFERENCE_SIZE = 224


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @property
    def key(self) -> str:
        """The view's name in ``TrainingData.views`` and in records: its kind and every parameter."""
        values = self.model_dump(exclude={"kind"})
        return self.kind + ":" + ",".join(f"{name}={_text(value)}" for name, value in values.items())

    def apply(self, image, index: int):
        """The view of ``image`` (an RGB PIL image), the ``index``-th of its image set."""
        raise NotImplementedError


class GaussianBlur(_View):
    """A Gaussian blur of standard deviation ``sigma`` pixels of a 224-pixel image (scaled to the
    image's shorter side, so that a view blurs alike at any image resolution).

    With ``fovea``, the blur is foveated as in UBP: each pixel mixes the image and its blurred copy,
    the image's share falling from one half at the centre as ``0.5 * exp(-fovea * d / d_max)`` (``d``
    the distance to the centre, ``d_max`` that of a corner), so the periphery is blurred most.
    """

    kind: Literal["blur"] = "blur"
    sigma: float = Field(gt=0, le=REFERENCE_SIZE)
    fovea: float | None = Field(None, gt=0, le=100)

    def apply(self, image, index: int):
        from PIL import Image, ImageFilter

        blurred = image.filter(ImageFilter.GaussianBlur(self.sigma * min(image.size) / REFERENCE_SIZE))
        if self.fovea is None:
            return blurred
        width, height = image.size
        y, x = np.mgrid[0:height, 0:width]
        distance = np.hypot(x - (width - 1) / 2, y - (height - 1) / 2)
        share = 0.5 * np.exp(-self.fovea * distance / max(distance.max(), 1e-9))[..., None]
        mixed = share * np.asarray(image, dtype=np.float64) + (1 - share) * np.asarray(blurred, dtype=np.float64)
        return Image.fromarray(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))


class GaussianNoise(_View):
    """Additive Gaussian pixel noise of standard deviation ``std`` (on the 0-255 scale), clipped;
    drawn per image from ``(seed, image row)``."""

    kind: Literal["noise"] = "noise"
    std: float = Field(gt=0, le=255)
    seed: int = Field(0, ge=0, le=2**31 - 1)

    def apply(self, image, index: int):
        from PIL import Image

        pixels = np.asarray(image, dtype=np.float64)
        noisy = pixels + np.random.default_rng([self.seed, index]).normal(0.0, self.std, pixels.shape)
        return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


class Downscale(_View):
    """The image shrunk to ``factor`` of its size and enlarged back (bilinear both ways): fine detail is lost."""

    kind: Literal["downscale"] = "downscale"
    factor: float = Field(gt=0, lt=1)

    def apply(self, image, index: int):
        from PIL import Image

        small = (max(1, round(image.width * self.factor)), max(1, round(image.height * self.factor)))
        return image.resize(small, Image.BILINEAR).resize(image.size, Image.BILINEAR)


class Mosaic(_View):
    """Square blocks of ``block`` pixels of a 224-pixel image (scaled like :class:`GaussianBlur`): the
    image shrunk bilinearly and enlarged back with nearest-neighbour sampling."""

    kind: Literal["mosaic"] = "mosaic"
    block: float = Field(gt=1, le=REFERENCE_SIZE)

    def apply(self, image, index: int):
        from PIL import Image

        pixels = self.block * min(image.size) / REFERENCE_SIZE
        small = (max(1, round(image.width / pixels)), max(1, round(image.height / pixels)))
        return image.resize(small, Image.BILINEAR).resize(image.size, Image.NEAREST)


ImageView = Annotated[GaussianBlur | GaussianNoise | Downscale | Mosaic, Field(discriminator="kind")]
_VIEWS = TypeAdapter(list[ImageView])


def _text(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return "-".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_views(views: Sequence[object], method: str) -> list[ImageView]:
    """The views a method declared, validated: known kinds with parameters in range, at most
    :data:`MAX_VIEWS`, none twice. Views arrive as the method's worker described them (JSON)."""
    items = [v.model_dump() if isinstance(v, BaseModel) else v for v in views]
    try:
        checked = _VIEWS.validate_python(items)
    except ValidationError as err:
        raise InvalidInputError(describe_validation_error(err, f"Method {method!r}: image_views()")) from None
    if len(checked) > MAX_VIEWS:
        raise InvalidInputError(f"Method {method!r}: image_views() declared {len(checked)} views; at most "
                                f"{MAX_VIEWS} are allowed (each is one more feature extraction of the training images).")
    keys = [view.key for view in checked]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidInputError(f"Method {method!r}: image_views() declared {repeated[0]!r} twice.")
    return checked
