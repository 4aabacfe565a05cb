"""Regenerates report/template.html and report/LICENSES.txt from pinned npm packages.

    python report/make_template.py          # needs npm and the npm registry; about 10 s

DVC's own page loads vega, vega-lite and vega-embed from a CDN, so its charts stay blank
without network. template.html is report/page.html with those three scripts inlined, and is
committed, so `dvc plots show` needs no network and no npm. Run this only to change a
version (PINNED below) or page.html, then commit what it writes. The same pins give the same
bytes.

The licences: npm installs the three packages with their dependency tree (a superset of what
the browser builds bundle: node-only packages such as node-fetch and the vega-lite CLI's
yargs are listed too), and every package's licence file goes into LICENSES.txt, and into a
comment in template.html so that each page DVC writes carries them.
"""

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE / "page.html"
TEMPLATE = HERE / "template.html"
LICENSES = HERE / "LICENSES.txt"

# The newest releases of the majors dvc-render 1.0.2's own page loads (vega@5.20.2,
# vega-lite@5.2.0, vega-embed@6.18.2): DVC's specs are vega-lite 5, and vega-lite 6 /
# vega-embed 7 would each be a new major for them. Package -> (version, UMD build inlined).
PINNED = {
    "vega": ("5.33.1", "build/vega.min.js"),
    "vega-lite": ("5.23.0", "build/vega-lite.min.js"),
    "vega-embed": ("6.29.0", "build/vega-embed.min.js"),
}

# Markers DVC replaces anywhere in the template (dvc_render.html.HTML.embed).
DVC_MARKERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")
LICENCE_FILE = re.compile(r"^licen[cs]e(\.(md|txt))?$", re.IGNORECASE)


def npm_install(directory: Path) -> Path:
    (directory / "package.json").write_text('{"private": true}\n', encoding="utf-8")
    specs = [f"{name}@{version}" for name, (version, _) in PINNED.items()]
    subprocess.run(
        ["npm", "install", "--omit=dev", "--omit=optional", "--ignore-scripts", "--no-audit", "--no-fund",
         "--no-package-lock", "--save-exact", *specs],
        cwd=directory, check=True, stdout=subprocess.DEVNULL,
    )
    modules = directory / "node_modules"
    for name, (version, _) in PINNED.items():
        installed = json.loads((modules / name / "package.json").read_text(encoding="utf-8"))["version"]
        if installed != version:
            sys.exit(f"error: npm installed {name}@{installed}, expected {version}")
    return modules


def inline_script(modules: Path, name: str) -> str:
    version, build = PINNED[name]
    code = (modules / name / build).read_text(encoding="utf-8")
    # The source map is not shipped: without this line a browser's devtools would ask for it.
    code = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", code)
    for forbidden in ("</script", "<!--", *DVC_MARKERS):
        if forbidden in code.lower():
            sys.exit(f"error: {name}/{build} contains {forbidden!r}, which would break the inlined page")
    licence = json.loads((modules / name / "package.json").read_text(encoding="utf-8"))["license"]
    return f"<script>/* {name}@{version} ({build}), {licence}: licence texts in the comment below */\n{code}\n</script>"


def packages(modules: Path) -> list[dict]:
    """Every installed package (nested ones too) with its licence file's text, if it ships one."""
    found = []
    for manifest in sorted(modules.rglob("package.json")):
        relative = manifest.parent.relative_to(modules).parts
        # A package is node_modules/NAME or node_modules/@SCOPE/NAME (possibly nested);
        # other package.json files (build/, modules/) only mark a folder's module type.
        scoped = len(relative) == 2 and relative[0].startswith("@")
        if len(relative) > 1 and not scoped and "node_modules" not in relative:
            continue
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        if "name" not in meta or "version" not in meta:
            continue
        texts = [path.read_text(encoding="utf-8", errors="replace").strip()
                 for path in sorted(manifest.parent.iterdir()) if LICENCE_FILE.match(path.name)]
        repository = meta.get("repository", "")
        repository = repository.get("url", "") if isinstance(repository, dict) else repository
        found.append({"name": meta["name"], "version": meta["version"], "license": meta.get("license", "?"),
                      "repository": repository, "text": "\n\n".join(texts)})
    # Packages of a monorepo (vega/vega) that ship no licence file are under that repository's
    # licence, which their siblings ship.
    by_repository = {p["repository"]: p["text"] for p in found if p["text"] and p["repository"]}
    for package in found:
        if not package["text"] and package["repository"] in by_repository:
            package["text"] = by_repository[package["repository"]]
            package["note"] = f"no licence file in its npm package; the licence of {package['repository']}"
    return sorted(found, key=lambda package: (package["name"], package["version"]))


def licences_text(found: list[dict]) -> str:
    pinned = ", ".join(f"{name}@{version}" for name, (version, _) in PINNED.items())
    lines = [
        f"Licences of the scripts inlined in report/template.html: {pinned}, from npm,",
        "and of every package npm installs with them (their browser builds bundle a subset).",
        "Generated by report/make_template.py; packages with the same licence text are grouped.",
        "",
    ]
    groups: dict[str, list[dict]] = {}
    for package in found:
        groups.setdefault(package["text"], []).append(package)
    for text, members in groups.items():
        lines.append("=" * 78)
        for package in members:
            note = f" ({package['note']})" if "note" in package else ""
            lines.append(f"{package['name']}@{package['version']}: {package['license']}{note}")
        lines.append("-" * 78)
        lines.append(text or "(no licence file in the npm package; the licence named above, per its package.json)")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    page = PAGE.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="report-template-") as temporary:
        modules = npm_install(Path(temporary))
        for name in PINNED:
            marker = f"@INLINE {name}@"
            if page.count(marker) != 1:
                sys.exit(f"error: {PAGE}: expected one line {marker!r}")
            page = page.replace(marker, inline_script(modules, name))
        licences = licences_text(packages(modules))
    if "-->" in licences or any(marker in licences for marker in DVC_MARKERS):
        sys.exit("error: a licence text contains '-->' or a DVC marker; it cannot go into an HTML comment as is")
    page = page.replace("@LICENSES@", f"<!--\n{licences}\n-->")
    if page.count("{plot_divs}") != 1:
        sys.exit(f"error: {PAGE}: the page must hold DVC's plot_divs marker exactly once")
    LICENSES.write_text(licences, encoding="utf-8")
    TEMPLATE.write_text(page, encoding="utf-8")
    size = TEMPLATE.stat().st_size
    print(f"wrote {TEMPLATE.relative_to(HERE.parent)} ({size:,} bytes) and {LICENSES.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
