"""Every citation points inside the repository.

The project's rule: every number has a source inside the repo. So no tracked file may cite the
project's shared notes outside it (the papers' figures are restated in docs/sources/papers.md),
and every `docs/...md` page a file cites must exist, with the section it names. The citation
styles in use, each checked here:

- a path, `docs/sources/tpu.md`, and a path with a GitHub anchor, `docs/sources/papers.md#icc`;
- a path followed by a quoted heading (or the start of one), possibly wrapped over a comment
  line: `docs/sources/tpu.md, "The TPUv3-8 as a ring of 8 cores"`;
- a path followed by tags that head its sections: `docs/sources/gpu.md [NCCL]`,
  `docs/sources/gpu.md ([H100WP], [H100DS], ...)`;
- a config's source list under "docs/sources/X.md (section of the same tag)" or "cites a section
  of docs/sources/X.md": each tag it defines heads a section there, unless its line cites its
  own place;
- Markdown links in `.md` files, `[text](path#anchor)` and `[text](#anchor)`.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_NOTES = "REFERENCE" + ".md"  # spelt in two parts so that this file does not cite it
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()  # its examples are broken on purpose

# Paths inside *other* repositories that a sources page quotes while describing them: not pages
# of this repository. Each entry must still appear in its page and must not exist here.
EXTERNAL = {
    "docs/sources/compiler.md": {
        "docs/pallas/tpu/pipelining.md": "jax-ml/jax",
        "docs/design/custom_op.md": "vllm-project/vllm",
        "docs/design/fusions.md": "vllm-project/vllm",
        "docs/design/cuda_graphs.md": "vllm-project/vllm",
    },
}

PATH = re.compile(r"(?<![\w./-])(docs/[\w./-]*?\.md)(?:#([\w-]+))?")
QUOTED = re.compile(r'`*,?[ \t]*"([^"]{1,200})"')
TAGS = re.compile(r"`*[ \t]*\(?((?:\[[A-Za-z0-9]+\](?:,\s*(?:#\s*)?)?)+)")
TAG_LIST_HEAD = re.compile(r"(docs/[\w./-]+\.md)\s*\(section of the same tag\)"
                           r"|cites? a section of (docs/[\w./-]+\.md)")
TAG_LINE = re.compile(r"#\s{2,}((?:\[[A-Za-z0-9]+\],?\s*)+)")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


@cache
def tracked() -> tuple[str, ...]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                         check=True).stdout
    return tuple(p for p in out.decode().split("\0") if p)


@cache
def text(path: str) -> str | None:
    """A tracked file's text, or None for a binary (or missing) file."""
    try:
        data = (ROOT / path).read_bytes()
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def texts() -> list[tuple[str, str]]:
    return [(p, t) for p in tracked() if (t := text(p)) is not None]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation other than '-' and '_' dropped,
    spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@cache
def headings(page: str) -> tuple[str, ...]:
    """The headings of a Markdown page (outside fenced code), as written."""
    found, fenced = [], False
    for line in (text(page) or "").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.+?)\s*#*\s*$", line)):
            found.append(m.group(1))
    return tuple(found)


