"""The validation gate: Great Expectations 1.x over one interval's raw partition.

The expectation suite is built from the dataset's ``TableSpec``: schema
(exact column set), nulls (also conditional ones), ranges, identifier rules,
allowed categories, key uniqueness and each row's timestamp in the interval.
Column types need no expectation: extraction writes each column in the Arrow type
its source declares, and the gate reads those from the partition's schema
(``declared_type_problems``) before the suite runs. Every row ends in exactly one place:

* ``validated/<table>/<interval>.parquet`` -- rows that broke nothing;
* ``quarantine/<table>/<interval>.parquet`` -- every other row, with the names
  of the expectations it broke in ``quarantine_reasons``.

Exact copies of an earlier row of the interval (a redelivery) are quarantined
as ``duplicate_row``; distinct rows that share a key break
``expect_column_values_to_be_unique`` together, since neither can be trusted.

The gate fails the run -- after writing the quarantine, the report and the
Data Docs, so the evidence is there to look at -- when the schema changed
(missing, unexpected or retyped columns) or when the share of bad rows passes
the threshold. Then the whole interval goes to quarantine and no validated
partition exists for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ctpipe import artifacts
from ctpipe.datasets.spec import ColumnType, Identifier, TableSpec
from ctpipe.ingest import UNPARSEABLE_TIMESTAMP
from ctpipe.key_index import BATCH, DUPLICATE_ROW, KeyIndex, check_rows, entries
from ctpipe.lake import QUARANTINE_REASONS, SOURCE_VALUES, Lake, temporary_name, write_json
from ctpipe.records import Extraction, Interval, ValidationOutcome
from ctpipe.settings import DEFAULT_GATE_CHUNK_ROWS, Settings

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

DATASOURCE = "lake"
TYPE_MISMATCH = "type_mismatch"
# Every failing row's index (to quarantine it with its reasons), but none of the values:
# the quarantine partition holds those, and a 10 MB value must not make a 10 MB report
# or Data Docs page. Reports show counts and the first row indices. No pandas query
# string listing every failing index again: nothing reads it.
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "exclude_unexpected_values": True,
    "partial_unexpected_count": 20,
    "return_unexpected_index_query": False,
}
# The key, in the stored suite's meta, of what the registered gate was built from.
FINGERPRINT = "ctpipe_gate_fingerprint"
SCHEMA_EXPECTATION = "expect_table_columns_to_match_set"
UNIQUE = "expect_column_values_to_be_unique"


log = logging.getLogger(__name__)


class ValidationGateError(RuntimeError):
    """The interval may not pass: too many bad rows, or the schema changed. ``outcome`` is what its report says."""

    def __init__(self, message: str, outcome: ValidationOutcome | None = None):
        super().__init__(message)
        self.outcome = outcome


# The suite's one run-time parameter: the interval the partition holds. Each row's own
# timestamp must lie in it, a second line of defence behind the extraction's query.
INTERVAL_START, INTERVAL_END = "interval_start", "interval_end"
OUTSIDE_INTERVAL = "outside_interval"


def interval_parameters(interval: Interval) -> dict[str, str]:
    return {INTERVAL_START: interval.start.isoformat(), INTERVAL_END: interval.end.isoformat()}


def expectation_name(config: Any) -> str:
    """A row's quarantine reason: the expectation type, its column, and its condition if any."""
    column = config.kwargs.get("column")
    if reason := (config.meta or {}).get("quarantine_reason"):  # a check named for what it means
        return f"{reason}({column})"
    name = f"{config.type}({column})" if column else config.type
    condition = config.kwargs.get("row_condition")
    if isinstance(condition, dict):  # GX stores a pandas condition as a pass-through filter
        condition = condition.get("pass_through_filter", condition)
    return f"{name} where {condition}" if condition else name


# Whitespace at either end of a value; an identifier may not have it.
EDGE_WHITESPACE = r"^\s|\s$"


def identifier_expectations(column: str, rule: Identifier) -> list[Any]:
    import great_expectations.expectations as gxe

    found: list[Any] = [
        gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=1, max_value=rule.max_length),
        gxe.ExpectColumnValuesToNotMatchRegex(column=column, regex=EDGE_WHITESPACE),
    ]
    if rule.pattern:
        found.append(gxe.ExpectColumnValuesToMatchRegex(column=column, regex=rule.pattern))
    return found


