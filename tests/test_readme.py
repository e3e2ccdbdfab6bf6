"""The README's set-up is what CI runs, its table is current, and its links lead somewhere.

README command 1 is `<PyTorch CPU build> && pip install -e ".[extras]" && <main job>`; command 2
is `pip install -e ".[extras]" && python -m pytest -q`. .ci/run installs the same extras and runs
the main job and the test command as written (PyTorch comes from the local CPU wheel there, as
the build machines cannot reach PyTorch's index). The main job itself runs in CI with stand-in
weights; here the test checks that CI's lines are the README's.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
EXTRAS = re.compile(r'pip install (?:-q )?-e "\.\[([a-z0-9,-]+)\]"')


def numbered_command(number: int) -> str:
    """The line after `# <number>.` in the README's set-up block."""
    match = re.search(rf"^# {number}\. .*\n(.+)$", README, re.MULTILINE)
    assert match, f"README has no command {number}"
    return match.group(1).strip()


def test_command_1_installs_the_cpu_build_then_the_main_jobs_extra_then_runs_it():
    parts = numbered_command(1).split(" && ")
    assert parts[0] == "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert EXTRAS.fullmatch(parts[1]).group(1) == "export"
    main_job = " && ".join(parts[2:])
    assert main_job.startswith("dav2-export ") and "dav2-run " in main_job
    assert main_job in CI.splitlines()  # CI runs it as written


def test_command_2_installs_the_test_extra_and_runs_what_ci_runs():
    install, test = numbered_command(2).split(" && ")
    assert EXTRAS.fullmatch(install).group(1) == "test"
    assert test == "python -m pytest -q" and test in CI.splitlines()


def test_ci_installs_exactly_the_readmes_extras():
    readme = [EXTRAS.search(numbered_command(n)).group(1) for n in (1, 2)]
    assert EXTRAS.findall(CI) == readme


def results_table_module():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import results_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return results_table


def test_every_measured_table_is_current():
    done = subprocess.run(
        [sys.executable, "scripts/results_table.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_a_changed_result_file_makes_its_docs_table_stale(tmp_path, monkeypatch):
    """The docs' numbers come from the JSON: change one number there and the page no longer matches."""
    results_table = results_table_module()
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path, dirs_exist_ok=True)
    name = "amd-epyc-2-cores-int8-dynamic-vs-static.json"
    document = json.loads((tmp_path / name).read_text())
    document["rows"][0]["abs_rel"] = 0.1234
    (tmp_path / name).write_text(json.dumps(document))
    monkeypatch.setattr(results_table, "RESULTS", tmp_path)
    pages = results_table.updated_pages()
    old, new = pages[ROOT / "docs" / "int8.md"]
    assert old != new and "0.1234" in new and "0.1234" not in old
    assert pages[ROOT / "README.md"][0] == pages[ROOT / "README.md"][1]


def test_every_table_in_the_docs_with_a_measured_number_is_generated():
    """A Markdown table row holding a decimal number with 3+ digits after the point sits between results markers."""
    loose = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        inside = False
        for line in page.read_text(encoding="utf-8").splitlines():
            if re.match(r"<!-- results:[\w-]+:begin -->", line):
                inside = True
            elif re.match(r"<!-- results:[\w-]+:end -->", line):
                inside = False
            elif line.startswith("|") and re.search(r"\d\.\d{3,}", line) and not inside:
                loose.append(f"{page.name}: {line[:80]}")
    assert not loose, loose


def test_results_table_skips_files_of_other_shapes(tmp_path):
    """A JSON file that is no complete dav2-bench run (another helper's record, a pipeline run) is left out."""
    results_table = results_table_module()
    other = tmp_path / "other.json"
    other.write_text('{"schema": 7, "rows": [1, 2]}')
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert results_table.headline_source(other) is None and results_table.headline_source(broken) is None
    pipeline = ROOT / "benchmarks" / "results" / "amd-epyc-2-cores-pipeline-ov-int8-308x546-mp4.json"
    assert results_table.headline_source(pipeline) is None
    plain = results_table.headline_source(ROOT / "benchmarks" / "results" / "amd-epyc-2-cores-vits.json")
    assert plain is not None and plain.size == 518 and {c["size"] for c in plain.cases} == {518}


def test_the_headline_shows_the_newest_run_of_each_machine(tmp_path):
    results_table = results_table_module()
    recorded = json.loads((ROOT / "benchmarks" / "results" / "amd-epyc-2-cores-vits.json").read_text())
    for name, date in (("a-old.json", "2026-01-01T00:00:00Z"), ("b-new.json", "2026-06-01T00:00:00Z")):
        (tmp_path / name).write_text(json.dumps({**recorded, "machine": {**recorded["machine"], "date": date}}))
    other = {**recorded, "machine": {**recorded["machine"], "label": "Other box", "date": "2025-01-01T00:00:00Z"}}
    (tmp_path / "c-other.json").write_text(json.dumps(other))
    assert [source.path.name for source in results_table.sources(tmp_path)] == ["b-new.json", "c-other.json"]


def test_every_relative_link_in_the_readme_and_docs_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing, missing


def test_the_readme_is_a_front_page():
    assert len(README.encode()) <= 12_000
