"""Mutation checks: break a guard on purpose and watch the tests that claim it fail.

The README and the issues say things like "removing the filter makes this test fail".
This tool makes such claims reproducible. Each mutation names one guard: a file, an exact
text in it, its replacement (the guard broken), and the test node ids that must fail
with it. For each mutation the tool copies the tracked files of the tree (their working
copies, so uncommitted edits count) to a temporary directory, applies the mutation there
(never in the working tree), runs the named tests there against the copy's code, and
reports:

  PASS   every named test failed: the guard is checked
  FAIL   some named test still passed: the mutation survived (the test does not check
         the guard, or the guard is not needed)
  ERROR  the text to replace is not in the file exactly once (the code moved: update
         the list), pytest could not run the tests, or they errored in set-up
         (a fixture, not the test, failed: that proves nothing)
  SKIP   the named tests were skipped (a flavor-only test on the other flavor)

The exit status is 1 if any mutation survived or errored, else 0. A developer tool, not
part of scripts/test: each mutation runs integration tests (minutes for the whole list).

    scripts/mutations                       # every mutation
    scripts/mutations --list                # names, guards and tests
    scripts/mutations watermark-filter runner-lock
    scripts/mutations --baseline            # first check the tests pass unmutated
    ONLINEDDL_TEST_DSN=mysql://root:onlineddl@127.0.0.1:13306 scripts/mutations

Server: as for the suite (ONLINEDDL_TEST_DSN, else a throwaway local server per run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IT = "tests/integration/"


@dataclass(frozen=True)
class Mutation:
    name: str
    guard: str          # what the original text guarantees
    file: str           # relative to the repository root
    old: str            # exact text, present once in `file`
    new: str
    tests: tuple[str, ...]  # node ids (a file, a test, or a test with its parameters)


MUTATIONS = [
    Mutation("watermark-filter",
             "a change is flushed only once its key is at or below the copier's watermark",
             "onlineddl/applier.py",
             "        ready = [item for item, ok in zip(snapshot, below, strict=True) if ok]\n",
             "        ready = list(snapshot)\n",
             (IT + "test_watermark_race.py::test_delete_during_a_chunk_read_is_not_lost",)),
    Mutation("no-watermark-yet",
             "before the first chunk completes, no key counts as copied",
             "onlineddl/chunker.py",
             "        if wm.bound is None:\n            return [False] * len(keys)\n",
             "        if wm.bound is None:\n            return [True] * len(keys)\n",
             (IT + "test_watermark_race.py::test_delete_during_a_chunk_read_is_not_lost",)),
    Mutation("deletes-as-upserts",
             "a key whose latest change is a delete is deleted from the shadow",
             "onlineddl/applier.py",
             "            keys = [k for k, latest in batch if latest & UPSERT]\n"
             "            gone = [k for k, latest in batch if latest & GONE]\n",
             "            keys = [k for k, _ in batch]\n"
             "            gone: list[Key] = []\n",
             (IT + "test_watermark_race.py::test_delete_during_a_chunk_read_is_not_lost",
              IT + "test_migrate_concurrent.py")),
    Mutation("moves-as-updates",
             "an update that changes the primary key is both a delete and an insert",
             "onlineddl/binlog/wire.py",
             "        if etype in UPDATES:\n            return Keys(keys, MOVED if moved else "
             "UPSERT)\n",
             "        if etype in UPDATES:\n            return Keys(keys, UPSERT)\n",
             (IT + "test_migrate_concurrent.py", IT + "test_migrate_schemas.py",
              IT + "test_types.py")),
    Mutation("library-reader-moves",
             "the library's reader (tables the wire reader cannot decode) flags key moves",
             "onlineddl/binlog/reader.py",
             "            return Keys(tuple(keys), MOVED if moved else UPSERT)\n",
             "            return Keys(tuple(keys), UPSERT)\n",
             (IT + "test_binlog_keys.py::test_wire_reader_kinds_tell_the_flush_what_each_"
                   "change_did",)),
    Mutation("locking-read",
             "a flush re-reads source rows with a locking read, which waits for a writer "
             "whose binlog event arrived before its commit became visible",
             "onlineddl/sql.py",
             '            f"WHERE {where} LOCK IN SHARE MODE")\n\n\ndef insert_keys(',
             '            f"WHERE {where}")\n\n\ndef insert_keys(',
             (IT + "test_watermark_race.py::test_a_flush_waits_for_a_change_not_yet_committed",
              )),
    Mutation("replace-missing",
             "the in-place flush also writes the rows the shadow lacks",
             "onlineddl/applier.py",
             "            if rows_matched(info) < len(keys):\n"
             "                session.execute(*sql.replace_missing(*args, src_pk, t.pk, keys))\n",
             "            pass\n",
             (IT + "test_migrate_concurrent.py",)),
    Mutation("unique-guard",
             "with a UNIQUE key the source does not enforce, rows are written without "
             "REPLACE (which would delete a row that really holds the value)",
             "onlineddl/applier.py",
             "        elif keys and t.guarded:\n            write_guarded(session, t, keys)\n",
             "        elif False:\n            pass\n",
             (IT + "test_unique_violations.py::test_duplicate_inserted_into_the_copied_part",
              IT + "test_unique_violations.py::test_two_new_rows_with_one_value_in_one_"
                   "transaction")),
    Mutation("processlist-watch",
             "DDL queued on T under the cutover lock calls the swap off",
             "onlineddl/othersessions.py",
             "        for conn_id, user, host, db, secs, state, info in rows:\n",
             "        for conn_id, user, host, db, secs, state, info in rows[:0]:\n",
             (IT + "test_cutover_sessions.py::test_foreign_ddl_queued_under_the_cutover_lock_"
                   "stops_the_run_on_t",)),
    Mutation("auto-increment-carry",
             "the AUTO_INCREMENT counter is carried to the new table just before the swap",
             "onlineddl/cutover.py",
             "        self.before_swap(drain_via or self.control)\n",
             "",
             (IT + "test_counters_engines.py::test_counter_moved_during_the_copy_and_just_"
                   "before_the_block",)),
    Mutation("engine-refusal",
             "an ALTER that makes the table non-InnoDB is refused up front",
             "onlineddl/migration.py",
             '        if shadow.engine.lower() != "innodb":\n',
             "        if False:\n",
             (IT + "test_counters_engines.py::test_a_non_innodb_target_is_refused_up_front",)),
    Mutation("runner-lock",
             "one runner per table (GET_LOCK)",
             "onlineddl/runlock.py",
             "        if got == 1:\n",
             "        if True:\n",
             (IT + "test_runners.py::test_side_connection_holding_the_lock_blocks_runners",
              IT + "test_runners.py::test_wait_for_lock_gives_up_with_the_holder_named")),
    Mutation("executable-comments",
             "a statement inside an executable comment /*! ... */ counts as run",
             "onlineddl/statement/binlog_sql.py",
             '            for mark in ("!", "M!"):\n',
             "            for mark in ():\n",
             (IT + "test_foreign_statements.py::test_a_change_after_the_checksum_stops_before_"
                   "the_cutover[executable-comment-truncate]",)),
    Mutation("copy-time-zone",
             "copy and flush sessions convert times in the server's global zone, as ALTER",
             "onlineddl/db.py",
             '            self.execute("SET SESSION time_zone = @@GLOBAL.time_zone")\n',
             '            self.execute("SET SESSION time_zone = \'+00:00\'")\n',
             (IT + "test_conversions.py::test_time_zone_conversions_match_alter",)),
    Mutation("idle-limit",
             "a lock-holding session is dropped by the server once the tool stops talking",
             "onlineddl/db.py",
             "        if self._idle_limit is None:\n            return\n",
             "        if True:\n            return\n",
             (IT + "test_cutover_sessions.py::test_a_frozen_tool_releases_the_table_and_the_"
                   "runner_lock",)),
    Mutation("drain-kill-query",
             "a drain round stuck on a row lock is stopped (KILL QUERY) at its deadline",
             "onlineddl/applier.py",
             '                    killer.execute(f"KILL QUERY {int(thread_id)}")\n',
             "                    pass\n",
             (IT + "test_cutover_sessions.py::test_a_drain_round_stuck_on_a_row_lock_releases_"
                   "the_block_within_its_bound",)),
    Mutation("revert-keeps-unfed",
             "a revert's flush keeps the values of columns the new table does not have",
             "onlineddl/applier.py",
             "        elif keys and t.keep_unfed:\n",
             "        elif False:\n",
             (IT + "test_revert.py::test_flush_keeps_columns_the_source_does_not_feed",
              IT + "test_revert.py::test_a_text_key_keeps_dropped_values_through_the_upsert")),
    Mutation("revert-fit-probe",
             "a revert is refused when current values do not fit the old column types",
             "onlineddl/revertplan.py",
             "    if not narrowed:\n        return\n",
             "    if True:\n        return\n",
             (IT + "test_revert.py::test_refused_when_current_values_do_not_fit_the_old_type",)),
    Mutation("revert-unfed-unique",
             "a revert that would keep dropped columns under another UNIQUE key is refused",
             "onlineddl/revertplan.py",
             "    if others:\n",
             "    if False:\n",
             (IT + "test_revert.py::test_refused_for_a_dropped_column_under_another_unique_"
                   "key",)),
    Mutation("checkpoint-kind",
             "migrate --resume never takes a revert's checkpoint",
             "onlineddl/resume.py",
             "    if state.kind != config.kind:\n",
             "    if False:\n",
             (IT + "test_revert.py::test_refused_while_another_runner_or_a_migration_holds_"
                   "the_table",)),
    Mutation("fault-registry",
             "a misspelt fault point is refused",
             "onlineddl/faults.py",
             "def point(name: str) -> None:\n    if name not in POINTS:\n",
             "def point(name: str) -> None:\n    if False:\n",
             ("tests/unit/test_faults.py::test_unknown_names_are_refused_in_process",)),
    Mutation("new-primary-key-checked",
             "a new primary key that is not the run's key is checked like a new UNIQUE key",
             "onlineddl/uniques.py",
             "                if k.name != shadow.key_name]\n",
             '                if k.name != "PRIMARY"]\n',
             (IT + "test_primary_key_change.py::test_data_the_new_primary_key_cannot_hold"
                   "[duplicates]",)),
    Mutation("resume-trims-by-run-key",
             "--resume trims the shadow above the watermark by the run's key",
             "onlineddl/resume.py",
             "    text, params = sql.delete_above(database, names.shadow, walked, "
             "state.low_watermark)\n",
             "    text, params = sql.delete_above(database, names.shadow, "
             "load_table(session, database, names.shadow).pk, state.low_watermark)\n",
             (IT + "test_primary_key_change.py::test_resume_trims_the_shadow_by_the_run_key",)),
    Mutation("revert-relations",
             "revert refuses T with triggers or foreign keys the old table lacks",
             "onlineddl/revert.py",
             "        revertplan.check_relations(control, self.db, self.config.table)\n",
             "        pass\n",
             (IT + "test_revert.py::test_refused_while_t_has_triggers_or_foreign_keys",)),
    Mutation("revert-walks-shared-key",
             "revert walks the key T and the old table share (a PK change reverted)",
             "onlineddl/revert.py",
             "        source, target = keys.choose(control, source, target, mapping)\n",
             "        pass\n",
             (IT + "test_revert.py::test_revert_of_a_primary_key_change",)),
    Mutation("gone-stays-until-flush",
             "a key deleted and re-inserted before its flush is a new row for a revert",
             "onlineddl/applier.py",
             "self._keys[key] = self._seq | event.kind | (before & GONE)\n",
             "self._keys[key] = self._seq | event.kind\n",
             (IT + "test_revert.py::test_revert_brings_back_the_old_schema_with_every_write",
              "tests/unit/test_pieces.py::"
              "test_delta_map_keeps_the_operation_of_each_keys_latest_change")),
    Mutation("key-values-kept",
             "the run walks only a key whose values the ALTER keeps",
             "onlineddl/keys.py",
             "    kept = [(old, new) for old, new in pairs if not value_change(source, shadow, "
             "old, new)]\n",
             "    kept = pairs\n",
             (IT + "test_key_conversions.py::test_another_shared_key_is_walked_when_the_"
                   "primary_key_changes_values",)),
    Mutation("revert-hidden-ddl",
             "a revert stops before its swap when T changed in no binlog it reads",
             "onlineddl/revert.py",
             "        shadowcheck.check_source(session, self.db, ctx.source)",
             "        pass",
             (IT + "test_other_sessions.py::test_ddl_hidden_from_the_binlog_stops_a_revert",)),
    Mutation("own-foreign-keys-unchanged",
             "T's own foreign keys are checked again under the write block",
             "onlineddl/migration.py",
             "        foreignkeys.check_unchanged(session, self.db, self.config.table, "
             "self.foreign_keys,\n",
             "        (lambda *a: None)(session, self.db, self.config.table, "
             "self.foreign_keys,\n",
             (IT + "test_foreign_keys.py::test_a_parent_changed_during_the_run_stops_it"
                   "[rename-parent]",)),
    Mutation("image-without-key",
             "a row image without the walked key stops the run",
             "onlineddl/binlog/items.py",
             "        if ABSENT in first:\n",
             "        if False:\n",
             (IT + "test_other_sessions.py::test_a_minimal_image_without_the_walked_unique_"
                   "key_stops_the_run",)),
    Mutation("unfed-rows-whole",
             "rows with columns the source does not feed are re-written whole",
             "onlineddl/applier.py",
             "not self.other_unique and not self.unfed and",
             "not self.other_unique and",
             (IT + "test_parity_more.py::test_parity_more_under_writes"
                   "[default_expr_from_columns]",)),
]


@dataclass(frozen=True)
class Outcome:
    verdict: str    # PASS, FAIL, ERROR or SKIP
    detail: str
    seconds: float


def copy_tree(dest: Path) -> None:
    """The tracked files, as they are in the working tree (deleted ones left out)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def apply(tree: Path, m: Mutation) -> str | None:
    """Apply `m` in `tree`; an error message when its text is not there exactly once."""
    path = tree / m.file
    text = path.read_text()
    found = text.count(m.old)
    if found != 1:
        return f"{m.file}: the text to replace occurs {found} times (expected once)"
    path.write_text(text.replace(m.old, m.new))
    return None