def build_suite(spec: TableSpec) -> gx.ExpectationSuite:
    import great_expectations as gx
    import great_expectations.expectations as gxe

    expectations: list[Any] = [gxe.ExpectTableColumnsToMatchSet(column_set=spec.column_names, exact_match=True)]
    for column in spec.columns:
        if not column.nullable:
            expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column.name))
        if column.required_when:
            expectations.append(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=column.name, row_condition=column.required_when, condition_parser="pandas"
                )
            )
        if column.min_value is not None or column.max_value is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=column.name, min_value=column.min_value, max_value=column.max_value
                )
            )
        if column.identifier is not None:
            expectations += identifier_expectations(column.name, column.identifier)
        if column.allowed_values is not None:
            expectations.append(
                gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=list(column.allowed_values))
            )
    expectations.append(gxe.ExpectColumnValuesToBeUnique(column=spec.key))
    expectations.append(
        gxe.ExpectColumnValuesToBeBetween(
            column=spec.timestamp,
            min_value={"$PARAMETER": INTERVAL_START},
            max_value={"$PARAMETER": INTERVAL_END},
            strict_max=True,  # [start, end): a row stamped at the end belongs to the next interval
            meta={"quarantine_reason": OUTSIDE_INTERVAL},
        )
    )
    return gx.ExpectationSuite(name=f"{spec.name}_suite", expectations=expectations)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Tasks of one run may validate two tables at once; GX file stores are not made for that.
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def gate_fingerprint(suite: gx.ExpectationSuite) -> str:
    """What the registered gate must match: the suite's expectations and how the checkpoint reports."""
    expectations = [e.configuration.to_json_dict() for e in suite.expectations]
    for expectation in expectations:
        expectation.pop("id", None)
    # No actions: the Data Docs are built by ``build_data_docs``, once for every interval a task validated.
    payload = {"expectations": expectations, "result_format": RESULT_FORMAT, "actions": []}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _checkpoint(context: Any, spec: TableSpec) -> Any:
    """The table's checkpoint: registered once, and again only when the code's suite or reporting changed.

    Registering the datasource, suite, validation definition and checkpoint costs more than
    validating a day's rows; the stored suite carries a fingerprint of what it was built from.
    """
    import great_expectations as gx
    from great_expectations.exceptions import DataContextError

    wanted = build_suite(spec)
    fingerprint = gate_fingerprint(wanted)
    name = f"{spec.name}_gate"
    try:
        if context.suites.get(wanted.name).meta.get(FINGERPRINT) == fingerprint:
            return context.checkpoints.get(name)
    except (DataContextError, LookupError, ValueError):  # ValueError: GX's pydantic errors for a broken reference
        pass  # not registered yet, or only in part: register it all
    try:
        # One datasource holds every table's asset: replacing it would drop the other tables'.
        datasource = context.data_sources.get(DATASOURCE)
    except KeyError:
        datasource = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = datasource.get_asset(spec.name)
    except LookupError:
        asset = datasource.add_dataframe_asset(spec.name)
    try:
        batch = asset.get_batch_definition("interval")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("interval")
    wanted.meta[FINGERPRINT] = fingerprint
    suite = context.suites.add_or_update(wanted)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{spec.name}_interval", data=batch, suite=suite)
    )
    return context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[],
            result_format=RESULT_FORMAT,
        )
    )


