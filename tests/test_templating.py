"""The shared Jinja environment: compiled templates kept between runs, never used wrongly."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from feeds.templating import environment


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Jinja's cache folder is made under the system's temporary directory: here, this test's,
    so that no test reads or damages the entries of another (or of a real build)."""
    import tempfile

    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _folder(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / "page.html").write_text(text, encoding="utf-8")
    return folder


def test_a_template_compiled_once_is_loaded_compiled_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path, "<p>{{ name }}</p>\n")
    assert environment(folder, autoescape=True).get_template("page.html").render(name="a&b") == (
        "<p>a&amp;b</p>\n"
    )

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    later = environment(folder, autoescape=True)
    monkeypatch.setattr(later, "compile", no_compiling)
    assert later.get_template("page.html").render(name="x") == "<p>x</p>\n"


def test_an_edited_template_is_compiled_again(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "old {{ name }}\n")
    assert environment(folder, autoescape=True).get_template("page.html").render(name="a") == (
        "old a\n"
    )
    _folder(tmp_path, "new {{ name }}\n")
    assert environment(folder, autoescape=True).get_template("page.html").render(name="a") == (
        "new a\n"
    )


def test_environments_that_compile_differently_never_share_compiled_code(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, "{{ name }}\n")

    def shout(value: object) -> object:
        return str(value).upper()

    renders = [
        environment(folder, autoescape=escape, finalize=final)
        .get_template("page.html")
        .render(name="<b>")
        for _ in range(2)
        for escape, final in ((True, None), (False, None), (False, shout))
    ]
    # The second round loads what the first compiled: each from its own entry.
    assert renders == ["&lt;b&gt;\n", "<b>\n", "<B>\n"] * 2


def test_undefined_names_are_errors_and_block_tags_leave_no_blank_lines(
    tmp_path: Path,
) -> None:
    folder = _folder(tmp_path, "{% if on %}\nyes\n{% endif %}\n{{ missing }}")
    template = environment(folder, autoescape=True).get_template("page.html")
    with pytest.raises(jinja2.UndefinedError):
        template.render(on=True)
    (folder / "page.html").write_text("{% if on %}\nyes\n{% endif %}\n", encoding="utf-8")
    assert environment(folder, autoescape=True).get_template("page.html").render(on=True) == (
        "yes\n"
    )


def test_a_damaged_or_vanished_cache_never_fails_a_render(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "{{ name }}!\n")
    env = environment(folder, autoescape=True)
    assert env.get_template("page.html").render(name="a") == "a!\n"
    cache = env.bytecode_cache
    assert isinstance(cache, jinja2.FileSystemBytecodeCache)
    entries = list(Path(cache.directory).glob("digest-feeds-*.cache"))
    assert len(entries) == 1 and str(tmp_path) in cache.directory
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:12])  # cut short inside the checksum
    assert environment(folder, autoescape=True).get_template("page.html").render(name="b") == (
        "b!\n"
    )
    # The folder cleaned away under a long-running process: the render goes on uncached.
    gone = environment(folder, autoescape=True)
    assert isinstance(gone.bytecode_cache, jinja2.FileSystemBytecodeCache)
    gone.bytecode_cache.directory = str(tmp_path / "cleaned-away")
    assert gone.get_template("page.html").render(name="c") == "c!\n"


def test_a_filter_whose_code_changed_never_runs_code_compiled_for_the_old_one(
    tmp_path: Path,
) -> None:
    # Jinja computes a constant expression through its filter when it compiles: kept code made
    # with one filter would print the old filter's result.
    folder = _folder(tmp_path, '{{ "abc"|shout }}\n')
    first = tmp_path / "first.py"
    first.write_text("def shout(text):\n    return text.upper()\n", encoding="utf-8")
    second = tmp_path / "second.py"
    second.write_text("def shout(text):\n    return text + '!'\n", encoding="utf-8")
    renders = []
    for source in (first, second):
        namespace: dict[str, object] = {}
        exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), namespace)
        env = environment(folder, autoescape=False, filters={"shout": namespace["shout"]})  # type: ignore[dict-item]
        renders.append(env.get_template("page.html").render())
    assert renders == ["ABC\n", "abc!\n"]
