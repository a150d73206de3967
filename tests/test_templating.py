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


# -- a template's own errors: the operator's file and line, never a traceback -------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("<p>\n{% if x %}never closed\n", 2, "template syntax error: Unexpected end of template"),
        (
            "<p>\n{{ nosuch.attr }}\n", 2,
            "the template failed: UndefinedError: 'nosuch' is undefined",
        ),
        ("<p>\n\n{{ 1 // zero }}\n", 3, "the template failed: ZeroDivisionError"),
    ],
)
def test_an_error_in_a_template_names_its_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    from feeds.errors import TemplateError
    from feeds.templating import render

    folder = _folder(tmp_path, text)
    with pytest.raises(TemplateError) as caught:
        render(environment(folder, autoescape=True), "page.html", zero=0)
    assert (caught.value.path, caught.value.line) == (str(folder / "page.html"), line)
    assert caught.value.message.startswith(message)


def test_a_missing_template_is_an_error_naming_its_folder(tmp_path: Path) -> None:
    from feeds.errors import TemplateError
    from feeds.templating import render

    folder = _folder(tmp_path, "<p>\n")
    with pytest.raises(TemplateError, match=r"template 'gone\.html' not found") as caught:
        render(environment(folder, autoescape=True), "gone.html")
    assert caught.value.path == str(folder)


def test_an_error_in_the_packages_own_filter_is_a_bug_with_its_traceback(tmp_path: Path) -> None:
    from feeds.templating import render
    from feeds.textutil import cut

    folder = _folder(tmp_path, "{{ 5|cut(3) }}\n")
    with pytest.raises(TypeError):
        render(environment(folder, autoescape=True, filters={"cut": cut}), "page.html")


def test_feeds_build_and_check_report_a_broken_template_in_one_line(tmp_path: Path) -> None:
    import shutil

    from click.testing import CliRunner
    from conftest import ROOT

    from feeds.cli import cli

    runner = CliRunner()
    assert runner.invoke(cli, ["init", str(tmp_path / "site")]).exit_code == 0
    site = tmp_path / "site"
    shutil.copytree(ROOT / "templates", site / "tpl")
    config = site / "feeds.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('# templates = ', 'templates = "tpl"\n# ', 1),
        encoding="utf-8",
    )
    email = site / "tpl" / "newsletter" / "email.html"
    lines = email.read_text(encoding="utf-8").count("\n")
    email.write_text(email.read_text(encoding="utf-8") + "{% if x %}oops\n", encoding="utf-8")

    built = runner.invoke(cli, ["-c", str(config), "build"])
    checked = runner.invoke(cli, ["-c", str(config), "check"])

    expected = f"error: {email}:{lines + 1}: template syntax error: Unexpected end of template"
    assert built.exit_code == 1 and "Traceback" not in built.output
    assert built.output.startswith(expected) and built.output.count("\n") == 1
    assert checked.exit_code == 1 and expected in checked.output


def test_an_error_raised_in_a_worker_process_keeps_its_file_line_and_hint() -> None:
    import pickle

    from feeds.errors import LockedError, TemplateError

    error = TemplateError("the template failed", path="tpl/a.html", line=7, hint="fix it")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is TemplateError
    assert str(again) == "tpl/a.html:7: the template failed (fix it)"
    locked = LockedError("taken", path="state.lock")
    locked.held_for = 12.0
    assert pickle.loads(pickle.dumps(locked)).held_for == 12.0


def test_a_template_that_is_not_utf8_is_named_even_when_it_is_an_include(tmp_path: Path) -> None:
    from feeds.errors import TemplateError
    from feeds.templating import render, source

    folder = _folder(tmp_path, '{% include "part.html" %}\n')
    (folder / "part.html").write_bytes(b"<p>caf\xe9</p>\n")
    (folder / "style.css").write_bytes(b"p { content: '\xff' }\n")
    env = environment(folder, autoescape=True)
    with pytest.raises(TemplateError, match="not UTF-8 text") as caught:
        render(env, "page.html")
    assert caught.value.path == str(folder / "part.html")
    with pytest.raises(TemplateError, match="not UTF-8 text"):
        source(env, "style.css")


def test_check_reads_templates_and_their_stylesheets_but_not_images_or_init_files(
    tmp_path: Path,
) -> None:
    from feeds.templating import syntax_errors

    folder = tmp_path / "templates"
    (folder / "web" / "static").mkdir(parents=True)
    (folder / "init").mkdir()
    (folder / "web" / "static" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    (folder / "init" / "crontab").write_text("{% not jinja %}\n", encoding="utf-8")
    (folder / "web" / "page.html").write_text("{% if x %}\n", encoding="utf-8")
    (folder / "web" / "site.css").write_bytes(b"p { color: red }\xff\n")

    found = sorted((e.path, e.message.split(":")[0]) for e in syntax_errors(folder))
    assert found == [
        (str(folder / "web" / "page.html"), "template syntax error"),
        (str(folder / "web" / "site.css"), "not UTF-8 text (invalid start byte at byte 16)"),
    ]
