"""app.py with its work replaced by one answer computed at start: what gradio and its client cost.

    GRADIO_SERVER_PORT=7861 python -m bench.gradio_floor IMAGE MODEL

The same Blocks, components, queue and launch settings as app.py. Each /segment call still
decodes its upload and gets its result files copied into a fresh request folder, as in the
app, but the comparison and the PNG encoding are done once, before the server starts. The
round trip of this server is the floor under the app's: the part no handler speed-up can remove.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from app import ASSETS, WEB, build_demo
from unet.serve.compare import Comparison, ModelCatalog
from unet.serve.handlers import Handlers, ResultFiles
from unet.serve.launch import serve


class FloorHandlers(Handlers):
    """Handlers that answer every request with one comparison and one set of files made at start."""

    def __init__(self, catalog: ModelCatalog, image_path: str, model_name: str) -> None:
        super().__init__(catalog)
        image, _ = self.load_upload(image_path)
        backends = catalog.model(model_name).default_pair()
        self.comparison = super().compare(image, model_name, backends, None, 0.5, 1)
        self.files = super().write_result_files(self.comparison, model_name)

    def compare(self, *args, **kwargs) -> Comparison:
        return self.comparison

    def write_result_files(self, comparison: Comparison, model_name: str) -> ResultFiles:
        folder = self.request_folder()

        def copy(path: str) -> str:
            return str(shutil.copy(path, folder / Path(path).name))

        return ResultFiles([copy(p) for p in self.files.overlays], copy(self.files.disagreement),
                           [copy(p) for p in self.files.masks])


def main(image_path: str, model_name: str) -> None:
    catalog = ModelCatalog(ASSETS)
    serve(build_demo(catalog, FloorHandlers(catalog, image_path, model_name)), catalog, WEB)


if __name__ == "__main__":
    main(*sys.argv[1:3])
