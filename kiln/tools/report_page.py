"""The page around the report's sections: inline CSS and a little JS (graph zoom, kernel filter);
nothing is loaded from the network when the page is viewed."""
from __future__ import annotations

from html import escape

CSS = """
body { font: 14px/1.45 "DejaVu Sans", system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #2d3142; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header p { margin: 4px 0 0; color: #cfd3e0; }
nav { position: sticky; top: 0; z-index: 2; background: #eef0f5; border-bottom: 1px solid #d5d8e0;
      padding: 6px 24px; }
nav a { margin-right: 16px; color: #2d3142; text-decoration: none; font-weight: 600; }
main { padding: 8px 24px 40px; }
section { background: #fff; border: 1px solid #e1e3ea; border-radius: 6px; margin: 16px 0;
          padding: 8px 16px 16px; }
h2 { font-size: 17px; margin: 8px 0 10px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 3px 10px 3px 4px; text-align: left;
         vertical-align: top; }
th { background: #f3f4f7; position: sticky; top: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kv td:first-child { color: #555; padding-right: 18px; }
.graph { overflow: auto; max-height: 75vh; border: 1px solid #e1e3ea; background: #fff; }
.graph svg { display: block; }
.zoom { margin: 4px 0; }
.zoom button { font-size: 12px; margin-right: 4px; }
.cols { display: flex; gap: 16px; flex-wrap: wrap; }
.cols > div { flex: 1 1 560px; min-width: 0; }
details > summary { cursor: pointer; }
pre.code { font: 12px/1.35 "DejaVu Sans Mono", monospace; background: #f6f8fa; padding: 8px;
           max-height: 420px; max-width: min(900px, 60vw); overflow: auto; border: 1px solid #e1e3ea; }
.added { color: #1a7f37; }
.removed { color: #cf222e; }
.note { color: #666; font-size: 13px; }
svg.plot text { font: 11px "DejaVu Sans", sans-serif; fill: #333; }
.filter { margin: 4px 0 8px; }
"""

JS = """
(function () {
  function setScale(box, scale) {
    var svg = box.querySelector('svg');
    if (!svg) return;
    if (!box.dataset.natural) box.dataset.natural = svg.getBoundingClientRect().width || 800;
    svg.style.width = (parseFloat(box.dataset.natural) * scale) + 'px';
    svg.style.height = 'auto';
    box.dataset.scale = scale;
  }
  document.querySelectorAll('.zoom button').forEach(function (b) {
    b.addEventListener('click', function () {
      var box = document.getElementById(b.dataset.target);
      var scale = parseFloat(box.dataset.scale || '1');
      if (b.dataset.op === 'in') scale *= 1.5;
      else if (b.dataset.op === 'out') scale /= 1.5;
      else if (b.dataset.op === 'fit') {
        var svg = box.querySelector('svg');
        scale = box.clientWidth / parseFloat(box.dataset.natural || svg.getBoundingClientRect().width);
      } else scale = 1;
      setScale(box, scale);
    });
  });
  // big graphs are wider than their box: start with the graph's inputs in view
  document.querySelectorAll('.graph').forEach(function (box) {
    var first = box.querySelector('g.node');
    if (!first) return;
    var r = first.getBoundingClientRect(), b = box.getBoundingClientRect();
    box.scrollLeft += (r.left + r.width / 2) - (b.left + b.width / 2);
  });
  var filter = document.getElementById('kernel-filter');
  if (filter) {
    filter.addEventListener('input', function () {
      var q = filter.value.toLowerCase();
      document.querySelectorAll('#kernel-table tbody tr').forEach(function (tr) {
        tr.style.display = tr.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  }
})();
"""


def page(title: str, subtitle: str, sections: list) -> str:
    """sections: (id, heading, html body)."""
    nav = "".join(f'<a href="#{sid}">{escape(head)}</a>' for sid, head, _ in sections)
    body = "\n".join(f'<section id="{sid}"><h2>{escape(head)}</h2>\n{html}\n</section>'
                     for sid, head, html in sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f"<header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>\n"
            f"<nav>{nav}</nav>\n<main>\n{body}\n</main>\n<script>{JS}</script>\n</body></html>\n")


def zoom_box(box_id: str, svg: str) -> str:
    buttons = "".join(f'<button type="button" data-target="{box_id}" data-op="{op}">{label}</button>'
                      for op, label in (("in", "zoom in"), ("out", "zoom out"), ("fit", "fit width"),
                                        ("reset", "100%")))
    return f'<div class="zoom">{buttons}</div><div class="graph" id="{box_id}">{svg}</div>'


def table(headers: list, rows: list, num_cols=(), table_id: str = "", cls: str = "") -> str:
    """rows of already-escaped cell HTML; columns in num_cols are right-aligned."""
    def cell(tag, k, text):
        return f'<{tag} class="num">{text}</{tag}>' if k in num_cols else f"<{tag}>{text}</{tag}>"
    head = "".join(cell("th", k, escape(h)) for k, h in enumerate(headers))
    body = "\n".join("<tr>" + "".join(cell("td", k, c) for k, c in enumerate(r)) + "</tr>"
                     for r in rows)
    attrs = (f' id="{table_id}"' if table_id else "") + (f' class="{cls}"' if cls else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"
