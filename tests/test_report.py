"""The report page of `dvc plots show` / `dvc plots diff`, rendered offline in headless Chromium.

DVC's own page loads vega from a CDN; the repo's template (report/template.html, set as
plots.html_template in .dvc/config) inlines it and draws as SVG, so the drawn marks are in the
DOM that Chromium dumps. Chromium runs with every host name unresolvable and a dead proxy: a
chart that needed the network would stay empty. Without Chromium the tests skip, except under
MOVINGLINE_REQUIRE_ALL=1 (set by .ci/run, which installs it), where a skip would hide a broken report.
"""

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_repo, dvc, skip_or_fail, tiny_params, write_params

pytestmark = [pytest.mark.slow, pytest.mark.full]

PICTURES = ["plots/predictions.png", "plots/test_sequences.png", "plots/train_sequences.png"]
# Training steps at tiny params: one epoch of n_samples / batch_size batches.
TINY_STEPS = -(-tiny_params()["generate_train"]["n_samples"] // tiny_params()["train"]["batch_size"])
HTML_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def chart_titles() -> set[str]:
    """The titles of the charts, as dvc.yaml's top-level `plots:` names them."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    return {next(iter(plot)) for plot in plots if isinstance(plot, dict)}


# Session-scoped so that pytest looks for it before it builds the (session-scoped) repo.
@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    skip_or_fail("headless Chromium is not installed (Debian: apt-get install chromium); it renders the report")


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], parent: "Element | None"):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text = ""

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list["Element"]:
        return [e for e in self.walk() if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)]

    def all_text(self) -> str:
        return self.text + "".join(child.all_text() for child in self.children)


class TreeBuilder(HTMLParser):
    """The DOM Chromium dumps, as a tree of Elements (the dump is well-formed; scripts are CDATA)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = self.current = Element("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {k: v or "" for k, v in attrs}, self.current)
        self.current.children.append(element)
        if tag not in HTML_VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.current))

    def handle_endtag(self, tag):
        node = self.current
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        if self.current.tag != "script":
            self.current.text += data


def render(chromium: str, page: Path, profile: Path) -> Element:
    """The DOM of ``page`` after headless Chromium ran its scripts, with no network."""
    result = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
            # No host resolves and every proxied request goes to a closed port: offline.
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=15000", "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0 and "</html>" in result.stdout, f"chromium failed:\n{result.stderr[-3000:]}"
    builder = TreeBuilder()
    builder.feed(result.stdout)
    return builder.root


def charts(dom: Element) -> dict[str, Element]:
    """Each drawn chart's <svg>, by the one title of dvc.yaml's charts that vega drew in it."""
    expected = chart_titles()
    found = {}
    for embed in dom.find_all("div", "vega-embed"):
        svgs = embed.find_all("svg", "marks")
        assert len(svgs) == 1, f"chart {embed.attrs.get('id')} has {len(svgs)} SVGs (no chart drawn, or not as SVG)"
        # Besides the chart's title, a faceted chart draws its facets' header as a title.
        titles = {group.all_text().strip() for group in svgs[0].find_all("g", "role-title")} & expected
        assert len(titles) == 1, f"chart {embed.attrs.get('id')} draws {len(titles)} of the titles {sorted(expected)}"
        assert titles.isdisjoint(found), f"two charts titled {titles}"
        found[titles.pop()] = svgs[0]
    return found


def drawn_items(svg: Element, mark: str) -> list[Element]:
    """The items vega drew for marks of one type (line, rect, ...): children of its mark groups."""
    groups = [group for group in svg.find_all("g", f"mark-{mark}") if "role-mark" in group.classes]
    return [item for group in groups for item in group.children]


def lines_with_points(svg: Element, at_least: int) -> list[Element]:
    """Drawn line paths through at least ``at_least`` points."""
    paths = [item for item in drawn_items(svg, "line") if item.tag == "path"]
    return [p for p in paths if p.attrs.get("d", "").count("L") + 1 >= at_least]


def pictures(dom: Element) -> dict[str, list[Element]]:
    """Each picture's path (under its caption) -> its <img> elements, one per revision."""
    found: dict[str, list[Element]] = {}
    for caption in dom.find_all("p", "source"):
        path = caption.all_text().strip()
        assert path not in found, f"{path} appears twice"
        found[path] = caption.parent.find_all("img")
    return found


