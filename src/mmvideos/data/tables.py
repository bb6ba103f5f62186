"""Parquet tables larger than memory: sorted streams over many files, written in row groups.

The reduces (the gathers, ``merge_labels``) need their rows in id order. Instead of loading and
sorting whole tables, each input file becomes one or more *sorted runs* (a file already in order
is a run as it is; any other is cut into runs of :data:`RUN_ROWS` rows, each sorted and spilled to
a scratch folder), and the runs are merged batch by batch. Peak memory is about one batch per
run, whatever the number of rows.

Built on pyarrow, the project's parquet engine already: the work is a sort and a merge on
string keys, which its compute kernels do column-wise, so no second engine (DuckDB, Polars)
with its own type mapping is needed, and the tables read back with pandas exactly as before.
The order is that of a stable sort of the files' rows concatenated in the given order (pandas'
``sort_values(kind="stable")``): equal keys keep their file, then row order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmvideos.data.atomic import ROW_GROUP_ROWS, atomic_path

#: Rows per batch read and per row group written: the row groups the project's tables are written in.
BATCH_ROWS = ROW_GROUP_ROWS
#: Rows an unsorted file is sorted in at once (a run): bounds the sort's memory.
RUN_ROWS = 131_072


def read_batches(path: str | Path, batch_rows: int = BATCH_ROWS,
                 columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A Parquet file's rows in batches of at most ``batch_rows`` (none spans two row groups), read one
    row group at a time.

    Not ``ParquetFile.iter_batches`` over the whole file: its reader reads ahead across row groups and
    its peak memory grows with the file (255 -> 317 MB iterating a 160 k- and a 640 k-row label table,
    measured), where a reader per row group stays flat (175 -> 177 MB).
    """
    file = pq.ParquetFile(path)
    for group in range(file.num_row_groups):
        yield from file.iter_batches(batch_rows, row_groups=[group], columns=list(columns) if columns else None)


def count_rows(path: str | Path) -> int:
    """Rows of a parquet file, from its footer."""
    return pq.ParquetFile(path).metadata.num_rows


def _keys(table: pa.Table | pa.RecordBatch, by: Sequence[str], row: int) -> tuple:
    return tuple(table.column(c)[row].as_py() for c in by)


def _is_sorted(path: str | Path, by: Sequence[str]) -> bool:
    """Whether a file's rows are in ``by`` order (reads only the key columns)."""
    last = None
    for batch in read_batches(path, columns=by):
        if not batch.num_rows:
            continue
        table = pa.Table.from_batches([batch])
        if last is not None and _keys(table, by, 0) < last:
            return False
        if not table.equals(table.take(pc.sort_indices(table, sort_keys=[(c, "ascending") for c in by]))):
            return False
        last = _keys(table, by, table.num_rows - 1)
    return True


def sorted_runs(paths: Iterable[str | Path], by: Sequence[str], scratch: str | Path,
                run_rows: int = RUN_ROWS) -> list[Path]:
    """The sorted runs of ``paths`` (module docstring), in file order; spilled runs go to ``scratch``."""
    runs: list[Path] = []
    for number, path in enumerate(paths):
        if _is_sorted(path, by):
            runs.append(Path(path))
            continue
        for part, batch in enumerate(pq.ParquetFile(path).iter_batches(run_rows)):
            run = Path(scratch) / f"run-{number:05d}-{part:05d}.parquet"
            table = pa.Table.from_batches([batch])
            pq.write_table(table.sort_by([(c, "ascending") for c in by]), run, row_group_size=BATCH_ROWS)
            runs.append(run)
    return runs


def _less_than(table: pa.Table, by: Sequence[str], bound: tuple) -> pa.ChunkedArray:
    """Rows whose ``by`` keys come strictly before ``bound`` (lexicographic over the columns)."""
    less, equal = None, None
    for column, value in zip(by, bound):
        lt, eq = pc.less(table[column], value), pc.equal(table[column], value)
        less = lt if less is None else pc.or_(less, pc.and_(equal, lt))
        equal = eq if equal is None else pc.and_(equal, eq)
    return less


def merge_runs(runs: Sequence[str | Path], by: Sequence[str], schema: pa.Schema,
               columns: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS) -> Iterator[pa.Table]:
    """The rows of sorted ``runs`` merged into ``by`` order, as tables of at most a few batches.

    Each run holds a buffer of its next rows. Rows before the smallest last key over the buffers
    of unfinished runs can no longer be preceded by anything unread, so they are emitted; runs
    whose buffer is left with only that key read their next batch. Columns are cast to
    ``schema``, so a run whose list column came out as nulls (all lists empty) joins the rest.
    With no ``by`` the runs come one after another.
    """
    readers = [read_batches(r, batch_rows, columns) for r in runs]
    if not by:
        for reader in readers:
            yield from (pa.Table.from_batches([b]).cast(schema) for b in reader if b.num_rows)
        return
    order = [(c, "ascending") for c in by]
    buffers = [schema.empty_table() for _ in runs]
    done = [False] * len(runs)

    def refill(i: int) -> None:
        for batch in readers[i]:
            if batch.num_rows:
                buffers[i] = pa.concat_tables([buffers[i], pa.Table.from_batches([batch]).cast(schema)])
                return
        done[i] = True

    for i in range(len(runs)):
        refill(i)
    while not all(done):
        open_runs = [i for i in range(len(runs)) if not done[i]]
        bound = min(_keys(buffers[i], by, buffers[i].num_rows - 1) for i in open_runs)
        masks = [_less_than(b, by, bound) for b in buffers]
        ready = pa.concat_tables([b.filter(m) for b, m in zip(buffers, masks)])
        buffers = [b.filter(pc.invert(m)) for b, m in zip(buffers, masks)]
        if ready.num_rows:  # a stable sort: equal keys keep their run order, and runs are in file order
            yield ready.take(pc.sort_indices(ready, sort_keys=order))
        for i in open_runs:
            if buffers[i].num_rows == 0 or _keys(buffers[i], by, buffers[i].num_rows - 1) == bound:
                refill(i)
    rest = pa.concat_tables(buffers)
    if rest.num_rows:
        yield rest.take(pc.sort_indices(rest, sort_keys=order))


def sorted_tables(paths: Sequence[str | Path], by: Sequence[str], scratch: str | Path,
                  columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """The rows of all ``paths`` in stable ``by`` order, streamed (module docstring)."""
    yield from merge_runs(sorted_runs(paths, by, scratch), by, table_schema(paths, columns), columns)


def table_schema(paths: Sequence[str | Path], columns: Sequence[str] | None = None) -> pa.Schema:
    """The schema of the first of ``paths`` that has rows (else the first), without pandas' metadata."""
    first = next((p for p in paths if count_rows(p)), paths[0])
    schema = pq.read_schema(first).remove_metadata()
    return pa.schema([schema.field(c) for c in columns]) if columns else schema


def write_tables(tables: Iterable[pa.Table], target: str | Path, schema: pa.Schema) -> int:
    """Write ``tables`` to one parquet file in row groups of :data:`BATCH_ROWS`, atomically; returns rows."""
    rows = 0
    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for table in tables:
            writer.write_table(table.cast(schema), row_group_size=BATCH_ROWS)
            rows += table.num_rows
    return rows
