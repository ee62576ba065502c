"""Ticket text safety on its own: what an alert says is literal text in every target format."""

from __future__ import annotations

from markdown_it import MarkdownIt

from diag.exporters.tickets import text as tx
from diag.exporters.tickets.redmine import textile_text

HOSTILE = "<script>x</script> a|b *em* _u_ [l](javascript:y) &#x202E; \u202egnp.exe\x00\x07 disk_full ``` v1 -> v2"


def render(md: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(md)


def test_clean_removes_controls_and_shows_bidi() -> None:
    assert tx.clean("a\x00b\x1b[31mc\r\nd\te\u202ef\ufeff") == "ab[31mc\nd\te<U+202E>f<U+FEFF>"
    assert tx.one_line("a\n b\r\n\tc") == "a b c"


def test_inline_values_are_text_in_markdown_and_table_cells() -> None:
    cell = tx.md_inline(HOSTILE)
    html = render(f"| k | v |\n|---|---|\n| x | {cell} |\n")
    assert "<script" not in html and "<em>" not in html and "href" not in html
    assert html.count("<td>") == 2  # the '|' in the value did not add a cell
    assert "disk_full" in html and "v1 -&gt; v2" in html  # nothing escaped that needed no escape
    assert "&lt;U+202E&gt;" in html and "\u202e" not in html


def test_a_fence_its_content_cannot_close() -> None:
    block = tx.md_code("before\n```\n<img src=x onerror=alert(1)>\n````\nafter")
    html = render(block + "\n\n# heading after")
    assert "<img" not in html and html.count("<pre>") == 1 and "<h1>heading after</h1>" in html


def test_prose_line_starts_are_not_markup() -> None:
    html = render(tx.md_text("# not a heading\n- not a list\n1. not a list\n> no quote"))
    assert "<h1>" not in html and "<li>" not in html and "<blockquote>" not in html


def test_plain_text_targets_get_the_value_back() -> None:
    md = tx.md_text("<b>bold</b> a|b _x_") + "\n\n" + tx.md_code("keep \\< this")
    plain = tx.md_plain(md)
    assert plain.startswith("<b>bold</b> a|b _x_") and "keep \\< this" in plain  # code untouched


def test_html_and_textile_targets_escape_everything() -> None:
    assert tx.html('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    textile = textile_text(tx.md_text(HOSTILE) + "\n\n" + tx.md_code("</pre><script>y</script>"))
    body = textile.removeprefix("<pre>\n").removesuffix("\n</pre>")
    assert "<" not in body and ">" not in body and "&lt;/pre&gt;&lt;script&gt;" in body and "\x00" not in body
