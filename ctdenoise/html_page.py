"""Self-contained HTML pages: images embedded as PNG data URIs, inline style, nothing fetched from a network.

Shared by the image-quality report (``ctdenoise iq``) and the batch report (``ctdenoise denoise``'s
``report.html``). Every text put into a page goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import numpy as np

from ctdenoise.intensity import Window

#: The display window of every CT picture in the reports: soft tissue, centre 40 HU, width 400 HU.
SOFT_TISSUE = Window(40.0, 400.0)

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
.failed { background: #fde8e8; } .note { color: #555; font-size: 0.9em; }
figure { display: inline-block; margin: 0.3em; text-align: center; } figcaption { font-size: 0.85em; }
img.thumb { width: 160px; height: auto; image-rendering: auto; }
"""


def escape(value: object) -> str:
    """``value`` as HTML text (None as an empty string)."""
    return "" if value is None else html.escape(str(value))


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def ct_image_png(hu: np.ndarray, window: Window = SOFT_TISSUE, max_side: int | None = None) -> bytes:
    """A HU image as an 8-bit grey PNG at ``window`` (downsampled by whole steps to at most ``max_side``)."""
    from PIL import Image

    image = np.asarray(hu, dtype=np.float32)
    if max_side is not None and max(image.shape) > max_side:
        step = int(np.ceil(max(image.shape) / max_side))
        image = image[: image.shape[0] // step * step, : image.shape[1] // step * step]
        image = image.reshape(image.shape[0] // step, step, image.shape[1] // step, step).mean(axis=(1, 3))
    grey = np.round(window.apply(image) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def figure_png(figure) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def img(png: bytes, alt: str, css_class: str | None = None) -> str:
    """An ``<img>`` element holding ``png`` inline."""
    klass = f' class="{escape(css_class)}"' if css_class else ""
    return f'<img{klass} alt="{escape(alt)}" src="{png_data_uri(png)}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], text_columns: int = 1,
          row_classes: Iterable[str | None] | None = None) -> str:
    """An HTML table; the first ``text_columns`` columns are left-aligned text, cells are escaped unless they are
    :class:`Markup` (already HTML)."""
    def cell(tag: str, index: int, value: object) -> str:
        klass = ' class="text"' if index < text_columns else ""
        body = str(value) if isinstance(value, Markup) else escape(value)
        return f"<{tag}{klass}>{body}</{tag}>"

    classes = iter(row_classes) if row_classes is not None else None
    lines = ["<table>", "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(headers)) + "</tr>"]
    for row in rows:
        klass = next(classes, None) if classes is not None else None
        attribute = f' class="{escape(klass)}"' if klass else ""
        lines.append(f"<tr{attribute}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


class Markup(str):
    """Text that is already HTML (an image, a link) and must not be escaped again by :func:`table`."""


def page(title: str, body: str) -> str:
    """A complete HTML document with inline style: nothing in it refers to another file or the network."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n")
