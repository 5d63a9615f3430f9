"""The web app (Gradio): click the subject, type prompts, see the translations.

``build_app(model)`` returns the ``gr.Blocks``; ``serve(demo)`` queues and launches it;
``pnpsam app`` does both from the command line. Needs the ``app`` extra (gradio).
"""

from pnpsam.app.ui import AppSettings, build_app, launch_options, serve

__all__ = ["AppSettings", "build_app", "launch_options", "serve"]
