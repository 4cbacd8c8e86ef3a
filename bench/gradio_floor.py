"""app.py with its work replaced by one answer computed at start: what gradio and its client cost.

    GRADIO_SERVER_PORT=7861 python bench/gradio_floor.py IMAGE MODEL

The same Blocks, components, queue and launch settings as app.py. Each /segment call still
decodes its upload and gets its result files copied into a fresh request folder, as in the
app, but the comparison and the PNG encoding are done once, before the server starts. The
round trip of this server is the floor under the app's: the part no handler speed-up can remove.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import app


def main(image_path: str, model_name: str) -> None:
    image, _ = app.load_upload(image_path)
    backends = app.default_backends(model_name)
    comparison = app.compare(app.catalog, image, model_name, backends, timed_runs=1)
    overlays, disagreement, masks = app.write_result_files(comparison, model_name)

    def cached_compare(*args, **kwargs) -> app.Comparison:
        return comparison

    def copied_result_files(*args, **kwargs) -> tuple[list[str], str, list[str]]:
        folder = app.request_folder()

        def copy(path: str) -> str:
            return str(shutil.copy(path, folder / Path(path).name))

        return [copy(path) for path in overlays], copy(disagreement), [copy(path) for path in masks]

    app.compare = cached_compare
    app.write_result_files = copied_result_files
    app.serve(app.demo)


if __name__ == "__main__":
    main(*sys.argv[1:3])