def assert_offline_page(page: Path) -> None:
    html = page.read_text(encoding="utf-8")
    assert "<script src" not in html and "<link" not in html, "the page loads something from elsewhere"


def assert_pictures(dom: Element, page: Path, repo: Path, revisions: int) -> None:
    found = pictures(dom)
    assert sorted(found) == PICTURES
    assert len(dom.find_all("img")) == len(PICTURES) * revisions
    for path, images in found.items():
        assert len(images) == revisions, f"{path}: {len(images)} images, expected one per revision ({revisions})"
        caption = images[0].parent.parent.find_all("p", "caption")
        assert len(caption) == 1 and len(caption[0].all_text()) > 20, f"{path} has no readable caption"
        for image in images:
            # DVC copies each revision's picture beside the page; the workspace's is the file itself.
            assert (page.parent / image.attrs["src"]).is_file()
    workspace = [image for image in found["plots/predictions.png"] if "workspace" in image.attrs["src"]]
    assert (page.parent / workspace[0].attrs["src"]).read_bytes() == (repo / "plots/predictions.png").read_bytes()


def test_plots_show_draws_every_chart_offline_and_each_picture_once(chromium, reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    dvc(repo, "plots", "show")
    page = repo / "dvc_plots" / "index.html"
    assert_offline_page(page)
    dom = render(chromium, page, tmp_path / "profile")

    drawn = charts(dom)
    assert len(drawn) == 3 and set(drawn) == chart_titles()
    training = next(svg for title, svg in drawn.items() if title.startswith("Training"))
    roc = next(svg for title, svg in drawn.items() if title.startswith("ROC"))
    confusion = next(svg for title, svg in drawn.items() if title.startswith("Confusion"))
    # loss and accuracy, each through every step (raw and smoothed lines)
    assert len(lines_with_points(training, TINY_STEPS)) >= 2
    assert len(lines_with_points(roc, 2)) >= 1
    assert len([item for item in drawn_items(confusion, "rect") if item.tag == "path"]) >= 2

    assert_pictures(dom, page, repo, revisions=1)


def test_plots_diff_draws_both_revisions_offline(chromium, reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    # A new test set: the ROC curve and confusion matrix change, without retraining.
    write_params(repo / "params.yaml", tiny_params(generate_test={"seed": 22}))
    dvc(repo, "repro")
    dvc(repo, "plots", "diff")  # the workspace against HEAD, as a user types it
    page = repo / "dvc_plots" / "index.html"
    assert_offline_page(page)
    dom = render(chromium, page, tmp_path / "profile")

    drawn = charts(dom)
    assert set(drawn) == chart_titles()
    for title, svg in drawn.items():
        text = svg.all_text()
        assert "HEAD" in text and "workspace" in text, f"{title}: does not show both revisions"
    training = next(svg for title, svg in drawn.items() if title.startswith("Training"))
    # loss and accuracy of each revision
    assert len(lines_with_points(training, TINY_STEPS)) >= 4

    assert_pictures(dom, page, repo, revisions=2)



def test_the_training_chart_draws_validation_where_measured(chromium, reproduced_repo, tmp_path):
    """Empty validation cells are left out, not drawn as 0: at the defaults only loss and accuracy
    are drawn; validated every other step, val_loss and val_accuracy are drawn through those steps."""
    repo = copy_repo(reproduced_repo, tmp_path / "repo")

    def training_lines(name: str) -> list[str]:
        dvc(repo, "plots", "show")
        dom = render(chromium, repo / "dvc_plots" / "index.html", tmp_path / name)
        training = next(svg for title, svg in charts(dom).items() if title.startswith("Training"))
        return [path.attrs["d"] for path in lines_with_points(training, 1)]

    defaults = training_lines("defaults")
    # 48 sequences: 6 steps of 8 over two epochs, each epoch's end validated on the last 16.
    write_params(repo / "params.yaml", tiny_params(train={"batch_size": 8, "validation_sequences": 16, "epochs": 2}))
    dvc(repo, "repro")
    validated = training_lines("validated")
    points = sorted(d.count("L") + 1 for d in validated)
    assert all(d.count("L") + 1 == TINY_STEPS for d in defaults) and len(defaults) >= 2
    # val_loss and val_accuracy: 2 points each (raw and smoothed); loss and accuracy: 12 each.
    assert points.count(2) >= 2 and points.count(12) >= 2 and set(points) == {2, 12}