def gx_context(gx_dir: Path) -> Any:
    """The gate's GX project, created on first use and kept set up for the gate.

    Besides the Data Docs site (``ctpipe.data_docs``): no progress bars in task logs, and
    no config-variables file. GX reads that file again on every access to a project
    variable, some 70 times a validation; the gate's project keeps no secrets in it, and
    environment variables still substitute.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from ctpipe.data_docs import configure_site

    context = gx.get_context(mode="file", project_root_dir=str(gx_dir))
    changed = False
    progress_bars = context.variables.progress_bars
    if not progress_bars or dict(progress_bars).get("globally") is not False:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        changed = True
    if context.variables.config_variables_file_path is not None:
        context.variables.config_variables_file_path = None
        changed = True
    sites = context.variables.data_docs_sites or {}
    for site in sites.values():
        changed |= configure_site(site, Path(context.root_directory))
    if changed:
        context.variables.data_docs_sites = sites
        context.variables.save()
    return context


class GxSuite:
    """The table's GX checkpoint, run on the interval's rows one chunk at a time, reported as one run.

    Each chunk's results are merged into the interval's (``merge_results``): counts add up,
    row indices are positions in the partition. With more than one chunk, the merged result
    replaces what the checkpoint stored, so the interval has one validation result and one
    Data Docs page however many chunks it took.

    What the suite found is kept in ``record`` (``SuiteRecord``): validating the same raw
    partition again with the same suite -- a labels task revisits the intervals that hold rows
    back, every day -- takes the suite's verdicts and the run's page from there, and only the
    checks that can change (the index of validated keys) run again.
    """

    def __init__(self, spec: TableSpec, interval: Interval, gx_dir: Path, record: SuiteRecord):
        self.spec, self.interval, self.gx_dir, self.record = spec, interval, gx_dir, record
        self.context: Any = None
        self.checkpoint: Any = None
        self.parts: list[Any] = []
        self.identifier: Any = None
        self.found: dict[Any, list[str]] = {}
        self.problems: list[str] = []
        self.recorded: dict[str, Any] | None = None

    def check(self, rows: pd.DataFrame, by_row: bool = True) -> tuple[list[str], dict[Any, list[str]]]:
        """Schema problems, and (``by_row``, and no problem) row index -> the expectations that row broke,
        for one chunk's rows."""
        from great_expectations.core.run_identifier import RunIdentifier

        if not self.parts and self.recorded is None:
            self.recorded = self.record.read(self.fingerprint)
        if self.recorded is not None:
            problems, found = self.recorded["problems"], self.recorded["reasons"]
            return problems, ({i: found[i] for i in rows.index if i in found} if by_row and not problems else {})
        with _locked(self.gx_dir):
            if self.context is None:  # opened, and the checkpoint looked up, once for all the chunks
                self.context = gx_context(self.gx_dir)
                self.checkpoint = _checkpoint(self.context, self.spec)
            result = self.checkpoint.run(
                batch_parameters={"dataframe": rows},
                expectation_parameters=interval_parameters(self.interval),
                run_id=RunIdentifier(run_name=f"{self.spec.name}_{self.interval.key}", run_time=self.interval.end),
            )
        (identifier, validation), *_ = result.run_results.items()
        if self.identifier is not None and identifier != self.identifier:
            raise RuntimeError(f"the chunks of {self.spec.name} {self.interval} were stored apart: {identifier}")
        self.identifier = identifier
        self.parts.append(validation)
        results = list(validation.results)
        problems = schema_problems(results)
        self.problems += problems
        found = row_reasons(results) if by_row and not problems else {}
        self.found |= found
        return problems, found

    @cached_property
    def fingerprint(self) -> str:
        return gate_fingerprint(build_suite(self.spec))

    def add(self, expectation_type: str, indices: list[Any]) -> None:
        """Rows that broke ``expectation_type`` across chunks, which no single chunk could see."""
        if indices and self.parts:
            self.parts.append(_extra_failures(self.parts[0], expectation_type, indices))

    def finish(self, docs: list[Any] | None) -> str | None:
        """Store the interval's merged result and build its page (or add it to ``docs``); its URL."""
        from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

        if self.recorded is not None:
            return self.recorded["data_docs"]
        if not self.parts:
            return None
        with _locked(self.gx_dir):
            if len(self.parts) > 1:
                self.context.validation_results_store.set(self.identifier, merge_results(self.parts))
            pages = [self.identifier, ExpectationSuiteIdentifier(name=self.parts[0].suite_name)]
            urls = self.context.get_docs_sites_urls(resource_identifier=self.identifier, only_if_exists=False)
            if docs is None:
                _build_pages(self.context, pages)
        if docs is not None:
            docs.extend(pages)
        url = urls[0]["site_url"] if urls else None
        self.record.write(self.fingerprint, self.problems, self.found, url)
        return url


