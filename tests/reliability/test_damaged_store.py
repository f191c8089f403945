"""A damaged run store: never an abort or a traceback, always named as damage with the file and
what to do, and `nbflow server database check` / `repair` on real damaged files.

Every store here is a real DuckDB file written by real flows in a child process, then damaged
on disk: random bytes at fixed-seed offsets, truncations, a damaged write-ahead log, an empty
file and a file that is no database at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

import nbflow
from nbflow.errors import StoreCorruptedError
from nbflow.store import damage

NBFLOW_PATH = str(Path(nbflow.__file__).resolve().parent.parent)
#: exit codes of a process that aborted (SIGABRT: "terminate called without an active exception").
ABORTED = (134, -6)

MAKE_RUNS = """
import json, nbflow
from nbflow import flow, task, get_run_logger

@task
def double(x):
    return 2 * x

@flow(name="kept")
def kept(n: int) -> int:
    get_run_logger().info("run %s", n)
    return sum(double(i) for i in range(3))

for n in range(6):
    kept(n)
nbflow.flush()
print(json.dumps(nbflow.runs()["id"].tolist()))
"""

#: a user's script whose run records reach a damaged store only at exit (and while it runs).
FLOW_SCRIPT = """
from nbflow import flow, task

@task
def one(i):
    return i

@flow(name="late")
def late():
    # Five task runs: DuckDB skips a column segment whose min/max cannot hold the ids a write
    # looks up, so with one random id a write would miss a damaged block now and then.
    return [one(i) for i in range(5)]

late()
"""

#: runs CLI commands in one interpreter, as `nbflow ...` would, and reports each exit code and stderr.
CLI_DRIVER = """
import contextlib, io, json, sys
from nbflow.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NBFLOW_API_URL", "NBFLOW_API_TOKEN")}
    env.update(NBFLOW_HOME=str(home), NBFLOW_SERVER="off", NBFLOW_STORE_LOCK_TIMEOUT="10", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [NBFLOW_PATH, env.get("PYTHONPATH")]))
    return env


def _run(home: Path, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], env=_env(home, **extra), capture_output=True,
                          text=True, timeout=120)


