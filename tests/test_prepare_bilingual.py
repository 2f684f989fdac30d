"""The bilingual step on cut-down real-format sources: a DocBook XHTML FAQ chapter in English and
Korean, and Fluent/.properties/.dtd trees zipped as Firefox's `omni.ja` and language pack `.xpi`
(and laid out again as Thunderbird's). Expected alignments, drops and problems are hand-checked
against the fixture files under tests/fixtures/prepare/bilingual/."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from common.errors import WorkbenchError
from harness.datasets.beir import load_beir
from harness.prepare.bilingual import PACKAGES, build_bilingual, register, split_units
from harness.prepare.bilingual.debian_faq import align_faq
from harness.prepare.bilingual.debs import licence_of
from harness.prepare.bilingual.mozilla_l10n import AlignedString, align_strings, logical_path, read_locale

FIXTURES = Path(__file__).parent / "fixtures" / "prepare" / "bilingual"
MOZ = FIXTURES / "mozilla"
FAQ_COPYRIGHT = (
    "The copyright and license statement for the Debian FAQ:\n\n  Permission is granted to copy.\n"
)
MOZ_COPYRIGHT = (
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    "Files: *\nCopyright: Mozilla\nLicense: {}\n"
)
TASKS = (
    "debian-faq-ko",
    "debian-faq-ko-en",
    "debian-faq-en-ko",
    "firefox-ko-en",
    "firefox-en-ko",
    "thunderbird-ko-en",
    "thunderbird-en-ko",
)

FIREFOX_ALIGNED = [
    AlignedString(
        "browser/localization/@/branding/brand.ftl",
        "trademark",
        "Firefox is a trademark.",
        "Firefox는 상표입니다.",
    ),
    AlignedString("browser/localization/@/browser/tabs.ftl", "tab-new", "New Tab", "새 탭"),
    AlignedString("browser/localization/@/browser/tabs.ftl", "tab-close", "Close Tab", "탭 닫기"),
    AlignedString("chrome/@/locale/@/global/test.dtd", "window.title", "About", "정보"),
    AlignedString("chrome/@/locale/@/global/test.dtd", "help.label", "Help", "도움말"),
    AlignedString("chrome/@/locale/@/global/test.properties", "open.label", "Open", "열기"),
    AlignedString("chrome/@/locale/@/global/test.properties", "files.count", "files", "파일 개"),
    AlignedString(
        "chrome/@/locale/@/global/test.properties", "continued", "First part second part", "첫 부분 둘째 부분"
    ),
    AlignedString("chrome/@/locale/@/global/test.properties", "newline", "Line one", "한 줄"),
    AlignedString(
        "localization/@/toolkit/test.ftl", "save-button", "Save Firefox settings", "Firefox 설정 저장"
    ),
    AlignedString(
        "localization/@/toolkit/test.ftl", "save-button.tooltiptext", "Save the settings", "설정을 저장합니다"
    ),
    AlignedString("localization/@/toolkit/test.ftl", "downloads-count", "downloads", "다운로드 개"),
    AlignedString("localization/@/toolkit/test.ftl", "empty-attr.label", "Close", "닫기"),
]
FIREFOX_COUNTS = {
    "files aligned": 5,
    "files only in en-US": 1,
    "en-US strings": 20,
    "ko strings": 20,
    "dropped: key binding or CSS": 3,  # save-button.accesskey, open.accesskey, window.width
    "dropped: placeholders only": 1,  # only-variable
    "dropped: identical": 2,  # same-text, -brand-short-name
    "aligned strings": 13,
}
MOZ_PROBLEMS = [
    ("file in one language only", "localization/@/toolkit/extra.ftl", "only en-US"),
    (
        "malformed properties line",
        "omni.ja:chrome/en-US/locale/en-US/global/test.properties: line 7",
        "brokenline",
    ),
    (
        "malformed DTD text",
        "omni.ja:chrome/en-US/locale/en-US/global/test.dtd: line 5",
        "<!ENTITY bad entity>",
    ),
    (
        "malformed Fluent entry",
        "omni.ja:localization/en-US/toolkit/test.ftl: line 17",
        'E0003 Expected token: "="',
    ),
    ("message in one language only", "localization/@/toolkit/test.ftl (en-US): line 16", "only-english"),
    ("message in one language only", "localization/@/toolkit/test.ftl (ko): line 10", "only-korean"),
]


class Problems(list):
    def __call__(self, kind: str, where: str, detail: str) -> None:
        self.append((kind, where, detail))


def zip_tree(folder: Path, archive: Path, strip: str = "") -> Path:
    """`folder`'s files into a zip (fixed dates: the same bytes every time), names without `strip`."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = path.relative_to(folder).as_posix().removeprefix(strip)
            zf.writestr(zipfile.ZipInfo(name, date_time=(2010, 1, 1, 0, 0, 0)), path.read_bytes())
    return archive


