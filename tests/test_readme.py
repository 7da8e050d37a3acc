"""The README's code blocks are documentation that must run: execute every ```python block."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_the_three_commands():
    text = README.read_text()
    for command in ('pip install -e ".[dev]"', "pytest", "python train.py"):
        assert command in text


def test_readme_python_blocks_run():
    blocks = _python_blocks()
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        namespace: dict = {}
        exec(compile(block, f"README.md block {i}", "exec"), namespace)  # noqa: S102