@dataclass(frozen=True)
class SuiteRecord:
    """What the suite found on one raw partition, beside the lake's manifests: its schema problems,
    each failing row's expectations, the run's Data Docs page. Valid while the partition (its
    mtime and size), the chunk size and the suite's fingerprint are the ones it was made with."""

    path: Path
    raw: RawPartition

    def _made_with(self, fingerprint: str) -> dict[str, Any]:
        stat = self.raw.uri.stat()
        return {"raw": [stat.st_mtime_ns, stat.st_size], "chunk_rows": self.raw.chunk_rows, "suite": fingerprint}

    def read(self, fingerprint: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if record.get("made_with") != self._made_with(fingerprint):
            return None
        return {**record, "reasons": {int(i): names for i, names in record["reasons"].items()}}

    def write(
        self, fingerprint: str, problems: list[str], reasons: dict[Any, list[str]], data_docs: str | None
    ) -> None:
        made_with = self._made_with(fingerprint)
        found = {str(i): names for i, names in reasons.items()}
        write_json(self.path, {"made_with": made_with, "problems": problems, "reasons": found, "data_docs": data_docs})


# A map expectation's counts, added over chunks; its percentages follow from them.
COUNTS = ("element_count", "missing_count", "unexpected_count")
PARTIAL = RESULT_FORMAT["partial_unexpected_count"]


def _extra_failures(like: Any, expectation_type: str, indices: list[Any]) -> Any:
    """A result of ``like``'s suite that counts only ``indices`` as failing ``expectation_type``."""
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

    results = []
    for result in like.results:
        if result.expectation_config.type == expectation_type:
            found = {"element_count": 0, "missing_count": 0, "unexpected_count": len(indices)}
            results.append(
                ExpectationValidationResult(
                    success=False,
                    expectation_config=result.expectation_config,
                    result={**found, "unexpected_index_list": list(indices)},
                )
            )
    return type(like)(success=False, results=results, suite_name=like.suite_name, meta=like.meta)


def merge_results(parts: list[Any]) -> Any:
    """One suite result from the results of its chunks (and any ``_extra_failures``), in the suite's order."""
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

    def same_expectation(a: Any, b: Any) -> bool:
        return a.expectation_config.to_json_dict() == b.expectation_config.to_json_dict()

    first, merged = parts[0], []
    for result in first.results:
        same = [r for part in parts for r in part.results if same_expectation(r, result)]
        values = dict(result.result)
        if "element_count" in values:
            for count in COUNTS:
                values[count] = sum(r.result.get(count, 0) for r in same)
            indices = [i for r in same for i in r.result.get("unexpected_index_list") or []]
            elements, missing, unexpected = (values[c] for c in COUNTS)
            present = elements - missing
            values |= {
                "unexpected_index_list": indices,
                "partial_unexpected_index_list": indices[:PARTIAL],
                "unexpected_percent": 100 * unexpected / present if present else None,
                "unexpected_percent_nonmissing": 100 * unexpected / present if present else None,
                "unexpected_percent_total": 100 * unexpected / elements if elements else None,
                "missing_percent": 100 * missing / elements if elements else None,
            }
        merged.append(
            ExpectationValidationResult(
                success=all(r.success for r in same),
                expectation_config=result.expectation_config,
                result=values,
                meta=result.meta,
                exception_info=result.exception_info,
            )
        )
    successful = sum(r.success for r in merged)
    statistics = {
        "evaluated_expectations": len(merged),
        "successful_expectations": successful,
        "unsuccessful_expectations": len(merged) - successful,
        "success_percent": 100 * successful / len(merged) if merged else None,
    }
    return type(first)(
        success=successful == len(merged),
        results=merged,
        suite_name=first.suite_name,
        suite_parameters=first.suite_parameters,
        statistics=statistics,
        meta=first.meta,
        batch_id=first.batch_id,
    )


def build_data_docs(gx_dir: Path, pages: list[Any]) -> None:
    """Build the Data Docs pages of ``pages`` (from ``GxSuite.finish``) and the site's index, once for all of them.

    The index costs the same however many runs are new: a task that validates several
    intervals (its own, and earlier ones holding rows back) builds it once.
    """
    if pages:
        with _locked(gx_dir):
            _build_pages(gx_context(gx_dir), pages)


def _build_pages(context: Any, pages: list[Any]) -> None:
    context.build_data_docs(resource_identifiers=list(dict.fromkeys(pages)), build_index=True)


def schema_problems(results: list[Any]) -> list[str]:
    """Plain-words description of the column set's expectation, if it failed."""
    problems = []
    for result in results:
        if result.success or result.expectation_config.type != SCHEMA_EXPECTATION:
            continue
        mismatched = (result.result.get("details") or {}).get("mismatched") or {}
        if mismatched.get("missing"):
            problems.append(f"missing column(s) {sorted(mismatched['missing'])}")
        if mismatched.get("unexpected"):
            problems.append(f"unexpected column(s) {sorted(mismatched['unexpected'])}")
    return problems


# The Arrow type a source column must be declared with, as extraction maps it.
ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def declared_type_problems(spec: TableSpec, schema: pa.Schema) -> list[str]:
    """The columns whose type, as the source declares it, is not the dataset's: a schema change.

    Read from the partition's schema, not its values: an INTEGER column whose values are
    null in places reads into pandas as float64, and an empty interval has no values at all.
    """
    problems = []
    for column in spec.columns:
        if column.name in schema.names and schema.field(column.name).type != ARROW_TYPES[column.type]:
            declared = schema.field(column.name).type
            problems.append(f"column {column.name!r} retyped: expected {column.type}, the source declares {declared}")
    return problems


def unfit_reasons(spec: TableSpec, source_values: pd.Series) -> dict[Any, list[str]]:
    """Row index -> a reason per value that extraction could not store in its declared type."""
    reasons: dict[Any, list[str]] = {}
    for index, text in source_values.dropna().items():
        names = []
        for column in json.loads(text):
            kind = spec.column(column).type if column in spec.column_names else None
            names.append(f"{UNPARSEABLE_TIMESTAMP if kind == 'timestamp' else TYPE_MISMATCH}({column})")
        reasons[index] = names
    return reasons


def row_reasons(results: list[Any]) -> dict[Any, list[str]]:
    """Row index -> names of the expectations that row broke."""
    reasons: dict[Any, list[str]] = defaultdict(list)
    for result in results:
        if result.success or result.expectation_config.type == SCHEMA_EXPECTATION:
            continue
        indices = result.result.get("unexpected_index_list")
        if indices is None:
            raise RuntimeError(
                f"{expectation_name(result.expectation_config)} failed without row indices: {result.result}"
            )
        name = expectation_name(result.expectation_config)
        for index in indices:
            reasons[index].append(name)
    return reasons


def percentages_that_differ(value: float, limit: float, most_digits: int = 6) -> tuple[str, str]:
    """Both as percentages, with the fewest decimals (at least one) at which the two texts differ.

    "401 of 2001 rows (20.0%) ... above the threshold of 20.0%" contradicts itself; 20.04% and 20.00% do not.
    """
    for digits in range(1, most_digits + 1):
        shown = f"{value:.{digits}%}", f"{limit:.{digits}%}"
        if shown[0] != shown[1]:
            break
    return shown


@dataclass
class Chunk:
    """Consecutive rows of a raw partition; ``frame``'s index is each row's position in the partition."""

    table: pa.Table  # as extracted, ``_source_values`` included
    frame: pd.DataFrame  # the source's columns
    source_values: pd.Series | None  # JSON per row, null where every value fit

    @classmethod
    def of(cls, table: pa.Table, offset: int) -> Chunk:
        import pandas as pd

        index = pd.RangeIndex(offset, offset + table.num_rows)
        if SOURCE_VALUES not in table.column_names:
            return cls(table, table.to_pandas().set_axis(index), None)
        # Not ``frame.pop``: that splits the frame's blocks, and pandas merges them again on every
        # copy -- GX filters the whole frame several times per expectation.
        frame = table.drop_columns([SOURCE_VALUES]).to_pandas().set_axis(index)
        return cls(table, frame, table.column(SOURCE_VALUES).to_pandas().set_axis(index))


@dataclass(frozen=True)
class RawPartition:
    """A raw partition, read ``chunk_rows`` rows at a time: the gate's memory does not grow with the interval.

    The gate's seam: it reads the interval through ``chunks`` only. A gate over a warehouse
    table would yield the same chunks from a query, or run the suite where the data is.
    """

    uri: Path
    schema: pa.Schema
    rows: int
    chunk_rows: int

    @classmethod
    def open(cls, uri: str | Path, chunk_rows: int = DEFAULT_GATE_CHUNK_ROWS) -> RawPartition:
        with pq.ParquetFile(uri) as file:
            return cls(Path(uri), file.schema_arrow, file.metadata.num_rows, chunk_rows)

    def chunks(self, columns: list[str] | None = None) -> Iterator[Chunk]:
        offset = 0
        with pq.ParquetFile(self.uri) as file:
            for batch in file.iter_batches(batch_size=self.chunk_rows, columns=columns):
                yield Chunk.of(pa.Table.from_batches([batch]), offset)
                offset += batch.num_rows


@dataclass
class Findings:
    """What the checks found: row index -> reasons, and what makes the whole interval a schema change.

    ``shared_keys``: rows the suite checks whose key another such row of the interval has too,
    in a different chunk, which the suite (run on one chunk at a time) cannot see.
    """

    reasons: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)
    shared_keys: list[int] = field(default_factory=list)

    def marked(self, frame: pd.DataFrame) -> Any:
        """A boolean mask of ``frame``'s rows that already have a reason."""
        import numpy as np

        return np.fromiter((i in self.reasons for i in frame.index), bool, len(frame))