def package_roots(base: Path) -> dict[str, Path]:
    """The six packages as extracted folders (`usr/...`), in the layout the real ones have."""
    roots = {name: base / name for name in PACKAGES}
    for name, root in roots.items():
        doc = root / "usr/share/doc" / name
        doc.mkdir(parents=True)
        licence = "MPL-2.0" if name.startswith("firefox") else "MPL-2.0 or GPL-2 or LGPL-2.1"
        text = FAQ_COPYRIGHT if name.startswith("debian-faq") else MOZ_COPYRIGHT.format(licence)
        (doc / "copyright").write_text(text, encoding="utf-8")
    faq = roots["debian-faq"] / "usr/share/doc/debian/FAQ"
    faq_ko = roots["debian-faq-ko"] / "usr/share/doc/debian/FAQ/ko"
    faq.mkdir(parents=True)
    faq_ko.mkdir(parents=True)
    shutil.copy(FIXTURES / "faq/en/basic-defs.en.html", faq)
    shutil.copy(FIXTURES / "faq/ko/basic-defs.ko.html", faq_ko)
    firefox = roots["firefox-esr"] / "usr/lib/firefox-esr"
    zip_tree(MOZ / "firefox-omni", firefox / "omni.ja")
    zip_tree(MOZ / "firefox-browser-omni", firefox / "browser/omni.ja")
    xpi = "usr/lib/firefox-esr/browser/extensions/langpack-ko@firefox-esr.mozilla.org.xpi"
    zip_tree(MOZ / "firefox-langpack", roots["firefox-esr-l10n-ko"] / xpi)
    merged = base / "thunderbird-omni"
    shutil.copytree(MOZ / "firefox-omni", merged)
    shutil.copytree(MOZ / "firefox-browser-omni", merged, dirs_exist_ok=True)
    zip_tree(merged, roots["thunderbird"] / "usr/share/thunderbird/omni.ja")
    tb_pack = base / "thunderbird-langpack"
    shutil.copytree(MOZ / "firefox-langpack", tb_pack)
    shutil.copytree(tb_pack / "browser", tb_pack, dirs_exist_ok=True)
    shutil.rmtree(tb_pack / "browser")
    xpi = "usr/lib/thunderbird/extensions/langpack-ko@thunderbird.mozilla.org.xpi"
    zip_tree(tb_pack, roots["thunderbird-l10n-ko"] / xpi)
    return roots