@cache
def anchors(page: str) -> frozenset[str]:
    """Every anchor GitHub gives the page's headings (a repeated one gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for h in headings(page):
        s = slug(h)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return frozenset(out)


def exists(page: str) -> bool:
    return (ROOT / page).is_file()


def unwrap(quote: str) -> str:
    """A quoted heading wrapped over lines (and comment leaders) as one line."""
    return re.sub(r"\s*\n\s*(?:#+\s*)?", " ", quote).strip()


def line_of(body: str, pos: int) -> int:
    return body.count("\n", 0, pos) + 1


def problems_in(path: str, body: str) -> list[str]:
    """What is wrong with the docs citations of one file."""
    found = []
    external = EXTERNAL.get(path, {})
    for m in PATH.finditer(body):
        page, anchor = m.group(1), m.group(2)
        where = f"{path}:{line_of(body, m.start())}"
        if page in external:
            continue
        if not exists(page):
            found.append(f"{where}: {page} does not exist")
            continue
        rest = body[m.end():m.end() + 400]
        if anchor is not None:
            if anchor not in anchors(page):
                found.append(f"{where}: {page}#{anchor} matches no heading")
        elif q := QUOTED.match(rest):
            title = unwrap(q.group(1))
            if not any(unwrap(h).startswith(title) for h in headings(page)):
                found.append(f'{where}: {page}, "{title}" begins no heading')
        elif t := TAGS.match(rest):
            for tag in re.findall(r"\[([A-Za-z0-9]+)\]", t.group(1)):
                if not any(f"[{tag}]" in h for h in headings(page)):
                    found.append(f"{where}: {page} has no section headed [{tag}]")
    found += tag_list_problems(path, body)
    if path.endswith(".md"):
        found += link_problems(path, body)
    return found


def tag_list_problems(path: str, body: str) -> list[str]:
    """A source list that says its tags head sections of a page: each one does."""
    found = []
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if not (head := TAG_LIST_HEAD.search(line)):
            continue
        page = head.group(1) or head.group(2)
        for j in range(i + 1, len(lines)):
            if not lines[j].startswith("#"):
                break
            m = TAG_LINE.match(lines[j])
            if m is None or PATH.search(lines[j]):  # not a tag, or a tag citing its own place
                continue
            for tag in re.findall(r"\[([A-Za-z0-9]+)\]", m.group(1)):
                if not any(f"[{tag}]" in h for h in headings(page)):
                    found.append(f"{path}:{j + 1}: [{tag}] heads no section of {page}")
    return found


def link_problems(path: str, body: str) -> list[str]:
    """Markdown links to files of the repo (and their anchors) resolve."""
    found = []
    for m in MD_LINK.finditer(body):
        target = m.group(1)
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        where = f"{path}:{line_of(body, m.start())}"
        if file:
            resolved = (ROOT / Path(path).parent / file).resolve()
            if not resolved.exists():
                found.append(f"{where}: link to {target} resolves to nothing")
                continue
            page = resolved.relative_to(ROOT).as_posix()
        else:
            page = path
        if anchor and page.endswith(".md") and anchor not in anchors(page):
            found.append(f"{where}: link to {target} matches no heading")
    return found


def test_no_file_cites_the_shared_notes():
    citing = [f"{p}:{line_of(t, t.index(SHARED_NOTES))}" for p, t in texts() if SHARED_NOTES in t]
    assert not citing, f"cite docs/sources/papers.md (or another sources page) instead: {citing}"


def test_every_cited_docs_page_and_section_exists():
    found = [problem for p, t in texts() if p != SELF for problem in problems_in(p, t)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("page, path", [(page, path) for page, paths in EXTERNAL.items()
                                        for path in paths])
def test_external_paths_are_still_quoted_and_not_ours(page, path):
    assert path in (text(page) or ""), f"{page} no longer quotes {path}: drop it from EXTERNAL"
    assert not exists(path), f"{path} is in this repository now: drop it from EXTERNAL"


# -- the checker itself -----------------------------------------------------------------------

def test_slugs_follow_github():
    assert slug("CIM-MXU silicon (Table II)") == "cim-mxu-silicon-table-ii"
    assert slug("DiT-XL/2") == "dit-xl2"
    assert slug("[LLMC] LLMCompass (Zhang et al., ISCA 2024), its TPUv3 model") == \
        "llmc-llmcompass-zhang-et-al-isca-2024-its-tpuv3-model"
    assert slug("FORA (`reuse`)") == "fora-reuse"


def test_the_checker_finds_broken_citations():
    good = ('# docs/sources/papers.md#icc, docs/sources/tpu.md, "The TPUv3-8 as a ring"\n'
            '# docs/sources/gpu.md ([NCCL], [CUTLASS]) and\n'
            '# docs/sources/schedules.md, "On the diffusers\n'
            '# family"\n')
    assert problems_in("x.yaml", good) == []
    bad = ("# docs/sources/papers.md#no-such-section\n# docs/sources/nowhere.md\n"
           '# docs/sources/tpu.md, "No such heading"\n# docs/sources/gpu.md [NOPE]\n')
    found = problems_in("x.yaml", bad)
    assert len(found) == 4, found
    assert "x.yaml:2:" in found[1]
    tag_list = ("# Sources in docs/sources/tpu.md (section of the same tag):\n"
                "#   [SB] ok\n#   [NOPE] missing\n")
    assert [p.split(": ", 1)[1] for p in problems_in("x.yaml", tag_list)] == \
        ["[NOPE] heads no section of docs/sources/tpu.md"]
    assert problems_in("docs/x.md", "[a](sources/papers.md#icc) [b](#nowhere)") == \
        ["docs/x.md:1: link to #nowhere matches no heading"]
