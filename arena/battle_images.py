"""The image a battle may carry: read from the upload, kept through the storage API, sent to the
models that read images (providers.images checks it), shown back to its visitor only.

The battle keeps the file (Battle.image) through Django's default storage, so a deployment may keep
images in an S3-compatible object store (README: django-storages). Only models marked `vision` are
drawn for such a battle, and a side whose model is not marked gets no image, ever: its call fails.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.http import HttpResponse
from django.utils.translation import gettext
from rest_framework.request import Request
from rest_framework.views import APIView

from arena import api_schema
from arena.models import Battle
from config.errors import DomainError, NotFound
from providers import images
from providers.base import Image
from providers.models import LLM

MIME_TYPES = {extension: mime for mime, extension in images.EXTENSIONS.items()}
# What a multipart body may hold beyond the image: the other fields, as a JSON body may.
FORM_ALLOWANCE = 64 * 1024


class NotForImages(DomainError):
    code = "model_not_vision"


def require_small_body(request: Request) -> None:
    """A multipart body longer than an image and its fields is refused before it is read (413);
    a JSON body has its own limit (config.parsers)."""
    if not request.content_type.startswith("multipart/"):
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    limit = settings.ARENA_IMAGE_MAX_BYTES + FORM_ALLOWANCE
    if length > limit:
        raise images.ImageTooLarge(
            f"The request body is {length} bytes; an image may be {settings.ARENA_IMAGE_MAX_BYTES}."
        )


def uploaded(request: Request) -> images.CheckedImage | None:
    """The checked image of a battle-creation request (multipart field `image`), or None."""
    upload = request.FILES.get("image")
    if upload is None:
        if request.data.get("image") not in (None, ""):
            raise images.ImageError(
                "Send the image as a file: a multipart/form-data body with an `image` field.",
                code="image_not_a_file",
            )
        return None
    if len(request.FILES.getlist("image")) > 1:
        raise images.ImageError(gettext("A battle carries one image."), code="too_many_images")
    limit = settings.ARENA_IMAGE_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise images.ImageTooLarge(
            gettext("The image is %(size)s bytes; the limit is %(limit)s bytes.")
            % {"size": upload.size, "limit": limit}
        )
    return images.check(upload.read(limit + 1))


def require_vision(*models: LLM) -> None:
    for llm in models:
        if llm is not None and not llm.vision:  # None: the missing side of a direct chat
            raise NotForImages(
                gettext("%(name)s does not read images: pick models that do.") % {"name": llm.name}
            )


def store(battle: Battle, image: images.CheckedImage) -> None:
    """Write the image through the default storage onto the (unsaved) battle."""
    battle.image.save(f"{uuid.uuid4().hex}.{image.extension}", ContentFile(image.data), save=False)


def message_image(battle: Battle) -> Image | None:
    """The battle's image as the adapters send it, or None."""
    if not battle.image:
        return None
    with battle.image.open("rb") as file:
        data = file.read()
    return Image(MIME_TYPES[battle.image.name.rsplit(".", 1)[-1]], data)


def url(battle: Battle) -> str | None:
    return f"/api/v1/battles/{battle.pk}/image" if battle.image else None


class BattleImageApi(APIView):
    @api_schema.battle_image
    def get(self, request: Request, battle_id: str) -> HttpResponse:
        from arena.services import battle_of_visitor  # they import this module
        from arena.views import visitor

        battle = battle_of_visitor(battle_id=battle_id, visitor=visitor(request))
        if not battle.image:
            raise NotFound(gettext("This battle has no image."))
        image = message_image(battle)
        assert image is not None
        # Read whole (at most ARENA_IMAGE_MAX_BYTES): ASGI would consume a file iterator synchronously.
        response = HttpResponse(image.data, content_type=image.mime_type)
        response["Cache-Control"] = "private, max-age=3600"
        return response