def test_faq_sections_align_by_anchor_with_numbers_checked() -> None:
    problems = Problems()
    pairs, counts = align_faq(FIXTURES / "faq/en", FIXTURES / "faq/ko", problems)
    assert counts == {"en sections": 7, "ko sections": 6, "aligned sections": 5}
    assert [(en.anchor, en.number, ko.number) for en, ko in pairs] == [
        ("whatisfaq", "1.1", "1.1"),
        ("whatisdebian", "1.2", "1.2"),
        ("free", "1.2.1", "1.2.1"),
        ("container", "1.5", "1.5"),
        ("leaf", "1.5.1", "1.5.1"),
    ]
    en, ko = pairs[0]
    assert (en.title, en.chapter, en.file) == ("What is this FAQ?", "Definitions and overview", "basic-defs")
    assert (ko.title, ko.chapter) == ("이 FAQ는 무엇인가요?", "정의 및 개관")
    assert en.text == "This document gives frequently asked questions.\n\nSee Section 12.1."
    assert ko.text == "이 문서는 자주 묻는 질문을 드립니다.\n\n12.1절을 보십시오."
    # a section's own text only: its nested subsection is a section of its own
    assert pairs[1][0].text == "Debian is a distribution.\n\nfull featured: many packages.\n\nfree"
    assert pairs[1][1].text == "데비안은 배포판입니다.\n\n전체 특징: 많은 패키지.\n\n자유"
    assert (pairs[2][0].text, pairs[2][1].text) == ("Yes, main is free.", "네, main은 자유입니다.")
    assert pairs[3][0].text == "" and pairs[4][0].text == "ftp.debian.org /debian"
    assert problems == [
        ("section in one language only", f"{FIXTURES / 'faq/en/basic-defs.en.html'}: #linux", "only en"),
        (
            "section number differs",
            f"{FIXTURES / 'faq/ko/basic-defs.ko.html'}: #pronunciation",
            "ko 1.6 en 1.4",
        ),
    ]


def test_faq_unparsable_chapter_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "ko").mkdir()
    shutil.copy(FIXTURES / "faq/en/basic-defs.en.html", tmp_path / "en")
    (tmp_path / "ko/basic-defs.ko.html").write_text("<html><body><p>cut off", encoding="utf-8")
    problems = Problems()
    pairs, counts = align_faq(tmp_path / "en", tmp_path / "ko", problems)
    assert pairs == [] and counts["ko sections"] == 0
    assert problems[0][0] == "unparsable XHTML" and problems[0][1].endswith("basic-defs.ko.html: line 1")


def test_logical_paths_pair_omni_ja_with_the_language_pack() -> None:
    en = logical_path("browser/", "localization/en-US/browser/tabbrowser.ftl", "en-US")
    ko = logical_path("", "browser/localization/ko/browser/tabbrowser.ftl", "ko")
    assert en == ko == "browser/localization/@/browser/tabbrowser.ftl"
    assert (
        logical_path("", "chrome/en-US/locale/en-US/global/a.properties", "en-US")
        == "chrome/@/locale/@/global/a.properties"
    )
    assert logical_path("", "chrome/toolkit/content/global/a.properties", "en-US") is None  # not localised
    assert logical_path("", "localization/en-US/a.js", "en-US") is None


def test_mozilla_strings_align_by_file_and_id(tmp_path: Path) -> None:
    roots = package_roots(tmp_path)
    firefox = roots["firefox-esr"] / "usr/lib/firefox-esr"
    problems = Problems()
    en = read_locale(
        [(firefox / "omni.ja", ""), (firefox / "browser/omni.ja", "browser/")], "en-US", problems
    )
    xpi = (
        roots["firefox-esr-l10n-ko"]
        / "usr/lib/firefox-esr/browser/extensions/langpack-ko@firefox-esr.mozilla.org.xpi"
    )
    ko = read_locale([(xpi, "")], "ko", problems)
    aligned, counts = align_strings(en, ko, problems)
    assert aligned == FIREFOX_ALIGNED
    assert dict(counts) == FIREFOX_COUNTS
    assert sorted(problems) == sorted(MOZ_PROBLEMS)


def test_split_units_is_seeded_disjoint_and_sized() -> None:
    units = [f"file{i}" for i in range(20)]
    splits = split_units(reversed(units), seed=13)
    assert splits == split_units(units, seed=13)  # the order given does not matter
    assert sorted(splits) == sorted(units)
    sizes = {s: sum(1 for v in splits.values() if v == s) for s in ("train", "dev", "test")}
    assert sizes == {"train": 16, "dev": 2, "test": 2}
    assert splits != split_units(units, seed=14)
    assert list(split_units(["a", "b", "c"], seed=1).values()).count("train") == 1
    with pytest.raises(WorkbenchError, match="too few"):
        split_units(["a", "b"], seed=1)