# A second seed for row fingerprints: with the first, 128 bits, so that two different rows of
# an interval are never taken for copies of each other (pandas hashes a number the same under
# any seed; the text columns, which every table has, differ).
SECOND_HASH_KEY = "ctpipe-redeliver"  # 16 bytes, as pandas requires


def before_the_suite(spec: TableSpec, raw: RawPartition) -> Findings:
    """What needs no suite: declared types, exact redeliveries, values extraction could not type,
    and keys shared across chunks. Read chunk by chunk; holds 24 bytes a row.

    The suite then sees the other rows only.
    """
    import numpy as np
    import pandas as pd

    found = Findings(problems=declared_type_problems(spec, raw.schema))
    first, second, keys, unfit = [], [], [], {}
    for chunk in raw.chunks():
        first.append(pd.util.hash_pandas_object(chunk.frame, index=False).to_numpy())
        second.append(pd.util.hash_pandas_object(chunk.frame, index=False, hash_key=SECOND_HASH_KEY).to_numpy())
        if spec.key in chunk.frame and raw.rows > raw.chunk_rows:
            key = chunk.frame[spec.key]
            keys.append(np.where(key.isna(), 0, pd.util.hash_pandas_object(key, index=False).to_numpy()))
        if chunk.source_values is not None:
            unfit |= unfit_reasons(spec, chunk.source_values)
    if not first:
        return found
    hashes = np.concatenate(first), np.concatenate(second)
    order = np.lexsort(hashes[::-1])  # stable: a row's copies come after it
    again = (hashes[0][order][1:] == hashes[0][order][:-1]) & (hashes[1][order][1:] == hashes[1][order][:-1])
    for position in np.sort(order[1:][again]):
        found.reasons[int(position)].append(DUPLICATE_ROW)
    for position, names in unfit.items():
        found.reasons[position].extend(names)
    if keys:
        found.shared_keys = _shared_keys(spec, raw, np.concatenate(keys), found)
    return found


