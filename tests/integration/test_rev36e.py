"""Session 36 review of walk36b and a leftover of rev36b (rev36e)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_walk36 import skipped_reasons

SECRET = "sk-live-4f9a2c7e1b"


def test_kbsearch_index_names_a_dropped_fields_type_never_its_value(tmp_path: Path) -> None:
    """A frontmatter field dropped for a value its type cannot hold quoted up to 40 characters of that value
    (`api_key: !!int sk-live-...` said `'sk-live-...' is not a valid int`) in `kbsearch index`'s summary, its JSON
    log and `serve --watch`'s line: a secret in a log. The warning names the field, the type and the line only."""
    notes = {
        "key.md": f"---\ntitle: Keys\napi_key: !!int {SECRET}\n---\n# Keys\n\nbody\n",
        "nested.md": f"---\ntitle: Nested\nsecrets:\n  - !!float {SECRET}\n---\n# Nested\n\nbody\n",
        "date.md": "---\ntitle: Dated\nupdated: 2026-13-45\n---\n# Dated\n\nbody\n",
    }
    said, run = skipped_reasons(tmp_path, notes)
    assert said == {}
    out = run.stdout + run.stderr
    assert SECRET not in out and "sk-live" not in out and "2026-13-45" not in out
    warned = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in run.stdout.splitlines()
              if line.strip().startswith("warning ")}  # fmt: skip
    assert warned == {
        "warning key.md": "frontmatter field 'api_key' dropped: a value at line 3 is not a valid int",
        "warning nested.md": "frontmatter field 'secrets' dropped: a value at line 4 is not a valid float",
        "warning date.md": "frontmatter field 'updated' dropped: a value at line 3 is not a valid date or time",
    }, run.stdout