def test_licence_from_the_copyright_file() -> None:
    assert licence_of(MOZ_COPYRIGHT.format("MPL-2.0 or GPL-2 or LGPL-2.1")) == (
        "MPL-2.0 or GPL-2 or LGPL-2.1",
        "",
    )
    assert licence_of(FAQ_COPYRIGHT) == ("custom notice (quoted below)", FAQ_COPYRIGHT.strip())


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_build_writes_beir_tasks_split_by_source_and_reruns_as_a_no_op(tmp_path: Path) -> None:
    roots = package_roots(tmp_path / "packages")
    out = tmp_path / "bilingual"
    manifest = build_bilingual(out, roots, seed=13)
    assert sorted(manifest["tasks"]) == sorted(TASKS)
    # FAQ: four sections with text of their own (container has none): 2/1/1 by section, the same
    # section in the same split in all three tasks
    faq_split: dict[str, str] = {}
    for name in TASKS[:3]:
        data = load_beir(out / name, strict=True)
        assert len(data.corpus) == 4 and data.warnings == []
        assert {s: len(q) for s, q in data.qrels.items()} == {"train": 2, "dev": 1, "test": 1}
        for split, judged in data.qrels.items():
            for qid, docs in judged.items():
                anchor = qid.split("-", 2)[2]
                assert docs == {f"{name.split('-')[-1] if name != 'debian-faq-ko' else 'ko'}-{anchor}": 1}
                assert faq_split.setdefault(anchor, split) == split
    assert sorted(faq_split) == ["free", "leaf", "whatisdebian", "whatisfaq"]
    ko_en = load_beir(out / "debian-faq-ko-en")
    assert ko_en.queries["q-ko-whatisfaq"] == "이 FAQ는 무엇인가요?"
    assert ko_en.corpus["en-whatisfaq"].title == "Definitions and overview"
    assert ko_en.corpus["en-whatisfaq"].text.startswith("This document gives frequently")

    aligned = read_rows(out / "aligned.jsonl")
    assert len(aligned) == 26
    firefox_rows = [r for r in aligned if r["source"] == "firefox-esr"]
    assert [(r["ko"], r["en"], r["id"]) for r in firefox_rows] == [
        (a.ko, a.en, f"{a.file}#{a.id}") for a in FIREFOX_ALIGNED
    ]
    for app, source in (("firefox", "firefox-esr"), ("thunderbird", "thunderbird")):
        rows = [r for r in aligned if r["source"] == source]
        file_split: dict[str, str] = {}
        for r in rows:  # a file's strings all in one split
            assert file_split.setdefault(r["id"].split("#")[0], r["split"]) == r["split"]
        assert sorted(file_split.values()) == ["dev", "test", "train", "train", "train"]
        for q_lang, d_lang in (("ko", "en"), ("en", "ko")):
            data = load_beir(out / f"{app}-{q_lang}-{d_lang}", strict=True)
            assert len(data.corpus) == 13 and len(data.queries) == 13
            for split, judged in data.qrels.items():
                got = {(data.queries[q], data.corpus[d].text) for q, docs in judged.items() for d in docs}
                assert got == {(r[q_lang], r[d_lang]) for r in rows if r["split"] == split}

    problems = manifest["problems"]
    assert {k: v["count"] for k, v in problems.items()} == {
        "section in one language only": 1,
        "section number differs": 1,
        "file in one language only": 2,
        "malformed properties line": 2,
        "malformed DTD text": 2,
        "malformed Fluent entry": 2,
        "message in one language only": 4,
    }
    assert manifest["counts"]["firefox aligned strings"] == 13
    assert manifest["counts"]["thunderbird dropped: identical"] == 2
    card = (out / "firefox-ko-en" / "README.md").read_text(encoding="utf-8")
    n_train = sum(1 for r in firefox_rows if r["split"] == "train")  # every string distinct: one pair each
    assert "| firefox-esr-l10n-ko | 140.12.0esr-1~deb12u1 |" in card and "| MPL-2.0 |" in card
    assert f"| train | {n_train} | {n_train} |" in card
    faq_card = (out / "debian-faq-ko" / "README.md").read_text(encoding="utf-8")
    assert "> The copyright and license statement for the Debian FAQ:" in faq_card

    before = (out / "manifest.json").read_bytes()
    assert build_bilingual(out, roots, seed=13) == json.loads(before)
    assert (out / "manifest.json").read_bytes() == before  # not rebuilt
    rebuilt = build_bilingual(out, roots, seed=14)
    assert rebuilt["params"]["seed"] == 14
    assert (out / "manifest.json").read_bytes() != before