def _shared_keys(spec: TableSpec, raw: RawPartition, hashes: Any, found: Findings) -> list[int]:
    """Positions of the rows the suite checks whose key (not null) another such row has.

    Found by the keys' hashes, then confirmed on the keys themselves: only the candidates'
    keys are read, so this holds no more than a hash per row.
    """
    import numpy as np

    checked = hashes != 0
    checked[list(found.reasons)] = False
    values, counts = np.unique(hashes[checked], return_counts=True)
    candidates = np.flatnonzero(checked & np.isin(hashes, values[counts > 1]))
    if not len(candidates):
        return []
    by_key: dict[str, list[int]] = defaultdict(list)
    for chunk in raw.chunks(columns=[spec.key]):
        index = chunk.frame.index
        wanted = candidates[(candidates >= index.start) & (candidates < index.stop)]
        for position, key in zip(wanted, chunk.frame[spec.key].to_numpy()[wanted - index.start], strict=True):
            by_key[key].append(int(position))
    return sorted(p for positions in by_key.values() if len(positions) > 1 for p in positions)


def decide(
    spec: TableSpec,
    interval: Interval,
    found: Findings,
    failures: Counter,
    rows_in: int,
    held: int,
    max_bad_row_share: float,
) -> tuple[str, str, str | None]:
    """The gate's decision: the interval's status, its message, and (when rejected) every row's reason."""
    bad = len(found.reasons)
    if found.problems:
        message = f"{spec.name} {interval}: the source schema changed: " + "; ".join(found.problems)
        return "schema_changed", message, f"schema_changed: {'; '.join(found.problems)}"
    if rows_in and bad / rows_in > max_bad_row_share:
        top = ", ".join(f"{name}: {count}" for name, count in failures.most_common(5))
        share, limit = percentages_that_differ(bad / rows_in, max_bad_row_share)
        message = (
            f"{spec.name} {interval}: {bad} of {rows_in} rows ({share}) are bad, "
            f"above the threshold of {limit}; most broken: {top}"
        )
        return "failed_threshold", message, f"interval_rejected: bad-row share {share} above {limit}"
    message = f"{spec.name} {interval}: {rows_in - bad - held} of {rows_in} rows passed"
    if held:
        message += f", {held} held back until their parent is validated"
    return ("empty" if rows_in == 0 else "passed"), message, None


