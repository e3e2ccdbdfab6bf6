"""dav2-app: a local web app (Gradio) for images and videos."""

from pathlib import Path

import click

from dav2 import console, optional
from dav2.cli.common import CONTEXT, ENCODER_OPTION, user_errors
from dav2.errors import Dav2Error


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
@click.option("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 to share on the network).")
@click.option("--port", type=int, default=7860, help="Port to listen on.")
@user_errors
def app_main(models, checkpoint, encoder, host, port):
    """A web app: upload images or a video, pick a model, get colour/grey/16-bit/.npy depth back.

    \b
    Example:
      dav2-app --models models/          # then open http://127.0.0.1:7860
    """
    optional.require("gradio", "dav2-app")
    from dav2.app import DepthService, serve

    service = DepthService(Path(models), checkpoint, encoder)
    if not service.choices():
        raise Dav2Error(f"no exported models in {models}; export one (dav2-export) or pass --checkpoint")
    console.info(f"models: {', '.join(Path(c).name for c in service.choices())}")
    serve(service, host, port)
