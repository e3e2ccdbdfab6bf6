"""dav2-app: a local web app (Gradio) for images and videos.

Its defaults are the app's own (dav2.app: DepthService, serve, APP_MAX_TOKENS) and its ranges
the ones dav2-run's limits have (common.MAX_MEGAPIXELS, MAX_ASPECT; processing.MAX_TOKENS_CEILING).
"""

from pathlib import Path

import click

from dav2 import console, optional
from dav2.app import ANY_PORT_FROM, APP_MAX_TOKENS, DepthService, serve
from dav2.cli.common import CONTEXT, ENCODER_OPTION, MAX_ASPECT, MAX_MEGAPIXELS, OptionGroup, default_of, user_errors
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_MAX_ASPECT, DEFAULT_MAX_MEGAPIXELS, ImageLimits
from dav2.processing import MAX_TOKENS_CEILING

APP_LIMIT_OPTIONS = OptionGroup(
    click.option(
        "--max-megapixels",
        type=click.FloatRange(0, MAX_MEGAPIXELS, min_open=True),
        default=DEFAULT_MAX_MEGAPIXELS,
        help="Refuse uploaded images (and video frames) larger than this (checked from the header before decoding).",
    ),
    click.option(
        "--max-aspect",
        type=click.FloatRange(1, MAX_ASPECT),
        default=DEFAULT_MAX_ASPECT,
        help="Refuse uploads whose long side is more than this many times the short side.",
    ),
    click.option(
        "--max-tokens",
        type=click.IntRange(1, MAX_TOKENS_CEILING),
        default=APP_MAX_TOKENS,
        show_default=False,
        help="Refuse network inputs of more than this many 14x14 patches (memory grows with its square). "
        f"[default: {APP_MAX_TOKENS}, about 1.7 GB for vits]",
    ),
)
SERVER_OPTIONS = OptionGroup(
    click.option(
        "--host", default=default_of(serve, "host"), help="Address to listen on (0.0.0.0 to share on the network)."
    ),
    click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=default_of(serve, "port"),
        help=f"Port to listen on; 0: the first free one from {ANY_PORT_FROM} on (the line 'serving on' names it).",
    ),
)


@click.command(context_settings=CONTEXT)
@click.option(
    "--models", type=click.Path(file_okay=False), default="models", help="Folder searched for exported models."
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also offer this checkpoint, exported to ONNX on first use.",
)
@ENCODER_OPTION
@SERVER_OPTIONS
@APP_LIMIT_OPTIONS
@user_errors
def app_main(models, checkpoint, encoder, host, port, max_megapixels, max_aspect, max_tokens):
    """A web app: upload images or a video, pick a model, get colour/grey/16-bit/.npy depth back.

    \b
    Example:
      dav2-app --models models/          # then open http://127.0.0.1:7860
    """
    if not optional.available("gradio"):  # not imported yet: the service sets its temp folder first
        raise Dav2Error(f"dav2-app needs gradio: {optional.install_hint('gradio')}")
    limits = ImageLimits(max_pixels=int(max_megapixels * 1_000_000), max_aspect=max_aspect)
    service = DepthService(Path(models), checkpoint, encoder, limits, max_tokens)
    if not service.choices():
        service.close()
        raise Dav2Error(f"no exported models in {models}; export one (dav2-export) or pass --checkpoint")
    console.info(f"models: {', '.join(Path(c).name for c in service.choices())}")
    serve(service, host, port)