def _nbflow(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(home, ["-m", "nbflow", *args])


def _home(root: Path, name: str, main: bytes, wal: bytes | None = None) -> Path:
    home = root / name
    home.mkdir()
    (home / "nbflow.duckdb").write_bytes(main)
    if wal is not None:
        (home / "nbflow.duckdb.wal").write_bytes(wal)
    return home


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Pristine:
    """A healthy store made by real flows, and one with a write-ahead log not checkpointed yet."""

    main: bytes
    run_ids: list[str]
    wal_main: bytes  #: the store file beside `wal`
    wal: bytes  #: its WAL: 3 more flow runs, committed but not checkpointed
    wal_run_ids: list[str]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    home = tmp_path_factory.mktemp("pristine")
    made = _run(home, ["-c", MAKE_RUNS])
    assert made.returncode == 0, made.stderr
    run_ids = json.loads(made.stdout.strip().splitlines()[-1])
    path = home / "nbflow.duckdb"
    main = path.read_bytes()
    # A process that committed and died before its close checkpointed: the rows are in the WAL.
    add = ("import duckdb, os, sys\n"
           "con = duckdb.connect(sys.argv[1])\n"
           "con.execute('PRAGMA disable_checkpoint_on_shutdown')\n"
           "for i in range(3):\n"
           "    con.execute(\"INSERT INTO flow_runs SELECT * REPLACE ('in-wal-' || ? AS id) "
           "FROM flow_runs LIMIT 1\", [i])\n"
           "os._exit(0)\n")
    assert _run(home, ["-c", add, str(path)]).returncode == 0
    wal = path.with_name("nbflow.duckdb.wal").read_bytes()
    assert wal
    return Pristine(main, run_ids, path.read_bytes(), wal, [f"in-wal-{i}" for i in range(3)])


def _cases(p: Pristine) -> list[tuple[str, bytes, bytes | None]]:
    """(name, store bytes, WAL bytes or None): the damage a disk, a copy or a crash can do."""
    cases: list[tuple[str, bytes, bytes | None]] = []
    for seed in range(6):
        rng = random.Random(seed)
        damaged = bytearray(p.main)
        for _ in range(rng.randint(1, 5)):
            size = rng.choice([8, 512, 4096])
            offset = rng.randrange(0, len(damaged) - size)
            damaged[offset:offset + size] = rng.randbytes(size)
        cases.append((f"random-{seed}", bytes(damaged), None))
    for length in (100, len(p.main) // 2, len(p.main) - 4096, len(p.main) - 1):
        cases.append((f"truncated-{length}", p.main[:length], None))
    cases.append(("empty", b"", None))
    cases.append(("not-duckdb", b"PAR1 this is no database\n" * 4000, None))
    for seed in range(2):
        rng = random.Random(seed)
        wal = bytearray(p.wal)
        offset = rng.randrange(len(wal) // 3, len(wal) - 16)
        wal[offset:offset + 16] = rng.randbytes(16)
        cases.append((f"wal-random-{seed}", p.wal_main, bytes(wal)))
    return cases


def test_no_damage_aborts_a_command_or_shows_a_traceback(pristine: Pristine, tmp_path: Path) -> None:
    """`flow-run ls` then `flow-run inspect`, on each damaged copy: a damaged store is a one-line
    error naming the file (the WAL when the WAL is damaged) and the repair, exit code 1."""
    commands = [["flow-run", "ls"], ["flow-run", "inspect", pristine.run_ids[0]]]

    def run_case(case: tuple[str, bytes, bytes | None]) -> list[str]:
        name, main, wal = case
        home = _home(tmp_path, name, main, wal)
        done = _run(home, ["-c", CLI_DRIVER, json.dumps(commands)])
        problems = []
        if done.returncode in ABORTED or "terminate called" in done.stderr:
            return [f"{name}: aborted ({done.returncode}): {done.stderr[-300:]}"]
        if done.returncode != 0 or "Traceback" in done.stderr:
            return [f"{name}: the commands died ({done.returncode}): {done.stderr[-600:]}"]
        met = False
        for argv, (code, err) in zip(commands, json.loads(done.stdout.strip().splitlines()[-1])):
            said = f"{name}: `{' '.join(argv[:2])}` exit {code}: {err.strip()[-400:]}"
            if code == 0:
                if met:  # once a command met the damage, every later command says so
                    problems.append(f"{said} (after an earlier command found damage)")
                continue
            met = True
            lines = [line for line in err.splitlines() if line.startswith("nbflow: error:")]
            message = lines[-1] if lines else ""
            store = str(home / "nbflow.duckdb")
            if code != 1 or "Traceback" in err or not message:
                problems.append(said)
            elif not any(word in message for word in ("damaged", "not a DuckDB database", "empty (0 bytes)")):
                problems.append(f"{said} (not named as damage)")
            elif store not in message or "nbflow server database" not in message:
                problems.append(f"{said} (no file or no advice)")
            elif wal is not None and (store + ".wal" not in message or f"mv {store} " in message):
                problems.append(f"{said} (WAL damage must name the WAL and keep the store file)")
        if name.startswith(("wal-", "empty", "not-duckdb")) and not met:
            problems.append(f"{name}: the damage went unnoticed")
        return problems

    with ThreadPoolExecutor(max_workers=3) as pool:
        problems = [p for found in pool.map(run_case, _cases(pristine)) for p in found]
    assert not problems, "\n".join(problems)


def _metadata_block(path: Path) -> int:
    """File offset inside a block of the store's metadata (the catalog), which every open reads."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        block = con.execute("SELECT min(block_id) FROM pragma_metadata_info()").fetchone()[0]
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    finally:
        con.close()
    return 3 * 4096 + block * block_size + 8


def _damage_at(path: Path, offset: int, size: int = 64) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        chunk = f.read(size)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in chunk))


@pytest.mark.parametrize("damage_kind", ["metadata", "truncated"])
def test_a_flow_script_on_a_damaged_store_never_aborts_at_exit(damage_kind: str, pristine: Pristine,
                                                               tmp_path: Path) -> None:
    """The writer thread (a daemon) retried the damaged store at exit: when the interpreter
    finalized while it was inside DuckDB (opening the file, or freeing a connection that the
    failed write's traceback held), CPython unwound it through DuckDB's C++ frames and the
    process aborted ("terminate called without an active exception"), in up to half the runs."""
    template = tmp_path / "template.duckdb"
    if damage_kind == "metadata":  # every open fails
        template.write_bytes(pristine.main)
        _damage_at(template, _metadata_block(template))
    else:  # opens, then a write's read fails
        template.write_bytes(pristine.main[:len(pristine.main) * 2 // 3])

    def run_once(i: int) -> subprocess.CompletedProcess[str]:
        home = _home(tmp_path, f"script-{i}", template.read_bytes())
        return _run(home, ["-c", FLOW_SCRIPT], NBFLOW_FLUSH_INTERVAL="0.001")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(run_once, range(8)))
    aborted = [r for r in results if r.returncode in ABORTED or "terminate called" in r.stderr]
    assert not aborted, f"{len(aborted)} of 8 runs aborted: {aborted[0].stderr[-500:]}"
    for i, result in enumerate(results):
        assert result.returncode == 0, result.stderr[-1000:]
        assert "Traceback" not in result.stderr, result.stderr[-1000:]
        store = str(tmp_path / f"script-{i}" / "nbflow.duckdb")
        assert store in result.stderr and "damaged" in result.stderr, result.stderr[-1000:]


def test_exit_waits_until_the_writer_thread_has_left_the_store(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture) -> None:
    """The invariant behind the test above, without its race: once the exit flush starts, the
    writer thread has stopped, so DuckDB is never running in a daemon thread at finalization."""
    from types import SimpleNamespace

    from nbflow.store.buffer import Recorder

    monkeypatch.setenv("NBFLOW_FLUSH_INTERVAL", "0.001")
    writers: list[str] = []
    exiting = threading.Event()

    def failing_write(batch: object) -> None:
        writers.append(threading.current_thread().name)
        if exiting.is_set() and threading.current_thread().name == "nbflow-writer":
            raise AssertionError("the writer thread wrote after exit began")
        time.sleep(0.01)
        raise StoreCorruptedError("The run store is damaged", path="nbflow.duckdb")

    recorder = Recorder(write=failing_write)
    recorder.log(SimpleNamespace(id="run", log_seq=0), "run", None, 20, "x", "a line", time.time())
    deadline = time.monotonic() + 10
    while "nbflow-writer" not in writers and time.monotonic() < deadline:
        time.sleep(0.005)
    assert "nbflow-writer" in writers, "the writer thread never tried to write"

    exiting.set()
    recorder.at_exit()

    assert recorder._thread is not None and not recorder._thread.is_alive()
    assert writers[-1] != "nbflow-writer"  # the last try was the exit flush, in this thread
    assert "could not save 1 run records before exit" in capsys.readouterr().err


def test_every_command_after_a_failed_write_says_the_store_is_damaged(pristine: Pristine,
                                                                      tmp_path: Path) -> None:
    """Damage in task_runs: `flow-run ls` reads only flow_runs and used to exit 0 with stale rows
    after a flow's write had failed on the damage."""
    home = _home(tmp_path, "home", pristine.main)
    store = home / "nbflow.duckdb"
    con = duckdb.connect(str(store), read_only=True)
    block, offset = con.execute("SELECT block_id, block_offset FROM pragma_storage_info('task_runs') "
                                "WHERE column_name = 'id' AND block_id >= 0 LIMIT 1").fetchone()
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    con.close()
    _damage_at(store, 3 * 4096 + block * block_size + 8 + offset)
    assert _nbflow(home, "flow-run", "ls").returncode == 0  # flow_runs reads: nothing met the damage yet

    script = _run(home, ["-c", FLOW_SCRIPT])
    assert script.returncode == 0 and "Traceback" not in script.stderr, script.stderr
    assert str(store) in script.stderr and "damaged" in script.stderr, script.stderr

    for args in (["flow-run", "ls"], ["flow", "ls"], ["flow-run", "inspect", pristine.run_ids[0]]):
        result = _nbflow(home, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == "", result.stderr
        message = result.stderr.strip()
        assert message.startswith("nbflow: error:") and "\n" not in message, message
        assert str(store) in message and "damaged" in message, message
        assert "nbflow server database repair" in message, message


def test_a_damaged_wal_keeps_the_store_file_and_repair_sets_only_the_wal_aside(
        pristine: Pristine, tmp_path: Path) -> None:
    wal = bytearray(pristine.wal)
    middle = len(wal) // 2
    wal[middle:middle + 16] = bytes(b ^ 0xFF for b in wal[middle:middle + 16])
    home = _home(tmp_path, "home", pristine.wal_main, bytes(wal))
    store, wal_path = home / "nbflow.duckdb", home / "nbflow.duckdb.wal"
    before = _digest(store)

    listed = _nbflow(home, "flow-run", "ls")
    assert listed.returncode == 1, listed.stdout
    message = listed.stderr.strip()
    assert str(wal_path) in message and "write-ahead log" in message and "damaged" in message, message
    assert "do not move or delete it" in message and f"mv {wal_path} " in message, message
    assert f"mv {store} " not in message, message  # never advice that moves the file of every run

    checked = _nbflow(home, "server", "database", "check")
    assert checked.returncode == 1, checked.stdout
    assert "flow_runs" in checked.stdout and str(wal_path) in checked.stderr
    assert "itself is intact" in checked.stderr, checked.stderr
    assert _digest(store) == before and wal_path.read_bytes() == bytes(wal)  # check wrote nothing

    repaired = _nbflow(home, "server", "database", "repair")
    assert repaired.returncode == 0, repaired.stderr
    assert "Kept the run store" in repaired.stdout, repaired.stdout
    assert _digest(store) == before  # the store file stays where it is, untouched
    assert not wal_path.exists()
    aside = list(home.glob(f"nbflow.duckdb{damage.BACKUP_INFIX}*.wal"))
    assert len(aside) == 1 and aside[0].read_bytes() == bytes(wal), aside

    listed = _nbflow(home, "flow-run", "ls", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    assert all(run_id in listed.stdout for run_id in pristine.run_ids)


def _bulk_store(pristine: Pristine, path: Path) -> int:
    """The pristine store plus 3000 flow runs whose long state messages fill several blocks;
    returns how many flow runs it holds."""
    path.write_bytes(pristine.main)
    con = duckdb.connect(str(path))
    try:
        con.execute("INSERT INTO flow_runs SELECT f.* REPLACE (md5(r.i::VARCHAR) AS id, "
                    "repeat(md5((r.i * 7)::VARCHAR), 8) AS state_message) "
                    "FROM (SELECT * FROM flow_runs LIMIT 1) f, range(3000) r(i)")
        return con.execute("SELECT count(*) FROM flow_runs").fetchone()[0]
    finally:
        con.close()


def _message_block(path: Path) -> tuple[int, int]:
    """(file offset, rows) of a block holding only flow_runs.state_message data."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        block, offset, rows = con.execute(
            "SELECT block_id, min(block_offset), sum(count) FROM pragma_storage_info('flow_runs') "
            "WHERE block_id >= 0 GROUP BY block_id "
            "HAVING bool_and(column_name = 'state_message') ORDER BY block_id LIMIT 1 OFFSET 1").fetchone()
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
    finally:
        con.close()
    return 3 * 4096 + block * block_size + 8 + offset + 16, rows


def test_check_and_repair_copy_every_readable_row_and_keep_the_damaged_file(
        pristine: Pristine, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store = home / "nbflow.duckdb"
    total = _bulk_store(pristine, store)
    offset, _ = _message_block(store)
    _damage_at(store, offset, 256)
    damaged = _digest(store)

    met = _nbflow(home, "flow-run", "inspect", pristine.run_ids[0])  # the whole row: meets the damage
    assert met.returncode == 1 and str(store) in met.stderr and "damaged" in met.stderr, met.stderr

    listing = sorted(p.name for p in home.iterdir())
    checked = _nbflow(home, "server", "database", "check")
    assert checked.returncode == 1, (checked.stdout, checked.stderr)
    assert "Traceback" not in checked.stderr
    row = next(line.split() for line in checked.stdout.splitlines() if line.startswith("flow_runs"))
    assert row[1] == str(total) and row[2] == str(total), checked.stdout  # every run, some in part
    assert "without state_message" in checked.stdout, checked.stdout
    assert "nbflow server database repair" in checked.stderr, checked.stderr
    assert _digest(store) == damaged and sorted(p.name for p in home.iterdir()) == listing  # read-only

    repaired = _nbflow(home, "server", "database", "repair")
    assert repaired.returncode == 0, repaired.stderr
    backups = list(home.glob(f"nbflow.duckdb{damage.BACKUP_INFIX}*"))
    assert len(backups) == 1 and _digest(backups[0]) == damaged, backups  # the old file, as it was
    assert not damage.note_path(store).exists()
    assert "Repaired the run store" in repaired.stdout, repaired.stdout

    con = duckdb.connect(str(store), read_only=True)
    try:
        runs, emptied = con.execute("SELECT count(*), count(*) FILTER (WHERE state_message IS NULL "
                                    "AND id NOT IN (SELECT unnest(?))) FROM flow_runs",
                                    [pristine.run_ids]).fetchone()
        task_runs = con.execute("SELECT count(*) FROM task_runs").fetchone()[0]
    finally:
        con.close()
    assert runs == total and 0 < emptied < 3000, (runs, emptied)
    assert task_runs == 18  # 6 runs x 3 tasks: untouched tables come across whole

    assert _nbflow(home, "server", "database", "check").returncode == 0
    listed = _nbflow(home, "flow-run", "ls", "--limit", "3")
    assert listed.returncode == 0 and listed.stdout.count("kept") == 3, listed.stderr
    assert _nbflow(home, "flow-run", "inspect", pristine.run_ids[0]).returncode == 0

    healthy = _digest(store)
    again = _nbflow(home, "server", "database", "repair")
    assert again.returncode == 0 and "healthy" in again.stdout and "untouched" in again.stdout, again.stdout
    assert _digest(store) == healthy and len(list(home.glob("*.damaged-*"))) == 1

    forced = _nbflow(home, "server", "database", "repair", "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(list(home.glob("*.damaged-*"))) == 2
    assert _nbflow(home, "flow-run", "inspect", pristine.run_ids[0]).returncode == 0


def test_repair_on_a_full_disk_changes_nothing(pristine: Pristine, small_disk: Path) -> None:
    home = _home(small_disk, "home", pristine.main)
    store = home / "nbflow.duckdb"
    filler = small_disk / "filler"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"x" * max(free - len(pristine.main) // 3, 0))  # no room for a copy

    repaired = _nbflow(home, "server", "database", "repair", "--force")

    assert repaired.returncode == 1, repaired.stdout
    message = repaired.stderr.strip()
    assert "failed before the new file replaced it" in message and "Nothing was changed" in message, message
    assert "Traceback" not in message and "\n" not in message
    assert store.read_bytes() == pristine.main
    assert sorted(p.name for p in home.iterdir()) == ["nbflow.duckdb"]


@pytest.mark.parametrize("content", [b"", b"PAR1 this is no database\n" * 4000], ids=["empty", "not-duckdb"])
def test_repair_sets_aside_a_file_that_is_no_store_and_starts_a_new_one(content: bytes, tmp_path: Path) -> None:
    home = _home(tmp_path, "home", content)
    checked = _nbflow(home, "server", "database", "check")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    repaired = _nbflow(home, "server", "database", "repair")
    assert repaired.returncode == 0, repaired.stderr
    (backup,) = home.glob("nbflow.duckdb.damaged-*")
    assert backup.read_bytes() == content
    assert _nbflow(home, "server", "database", "check").returncode == 0
    made = _run(home, ["-c", FLOW_SCRIPT])
    assert made.returncode == 0 and "late" in _nbflow(home, "flow-run", "ls").stdout


def test_check_and_repair_refuse_a_store_a_live_server_holds(pristine: Pristine, tmp_path: Path) -> None:
    import secrets

    from live_server import start_server, stop_server

    home = _home(tmp_path, "home", pristine.main)
    server = start_server(home, tmp_path / "server.log", secrets.token_hex(16))
    try:
        checked = _nbflow(home, "server", "database", "check")
        assert checked.returncode == 1 and "holds it" in checked.stderr, checked.stderr
        repaired = _nbflow(home, "server", "database", "repair", "--force")
        assert repaired.returncode == 1, repaired.stdout
        assert f"PID {server.process.pid}" in repaired.stderr and "stop it" in repaired.stderr
        assert not list(home.glob("*.damaged-*"))
    finally:
        stop_server(server)
    listed = _nbflow(home, "flow-run", "ls")
    assert listed.returncode == 0 and all(run_id in listed.stdout for run_id in pristine.run_ids)


def test_a_damaged_file_of_the_user_is_not_taken_for_a_damaged_store(nbflow_home: Path,
                                                                     tmp_path: Path) -> None:
    """nbflow.sql() reading a broken file of the user's raises DuckDB's error and leaves the store usable."""
    made = _run(nbflow_home, ["-c", FLOW_SCRIPT])
    assert made.returncode == 0, made.stderr
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1" + os.urandom(2000) + b"PAR1")
    with pytest.raises(duckdb.Error) as info:
        nbflow.sql(f"SELECT * FROM read_parquet('{broken}')")
    assert not isinstance(info.value, StoreCorruptedError)
    assert not damage.note_path(nbflow_home / "nbflow.duckdb").exists()
    assert len(nbflow.runs()) == 1