class Partitions:
    """The interval's validated, quarantine and held partitions, and the index entries of its
    validated rows, written chunk by chunk under temporary names and published together."""

    ZONES = ("quarantine", "held", "validated")

    def __init__(self, lake: Lake, spec: TableSpec, interval: Interval, schema: pa.Schema):
        reasons = pa.field(QUARANTINE_REASONS, pa.list_(pa.string()))
        self.paths = {zone: lake.partition(zone, spec.name, interval) for zone in self.ZONES}
        self.schemas = {
            "quarantine": schema.append(reasons),  # the quarantine shows what the source held
            "held": schema.append(reasons),
            "validated": pa.schema([f for f in schema if f.name != SOURCE_VALUES]),
        }
        self.entries = temporary_name(self.paths["validated"].with_suffix(".keys.parquet"))
        self.temporary = {zone: temporary_name(path) for zone, path in self.paths.items()}
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.rows: Counter[str] = Counter()
        self.published: dict[str, int] = {}  # zone -> rows, once in place

    def write(self, zone: str, table: pa.Table) -> None:
        if zone not in self.writers:
            path = self.entries if zone == "entries" else self.temporary[zone]
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writers[zone] = pq.ParquetWriter(path, table.schema if zone == "entries" else self.schemas[zone])
        self.writers[zone].write_table(table)

    def write_rows(self, zone: str, chunk: Chunk, rows: Any, reasons: list[list[str]] | None = None) -> None:
        """The chunk's ``rows`` (a boolean mask) to ``zone``, with their ``reasons`` outside the validated zone."""
        import numpy as np

        if not rows.any():
            return
        table = chunk.table.take(np.flatnonzero(rows))
        if zone == "validated":
            table = table.drop_columns([c for c in table.column_names if c == SOURCE_VALUES])
        else:
            table = table.append_column(QUARANTINE_REASONS, pa.array(reasons, pa.list_(pa.string())))
        self.write(zone, table.cast(self.schemas[zone]))
        self.rows[zone] += table.num_rows

    def entry_batches(self) -> Iterator[pd.DataFrame]:
        """The validated rows' index entries, as written (after ``publish``)."""
        if self.entries.exists():
            with pq.ParquetFile(self.entries) as file:
                for batch in file.iter_batches(batch_size=BATCH):
                    yield batch.to_pandas()

    def publish(self, zones: tuple[str, ...]) -> None:
        """Move ``zones`` into place (empty where nothing was written) and remove the others'."""
        self.close()
        for zone, path in self.paths.items():
            if zone not in zones:
                path.unlink(missing_ok=True)
                continue
            if zone not in self.rows:
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(self.schemas[zone].empty_table(), self.temporary[zone])
            os.replace(self.temporary[zone], path)
            self.published[zone] = self.rows[zone]

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def discard(self) -> None:
        self.close()
        for path in (*self.temporary.values(), self.entries):
            path.unlink(missing_ok=True)