def imports_from(tree: Path) -> str | None:
    """An error when Python in `tree` would import onlineddl from elsewhere (an installed
    copy): the mutation would then not be what runs."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    found = subprocess.run([sys.executable, "-c", "import onlineddl; print(onlineddl.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        return f"onlineddl is imported from {found or '(nowhere)'}, not from the copy"
    return None


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float
              ) -> tuple[dict[str, str], str, bool]:
    """Each collected test's result, pytest's output tail, and whether the run timed out
    (a hang is not a pass). "failed": the test itself failed; "errored": its set-up or
    tear-down did (a server that did not start, say), which proves nothing about the
    mutation; "passed"; "skipped"."""
    report = tree / "mutation-report.xml"
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:warnings", "-p",
            "no:cacheprovider", f"--junitxml={report}", *tests]
    try:
        done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {}, "", True
    tail = (done.stdout + done.stderr)[-1500:]
    if not report.exists():
        return {}, tail, False
    results: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            results[node] = "failed"
        elif "error" in kinds:
            results.setdefault(node, "errored")
        elif "skipped" in kinds:
            results.setdefault(node, "skipped")
        else:
            results.setdefault(node, "passed")
    return results, tail, False


def matches(node: str, wanted: str) -> bool:
    """Is `node` the test `wanted` names (a directory, a file, a test, a parameter set)?"""
    return node == wanted or node.startswith(
        (wanted + "[", wanted + "::", wanted.rstrip("/") + "/"))


def judge(m: Mutation, results: dict[str, str], tail: str, timed_out: bool) -> tuple[str, str]:
    if timed_out:
        return "PASS", "the tests hung (timed out): not a pass"
    if not results:
        return "ERROR", "pytest collected nothing:\n" + tail
    verdicts = []
    for wanted in m.tests:
        mine = [r for node, r in results.items() if matches(node, wanted)]
        if not mine:
            return "ERROR", f"no test matches {wanted}:\n{tail}"
        if "failed" in mine:
            verdicts.append("failed")
        elif "errored" in mine and "passed" not in mine:
            return "ERROR", f"{wanted} errored in set-up or tear-down:\n{tail}"
        elif all(r == "skipped" for r in mine):
            verdicts.append("skipped")
        else:
            verdicts.append(f"survived: {wanted}")
    if all(v == "failed" for v in verdicts):
        failed = sum(r == "failed" for r in results.values())
        return "PASS", f"{failed} of {len(results)} tests failed"
    survivors = [v for v in verdicts if v.startswith("survived")]
    if survivors:
        return "FAIL", "; ".join(survivors)
    return "SKIP", "the named tests were skipped on this server"


def check(m: Mutation, timeout: float, baseline: bool) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="onlineddl-mutation-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        if baseline:
            results, tail, timed_out = run_tests(tree, m.tests, timeout)
            bad = [n for n, r in results.items() if r in ("failed", "errored")]
            if timed_out or bad or not results:
                return Outcome("ERROR", "unmutated, the tests do not pass: "
                               + (", ".join(bad) or tail or "timed out"),
                               time.monotonic() - started)
        error = apply(tree, m) or imports_from(tree)
        if error is not None:
            return Outcome("ERROR", error, time.monotonic() - started)
        verdict, detail = judge(m, *run_tests(tree, m.tests, timeout))
        return Outcome(verdict, detail, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to check (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    parser.add_argument("--baseline", action="store_true",
                        help="first run each mutation's tests unmutated (they must pass)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds per pytest run (default 900)")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown mutation(s) {', '.join(unknown)}; see --list")
    chosen = [known[n] for n in args.names] if args.names else MUTATIONS
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.guard}\n    {m.file}\n    " + "\n    ".join(m.tests))
        return 0
    outcomes: list[tuple[Mutation, Outcome]] = []
    for m in chosen:
        outcome = check(m, args.timeout, args.baseline)
        outcomes.append((m, outcome))
        print(f"{outcome.verdict:5} {m.name} ({outcome.seconds:.0f}s): {outcome.detail}",
              flush=True)
    counts = {v: sum(o.verdict == v for _, o in outcomes)
              for v in ("PASS", "FAIL", "ERROR", "SKIP")}
    print(" ".join(f"{v} {n}" for v, n in counts.items()))
    return 1 if counts["FAIL"] or counts["ERROR"] else 0


if __name__ == "__main__":
    sys.exit(main())
