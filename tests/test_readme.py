"""The README's Python examples run as shown, type-check with ``mypy --strict``, and its pytest
configuration runs the pytest example without a warning; so do the examples of the documentation
pages the README sends a reader to for the rest (bots, the rejoin bot, several nodes)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import signalroom

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _blocks(language: str, page: Path = README) -> list[str]:
    found = re.findall(rf"^( *)```{language}\n(.*?)^ *```", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    return [textwrap.dedent(block) for _, block in found]


def _sync_example() -> str:
    found = [b for b in _blocks("python") if "signalroom.sync.connect(token)" in b]
    assert len(found) == 1, "the README has one sync example"
    return found[0]


def test_the_readme_python_example_runs() -> None:
    blocks = _blocks("python")
    assert blocks, "the README has a Python example"
    example = blocks[0]
    assert "asyncio.run(main())" in example
    run = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "echo: hi bob\n"
    assert run.stderr == ""


def test_the_readme_pytest_example_passes_without_warnings(tmp_path: Path) -> None:
    blocks = _blocks("python")
    assert len(blocks) >= 2, "the README has a pytest example after the Python one"
    (tmp_path / "test_example.py").write_text(blocks[1])
    config = [b for b in _blocks("toml") if "[tool.pytest.ini_options]" in b]
    assert len(config) == 1, "the README has a pytest configuration"
    (tmp_path / "pyproject.toml").write_text(config[0])
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rw", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout, run.stdout
    assert "warning" not in run.stdout.lower(), run.stdout


def test_the_readme_examples_pass_mypy_strict(tmp_path: Path) -> None:
    main_example = tmp_path / "readme_example.py"
    main_example.write_text(_blocks("python")[0])
    sync_example = tmp_path / "readme_sync.py"
    sync_example.write_text("import sys\ntoken = sys.argv[1]\n" + _sync_example())
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(main_example), str(sync_example)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found in 2 source files" in run.stdout


def test_one_signal_one_reply_takes_four_lines_with_the_sync_api() -> None:
    example = _sync_example()
    lines = [line for line in example.splitlines() if line.strip()]
    assert len(lines) <= 4, lines
    with signalroom.sync.Server() as server:
        api = server.api()
        api.create_session("lobby")
        with signalroom.sync.connect(api.create_connection("lobby").token) as bot:
            bot.on("signal:ping", lambda e: bot.reply(e, "pong", type="pong"))
            token = api.create_connection("lobby").token
            run = subprocess.run(
                [sys.executable, "-c", "import sys\ntoken = sys.argv[1]\n" + example, token],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "pong\n"


def test_the_readme_names_its_prerequisites_and_no_file_outside_the_repository() -> None:
    text = README.read_text()
    assert "Rust ≥ 1.85" in text and "CPython ≥ 3.9" in text
    assert "shared/" not in text  # the protocol is described, not pointed to outside the repository
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if not link.startswith(("http://", "https://")):
            assert (README.parent / link).exists(), link


def test_the_readme_names_the_test_command_and_links_every_page_of_the_site() -> None:
    """A first visit finds the test command, and a way to every page the README no longer carries."""
    text = README.read_text()
    tests = text.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    assert "`scripts/test` is the test command" in tests
    assert (ROOT / "scripts" / "test").is_file()
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)", text))
    pages = {f"docs/{p.relative_to(DOCS).as_posix()}" for p in DOCS.rglob("*.md")}
    missing = sorted(pages - linked - {"docs/changelog.md"})  # the README links CHANGELOG.md itself
    assert not missing, f"pages the README does not link: {missing}"
    assert 150 <= len(text.splitlines()) <= 250, "the README is a first visit's page: the rest is on the site"


def test_the_readme_rejoin_bot_answers_the_readme_sync_example() -> None:
    """The examples that talk to each other work together: the guide's rejoin bot answers the ping
    of the README's sync example with the pong that example waits for."""
    [bot] = [b for b in _blocks("python", DOCS / "python" / "guide.md") if "rejoin=fresh_token" in b]
    bot_script = (
        "import asyncio\nimport sys\n\nimport signalroom\n\n\nasync def main() -> None:\n"
        "    api = signalroom.ServerApi(sys.argv[1], sys.argv[2])\n"
        + textwrap.indent(bot, "    ")
        + "\n\nasyncio.run(main())\n"
    )
    with signalroom.sync.Server(secret="readme") as server:
        api = server.api()
        api.create_session("lobby")
        with signalroom.sync.connect(api.create_connection("lobby").token, data="watcher") as watcher:
            process = subprocess.Popen(
                [sys.executable, "-c", bot_script, server.url, "readme"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                watcher.receive("connectionCreated", predicate=lambda e: e.connection.data == "bot", timeout=30)
                token = api.create_connection("lobby").token
                run = subprocess.run(
                    [sys.executable, "-c", "import sys\ntoken = sys.argv[1]\n" + _sync_example(), token],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                api.close_session("lobby")  # the bot is evicted, which it does not rejoin: it ends
                _, bot_stderr = process.communicate(timeout=30)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert run.returncode == 0, run.stderr
    assert run.stdout == "pong\n"
    assert process.returncode == 0, bot_stderr


def test_the_cluster_page_says_round_robin_may_split_a_persons_rest_call_and_websocket() -> None:
    """The balancer of deploy/ routes every request on its own; the page on several nodes says what
    that means for one person, so that nobody debugs it."""
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert re.search(r"^\s*balance roundrobin", haproxy, flags=re.MULTILINE)
    page = (DOCS / "server" / "cluster.md").read_text()
    assert page.startswith('--8<-- "deploy/README.md"')  # deploy/README.md, then the sections below
    cluster = page.split("\n## Behind a round-robin balancer\n", 1)[1].split("\n## ", 1)[0]
    note = " ".join(cluster.split())
    assert "round robin" in note
    assert "REST call" in note and "WebSocket" in note and "another" in note
    assert "expected and fine" in note


def _bot_example() -> str:
    found = [b for b in _blocks("python", DOCS / "python" / "bots.md") if '@bot.handle("ask")' in b]
    assert len(found) == 1, "the bots' page has one bot example"
    return found[0]


async def test_the_chat_page_bot_streams_its_answer_to_whoever_asks(tmp_path: Path) -> None:
    example = _bot_example()
    assert len([line for line in example.splitlines() if line.strip()]) <= 25
    bot_file = tmp_path / "readme_bot.py"
    bot_file.write_text(example)
    mypy = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        str(bot_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    output, _ = await mypy.communicate()
    assert mypy.returncode == 0, output.decode()
    async with signalroom.Server(secret="readme-bot") as server:
        script = example.replace("http://127.0.0.1:4443", server.url).replace("MY_SECRET", "readme-bot")
        api = signalroom.ServerApi(server.url, "readme-bot")
        await api.create_session("lobby")
        me = await signalroom.connect((await api.create_connection("lobby")).token, data="me")
        bot_here = me.wait_for("connectionCreated", predicate=lambda e: e.connection.data == "bot", timeout=30.0)
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
        try:
            bot = (await bot_here).connection
            answer = me.next_stream("answer", timeout=10.0)
            reply = asyncio.ensure_future(me.request(bot, "ask", "what is this?", timeout=30.0))
            stream = await answer
            pieces = [piece async for piece in stream]
            assert "".join(str(p) for p in pieces) == "You asked 'what is this?'. Let me think, one word at a time. "
            assert len(pieces) == 13  # word by word
            assert await reply == ""
        finally:
            process.terminate()
            await process.wait()
            await me.disconnect()