def validate_partition(
    spec: TableSpec,
    raw_uri: str | Path,
    interval: Interval,
    lake: Lake,
    gx_dir: Path,
    report_path: Path,
    max_bad_row_share: float,
    *,
    keys: KeyIndex,
    as_of: Interval | None = None,
    unplaceable: dict[str, int] | None = None,
    docs: list[Any] | None = None,
    chunk_rows: int = DEFAULT_GATE_CHUNK_ROWS,
    suite: Any = None,
) -> ValidationOutcome:
    """Validate one raw partition, split it into validated and quarantined rows, and gate the run.

    The partition is read ``chunk_rows`` rows at a time, twice: first for what needs the
    whole interval (exact redeliveries, keys shared across chunks), then for the suite and
    the index, writing each chunk's rows to their partitions as it goes. Memory holds one
    chunk and a few bytes per row, so the outcome is the same for any ``chunk_rows``.

    The JSON report goes to ``report_path`` (``ctpipe.artifacts.validation_report`` names it);
    it also counts the table's ``unplaceable`` rows (by reason), which extraction kept apart.
    ``keys``, the index of validated keys, makes keys unique across intervals and checks
    each row's parent (``TableSpec.parent``); rows whose parent is not validated yet are
    held back in ``held/`` until ``as_of`` (the newest interval ingested, by default this
    one) is past their grace period. The run's Data Docs page is built at once, or, given ``docs``,
    left to the caller: its resources are added to ``docs`` for ``build_data_docs``.
    ``suite`` runs the expectation suite on a chunk's rows (``GxSuite``, by default).
    """
    import numpy as np

    raw = RawPartition.open(raw_uri, chunk_rows)
    found = before_the_suite(spec, raw)
    suite = suite or GxSuite(spec, interval, gx_dir, SuiteRecord(lake.manifest("suite", spec.name, interval), raw))
    out = Partitions(lake, spec, interval, raw.schema)
    held: dict[Any, list[str]] = {}
    rows_in, shared = raw.rows, set(found.shared_keys)
    unique = f"{UNIQUE}({spec.key})"  # the suite's name for it (``expectation_name``)
    try:
        for chunk in raw.chunks():
            unchecked = chunk.frame[~found.marked(chunk.frame)]
            problems, broken = suite.check(unchecked, by_row=not found.problems)
            found.problems += problems
            if found.problems:  # the whole interval is quarantined: no need to read on
                break
            for index, names in broken.items():
                found.reasons[index].extend(names)
            across = [i for i in unchecked.index if i in shared and unique not in found.reasons.get(i, ())]
            for index in across:
                found.reasons[index].append(unique)
            suite.add(UNIQUE, across)
            verdicts = check_rows(spec, chunk.frame[~found.marked(chunk.frame)], interval, as_of or interval, keys)
            for index, names in verdicts.quarantined.items():
                found.reasons[index].extend(names)
            held |= verdicts.held
            bad = found.marked(chunk.frame)
            waiting = np.fromiter((i in verdicts.held for i in chunk.frame.index), bool, len(chunk.frame))
            out.write_rows("quarantine", chunk, bad, [found.reasons[i] for i in chunk.frame.index[bad]])
            out.write_rows("held", chunk, waiting, [held[i] for i in chunk.frame.index[waiting]])
            out.write_rows("validated", chunk, ~bad & ~waiting)
            if (~bad & ~waiting).any():
                passed = entries(spec, chunk.frame[~bad & ~waiting])
                out.write("entries", pa.Table.from_pandas(passed, preserve_index=False))
        data_docs = suite.finish(docs)
        reasons, failures = found.reasons, Counter(name for names in found.reasons.values() for name in names)
        status, message, rejected = decide(spec, interval, found, failures, rows_in, len(held), max_bad_row_share)

        if status in ("passed", "empty"):
            out.publish(Partitions.ZONES if held else ("quarantine", "validated"))
            keys.replace(spec.name, interval.key, out.entry_batches())
        else:  # a rejected interval holds nothing back and feeds no features: all of it is quarantined
            out.discard()
            out = Partitions(lake, spec, interval, raw.schema)
            for chunk in raw.chunks():
                rows = chunk.frame.index
                why = [[rejected] if status == "schema_changed" else reasons.get(i) or [rejected] for i in rows]
                out.write_rows("quarantine", chunk, np.ones(len(rows), bool), why)
            out.publish(("quarantine",))
            keys.replace(spec.name, interval.key, None)
    finally:
        out.discard()

    outcome = ValidationOutcome(
        table=spec.name,
        interval=interval,
        status=status,
        rows_in=rows_in,
        rows_passed=out.published.get("validated", 0),
        rows_quarantined=out.published["quarantine"],
        rows_held=out.published.get("held", 0),
        validated_uri=str(out.paths["validated"]) if "validated" in out.published else None,
        quarantine_uri=str(out.paths["quarantine"]),
        report_uri=str(report_path),
        data_docs_uri=data_docs,
        failures=dict(failures.most_common()),
        message=message,
        unplaceable=dict(unplaceable or {}),
    )
    if outcome.rows_in != outcome.rows_passed + outcome.rows_quarantined + outcome.rows_held:
        raise RuntimeError(f"rows lost in validation: {outcome}")
    write_json(report_path, {**outcome.to_dict(), "validated_at": datetime.now(UTC).isoformat()})
    if status in ("schema_changed", "failed_threshold"):
        raise ValidationGateError(message + f" (report: {report_path}; Data Docs: {data_docs})", outcome)
    return outcome


def validate_extraction(extraction: Extraction, settings: Settings | None = None) -> ValidationOutcome:
    """Validate what ``ctpipe.ingest.extract_table`` wrote, with deployment settings.

    Then look again at the table's earlier intervals that hold rows back: their parents
    may be validated now, or their grace period over. Grace is measured to the newest
    interval extracted so far, so re-running an old interval decides as the newest run did.
    """
    settings = settings or Settings.from_env()
    spec = settings.dataset.table(extraction.table)
    lake = Lake(settings.lake_dir)
    keys = KeyIndex.from_url(settings.key_index_url)
    as_of = max([extraction.interval, *(interval for interval, _ in lake.partitions("raw", spec.name))])
    # Only the task's own interval writes its held partition: the others are known now.
    holding = [interval for interval, _ in lake.partitions("held", spec.name) if interval != extraction.interval]
    # With earlier intervals to validate again, the Data Docs of all are built once, at the end.
    docs: list[Any] | None = [] if holding else None

    def validate(interval: Interval) -> ValidationOutcome:
        return validate_partition(
            spec,
            lake.partition("raw", spec.name, interval),
            interval,
            lake,
            settings.gx_dir,
            artifacts.validation_report(settings, spec.name, interval),
            settings.max_bad_row_share,
            chunk_rows=settings.gate_chunk_rows,
            keys=keys,
            as_of=as_of,
            unplaceable=extraction.unplaceable,
            docs=docs,
        )

    try:
        outcome = validate(extraction.interval)
        for interval in holding:
            try:
                log.info("%s", validate(interval).message)
            except ValidationGateError as error:  # that interval is withdrawn; this one stands
                log.error("re-validating held rows: %s", error)
        return outcome
    finally:
        keys.close()
        build_data_docs(settings.gx_dir, docs or [])  # a failed gate's page too: its error message links it
