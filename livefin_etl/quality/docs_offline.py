"""Data Docs that work without a network: CDN links rewritten to local copies.

GX's pages load Bootstrap, jQuery, Font Awesome and bootstrap-table from CDNs; offline the index
is unstyled and its results table empty (its rows exist only as data for bootstrap-table). After
each build, ``localize`` copies the assets from installed Python packages (xstatic-jquery,
xstatic-bootstrap, xstatic-font-awesome) into ``<site>/static/vendor/`` plus livefin's own small
table renderer (``static/livefin-table.js``: no package ships bootstrap-table), and rewrites every
page's CDN tags to relative paths. Tags with no local equivalent (filter controls, date picker,
dark theme, Vega) are dropped: the pages render without them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

VENDOR = "static/vendor"
_OWN = Path(__file__).resolve().parent / "static"

# (substring of the CDN URL, local file under VENDOR or None to drop the tag); first match wins
_MAP: tuple[tuple[str, str | None], ...] = (
    ("bootstrap-table-filter-control", None),
    ("bootstrap-table", "livefin-table.js"),  # its .css is dropped below (ends in .css)
    ("bootstrap-datepicker", None),
    ("bootstrap-dark", None),
    ("popper", None),  # bootstrap.bundle.min.js includes Popper
    ("bootstrap.min.css", "bootstrap/css/bootstrap.min.css"),
    ("bootstrap.min.js", "bootstrap/js/bootstrap.bundle.min.js"),
    ("jquery", "jquery/jquery.min.js"),
    ("font-awesome", "fontawesome/css/all.min.css"),
    ("vega", None),
)
_TAG = re.compile(
    r"<script\b[^>]*\bsrc=\"(https?://[^\"]+)\"[^>]*>\s*</script>"
    r"|<link\b[^>]*\bhref=\"(https?://[^\"]+)\"[^>]*>",
    re.IGNORECASE,
)
# GX's logo is an image on a CDN too; the same picture ships in the site's static/images.
_LOGO = re.compile(r"src=\"https?://[^\"]*/logo-long\.png[^\"]*\"")


def _sources() -> dict[str, Path]:
    """Local file under VENDOR -> where an installed package ships it."""
    import xstatic.pkg.bootstrap as bootstrap
    import xstatic.pkg.font_awesome as font_awesome
    import xstatic.pkg.jquery as jquery

    out = {
        "jquery/jquery.min.js": Path(jquery.BASE_DIR) / "jquery.min.js",
        "bootstrap/css/bootstrap.min.css": Path(bootstrap.BASE_DIR) / "css" / "bootstrap.min.css",
        "bootstrap/js/bootstrap.bundle.min.js": (
            Path(bootstrap.BASE_DIR) / "js" / "bootstrap.bundle.min.js"
        ),
        "fontawesome/css/all.min.css": Path(font_awesome.BASE_DIR) / "css" / "all.min.css",
        "livefin-table.js": _OWN / "livefin-table.js",
    }
    for font in (Path(font_awesome.BASE_DIR) / "webfonts").glob("*.woff2"):
        out[f"fontawesome/webfonts/{font.name}"] = font  # all.min.css refers to ../webfonts/
    return out


def install_assets(site: Path) -> None:
    """Copy the vendored assets into ``site/static/vendor`` (skipped when already there)."""
    for rel, src in _sources().items():
        dst = site / VENDOR / rel
        if dst.exists() and dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def _local(url: str) -> str | None:
    is_css = url.split("?")[0].endswith(".css")
    for key, target in _MAP:
        if key in url:
            # e.g. bootstrap-table's stylesheet: the local stand-in is a script only
            return None if target and target.endswith(".css") != is_css else target
    return None


def rewrite(html: str, prefix: str) -> str:
    """``html`` with every CDN script/stylesheet tag pointing at ``prefix + VENDOR`` (or gone)."""

    def repl(m: re.Match[str]) -> str:
        url = m.group(1) or m.group(2)
        target = _local(url)
        if target is None:
            return ""
        path = f"{prefix}{VENDOR}/{target}"
        if m.group(1):
            return f'<script src="{path}"></script>'
        return f'<link rel="stylesheet" href="{path}">'

    html = _TAG.sub(repl, html)
    return _LOGO.sub(f'src="{prefix}static/images/logo-long.png"', html)


def localize(site: Path) -> int:
    """Install the assets and rewrite every page of ``site``; returns the pages changed."""
    install_assets(site)
    changed = 0
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        if "://" not in html:
            continue
        depth = len(page.relative_to(site).parts) - 1
        new = rewrite(html, "../" * depth)
        if new != html:
            page.write_text(new, encoding="utf-8")
            changed += 1
    return changed


_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_STATUS_LINK = (
    '<div class="container-fluid py-1 small" id="livefin-status-link">'
    '<a href="status.html">livefin gate status: business date x source</a></div>'
)


def link_status_page(index: Path) -> None:
    """Put a link to the livefin status page at the top of the Data Docs index (once)."""
    html = index.read_text(encoding="utf-8")
    if "livefin-status-link" in html:
        return
    new = _BODY.sub(lambda m: m.group(0) + _STATUS_LINK, html, count=1)
    index.write_text(new, encoding="utf-8")