def test_build_refuses_missing_sources(tmp_path: Path) -> None:
    with pytest.raises(WorkbenchError, match="no source given for thunderbird, thunderbird-l10n-ko"):
        build_bilingual(tmp_path / "out", {p: tmp_path for p in list(PACKAGES)[:4]})


def build_deb(root: Path, package: str, version: str, dest: Path) -> Path:
    control = root / "DEBIAN" / "control"
    control.parent.mkdir(parents=True)
    control.write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        f"Description: fixture of {package}\n",
        encoding="utf-8",
    )
    deb = dest / f"{package}_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(root / "DEBIAN")
    return deb


@pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed: cannot build fixture .debs"
)
def test_command_reads_cached_debs_without_downloading(tmp_path: Path) -> None:
    roots = package_roots(tmp_path / "packages")
    cache = tmp_path / "debs"
    cache.mkdir()
    debs = {p: build_deb(roots[p], p, v, cache) for p, v in PACKAGES.items()}
    app = typer.Typer()
    register(app)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["--out", str(out), "--debs", str(cache)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    firefox = next(p for p in manifest["packages"] if p["package"] == "firefox-esr")
    assert firefox["version"] == PACKAGES["firefox-esr"]
    assert firefox["sha256"] == __import__("hashlib").sha256(debs["firefox-esr"].read_bytes()).hexdigest()
    assert manifest["counts"]["thunderbird aligned strings"] == 13
    card = (out / "debian-faq-ko" / "README.md").read_text(encoding="utf-8")
    assert firefox["sha256"] not in card and manifest["packages"][0]["sha256"] in card
    # a .deb whose version is not the pinned one: one line, exit 2
    wrong = cache / f"debian-faq_{PACKAGES['debian-faq']}_all.deb"
    shutil.copy(debs["debian-faq-ko"], wrong)
    result = CliRunner().invoke(app, ["--out", str(out), "--debs", str(cache)])
    assert result.exit_code == 2
    assert "holds debian-faq-ko 11.1, expected debian-faq 11.1" in result.output


REAL_DEBS = Path(__file__).resolve().parents[1] / ".cache" / "debs"


@pytest.mark.slow
def test_real_packages(tmp_path: Path) -> None:
    """The real Debian packages, when `make prepare-bilingual` has downloaded them (needs apt-get
    download and Debian's mirror); the test itself downloads nothing."""
    from harness.prepare.bilingual.debs import download_debs

    have = {p: sorted(REAL_DEBS.glob(f"{p}_{v.replace(':', '%3a')}_*.deb")) for p, v in PACKAGES.items()}
    if not all(have.values()):
        pytest.skip(
            f"the pinned .debs are not in {REAL_DEBS}: run `make prepare-bilingual` (apt-get download)"
        )
    manifest = build_bilingual(tmp_path / "out", download_debs(REAL_DEBS, PACKAGES))
    counts = manifest["counts"]
    assert (
        counts["debian-faq en sections"]
        == counts["debian-faq ko sections"]
        == counts["debian-faq aligned sections"]
    )
    assert "section number differs" not in manifest["problems"]
    for name in TASKS:
        assert load_beir(tmp_path / "out" / name, strict=True).warnings == []
