"""A real notebook, executed by Jupyter's own executor (nbclient) in an IPython kernel: top-level
``await``, the Python guide's notebook cells (docs/python/guide.md), and a cell run again that must not register its handler
twice."""

from __future__ import annotations

import re
from pathlib import Path

import nbclient
import nbformat
import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "python" / "guide.md"


def _guide_notebook_cells() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    notebook = [b for b in blocks if "# %%" in b]
    assert len(notebook) == 1, "the guide has one notebook example, its cells split by '# %%'"
    return [cell.strip() for cell in re.split(r"^# %%.*$", notebook[0], flags=re.MULTILINE) if cell.strip()]


def _outputs(cell: nbformat.NotebookNode) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output.get("text", ""))
        elif output.get("output_type") == "execute_result":
            texts.append(output.get("data", {}).get("text/plain", "") + "\n")
    return "".join(texts)


CELLS_AFTER_THE_GUIDE = [
    "got = []\nme.on('signal:chat', lambda e: got.append(e.data))",
    (
        "other = await signalroom.connect((await api.create_connection('lobby')).token)\n"
        "first = me.wait_for('signal:chat', predicate=lambda e: e.data == 'one')\n"
        "await other.signal('one', type='chat')\n"
        "await first"
    ),
    # Between cells the kernel's loop runs on: this signal is handled with no cell awaiting.
    "await other.signal('two', type='chat')",
    (
        "import asyncio\n"
        "for _ in range(500):\n"
        "    if got == ['one', 'two']:\n"
        "        break\n"
        "    await asyncio.sleep(0.01)\n"
        "print(chat, got, len(me.handlers('signal:chat')))"
    ),
    "await me.disconnect(); await other.disconnect(); server.stop()\nprint(me.end_reason)",
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Jupyter's own path migration notices
def test_a_notebook_with_top_level_await_and_a_cell_run_again() -> None:
    guide_cells = _guide_notebook_cells()
    assert any("await " in c for c in guide_cells), "the guide's notebook uses top-level await"
    handler_cell = next(c for c in guide_cells if "@me.on(" in c)
    # The guide's cells, its handler cell run again, then the test's own cells.
    cells = [*guide_cells, handler_cell, *CELLS_AFTER_THE_GUIDE]
    code_cells = [nbformat.v4.new_code_cell(c) for c in cells]  # type: ignore[no-untyped-call]
    notebook = nbformat.v4.new_notebook(cells=code_cells)  # type: ignore[no-untyped-call]
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=60, allow_errors=False)
    client.execute()
    outputs = [_outputs(c) for c in notebook.cells]
    # The guide's handler kept each signal once though its cell ran twice; with the lambda, two
    # handlers, not three.
    assert outputs[-2] == "['one', 'two'] ['one', 'two'] 2\n", outputs
    assert outputs[-1] == "disconnect\n", outputs
