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
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ctpipe import artifacts
from ctpipe.datasets.spec import ColumnType, Identifier, TableSpec
from ctpipe.ingest import UNPARSEABLE_TIMESTAMP
from ctpipe.key_index import DUPLICATE_ROW, KeyIndex, check_rows, entries
from ctpipe.lake import QUARANTINE_REASONS, SOURCE_VALUES, Lake, atomic_path, write_json
from ctpipe.records import Extraction, Interval, ValidationOutcome
from ctpipe.settings import Settings

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


def _run_gate(
    context: Any, spec: TableSpec, frame: pd.DataFrame, interval: Interval
) -> tuple[list[Any], list[Any], str | None]:
    """The suite's results, the Data Docs resources they make (the run's page, the suite's), the run page's URL."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    checkpoint = _checkpoint(context, spec)
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=interval_parameters(interval),
        run_id=RunIdentifier(run_name=f"{spec.name}_{interval.key}", run_time=interval.end),
    )
    (identifier, validation), *_ = result.run_results.items()
    urls = context.get_docs_sites_urls(resource_identifier=identifier, only_if_exists=False)  # built later
    pages = [identifier, ExpectationSuiteIdentifier(name=validation.suite_name)]
    return list(validation.results), pages, (urls[0]["site_url"] if urls else None)


def build_data_docs(gx_dir: Path, pages: list[Any]) -> None:
    """Build the Data Docs pages of ``pages`` (from ``_run_gate``) and the site's index, once for all of them.

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


def _write(frame: pd.DataFrame, path: Path, schema: pa.Schema, reasons: list[list[str]] | None = None) -> str:
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    if reasons is not None:
        table = table.append_column(
            pa.field(QUARANTINE_REASONS, pa.list_(pa.string())), pa.array(reasons, pa.list_(pa.string()))
        )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return str(path)


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
class RawPartition:
    """A raw partition as the gate reads it: the table, its rows, and the values extraction could not type."""

    table: pa.Table
    frame: pd.DataFrame
    source_values: pd.Series | None  # JSON per row, null where every value fit

    @classmethod
    def read(cls, uri: str | Path) -> RawPartition:
        table = pq.read_table(uri)
        if SOURCE_VALUES not in table.column_names:
            return cls(table, table.to_pandas(), None)
        # Not ``frame.pop``: that splits the frame's blocks, and pandas merges them again on every
        # copy -- GX filters the whole frame several times per expectation.
        frame = table.drop_columns([SOURCE_VALUES]).to_pandas()
        return cls(table, frame, table.column(SOURCE_VALUES).to_pandas())


@dataclass
class Findings:
    """What the checks found: row index -> reasons, and what makes the whole interval a schema change."""

    reasons: dict[Any, list[str]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)


def before_the_suite(spec: TableSpec, raw: RawPartition) -> Findings:
    """What needs no suite: declared types, exact redeliveries, values extraction could not type.

    The suite then sees the other rows only.
    """
    found = Findings(problems=declared_type_problems(spec, raw.table.schema))
    for index in raw.frame.index[raw.frame.duplicated(keep="first")]:
        found.reasons[index].append(DUPLICATE_ROW)
    if raw.source_values is not None:
        for index, names in unfit_reasons(spec, raw.source_values).items():
            found.reasons[index].extend(names)
    return found


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
) -> ValidationOutcome:
    """Validate one raw partition, split it into validated and quarantined rows, and gate the run.

    The JSON report goes to ``report_path`` (``ctpipe.artifacts.validation_report`` names it);
    it also counts the table's ``unplaceable`` rows (by reason), which extraction kept apart.
    ``keys``, the index of validated keys, makes keys unique across intervals and checks
    each row's parent (``TableSpec.parent``); rows whose parent is not validated yet are
    held back in ``held/`` until ``as_of`` (the newest interval ingested, by default this
    one) is past their grace period. The run's Data Docs page is built at once, or, given ``docs``,
    left to the caller: its resources are added to ``docs`` for ``build_data_docs``.
    """
    raw = RawPartition.read(raw_uri)
    found = before_the_suite(spec, raw)
    data_docs = None
    if len(raw.frame):
        with _locked(gx_dir):
            context = gx_context(gx_dir)
            unchecked = raw.frame[~raw.frame.index.isin(list(found.reasons))]
            results, pages, data_docs = _run_gate(context, spec, unchecked, interval)
            if docs is None:
                _build_pages(context, pages)
        if docs is not None:
            docs.extend(pages)
        found.problems += schema_problems(results)
        if not found.problems:
            for index, names in row_reasons(results).items():
                found.reasons[index].extend(names)
    return settle(
        spec,
        raw,
        found,
        interval,
        lake,
        report_path,
        max_bad_row_share,
        keys=keys,
        as_of=as_of,
        data_docs=data_docs,
        unplaceable=unplaceable,
    )


def settle(
    spec: TableSpec,
    raw: RawPartition,
    found: Findings,
    interval: Interval,
    lake: Lake,
    report_path: Path,
    max_bad_row_share: float,
    *,
    keys: KeyIndex,
    as_of: Interval | None,
    data_docs: str | None,
    unplaceable: dict[str, int] | None,
) -> ValidationOutcome:
    """From what the checks found to the interval's outcome: the index's checks, the gate's decision,
    the validated, quarantine and held partitions, the index, the report; raise if the gate fails."""
    frame, rows_in = raw.frame, len(raw.frame)
    reasons, problems = found.reasons, found.problems
    held: dict[Any, list[str]] = {}
    if rows_in and not problems:
        verdicts = check_rows(spec, frame[~frame.index.isin(list(reasons))], interval, as_of or interval, keys)
        for index, names in verdicts.quarantined.items():
            reasons[index].extend(names)
        held = dict(verdicts.held)

    failures = Counter(name for names in reasons.values() for name in names)
    bad_share = len(reasons) / rows_in if rows_in else 0.0
    if problems:
        status = "schema_changed"
        message = f"{spec.name} {interval}: the source schema changed: " + "; ".join(problems)
        reasons = {index: [f"schema_changed: {'; '.join(problems)}"] for index in frame.index}
    elif bad_share > max_bad_row_share:
        status = "failed_threshold"
        top = ", ".join(f"{name}: {count}" for name, count in failures.most_common(5))
        share, limit = percentages_that_differ(bad_share, max_bad_row_share)
        message = (
            f"{spec.name} {interval}: {len(reasons)} of {rows_in} rows ({share}) are bad, "
            f"above the threshold of {limit}; most broken: {top}"
        )
        rejected = f"interval_rejected: bad-row share {share} above {limit}"
        reasons = {index: reasons.get(index) or [rejected] for index in frame.index}
    else:
        status = "empty" if rows_in == 0 else "passed"
        message = f"{spec.name} {interval}: {rows_in - len(reasons) - len(held)} of {rows_in} rows passed"
        if held:
            message += f", {len(held)} held back until their parent is validated"
    if status not in ("passed", "empty"):
        held = {}  # a rejected interval holds nothing back: all of it is quarantined

    bad = frame.index.isin(list(reasons))
    waiting = frame.index.isin(list(held))
    written = frame if raw.source_values is None else frame.assign(**{SOURCE_VALUES: raw.source_values})
    schema = raw.table.schema  # the quarantine shows what the source held
    quarantine_path = lake.partition("quarantine", spec.name, interval)
    quarantine_uri = _write(written[bad], quarantine_path, schema, [reasons[i] for i in frame.index[bad]])
    held_path = lake.partition("held", spec.name, interval)
    if held:
        _write(written[waiting], held_path, schema, [held[i] for i in frame.index[waiting]])
    else:
        held_path.unlink(missing_ok=True)
    validated_path = lake.partition("validated", spec.name, interval)
    if status in ("passed", "empty"):
        passed = frame[~bad & ~waiting]
        validated_uri = _write(passed, validated_path, pa.schema([f for f in schema if f.name != SOURCE_VALUES]))
        keys.replace(spec.name, interval.key, entries(spec, passed))
    else:
        validated_path.unlink(missing_ok=True)  # a rejected interval must not feed features
        keys.replace(spec.name, interval.key, None)
        validated_uri = None

    outcome = ValidationOutcome(
        table=spec.name,
        interval=interval,
        status=status,
        rows_in=rows_in,
        rows_passed=int((~bad & ~waiting).sum()) if validated_uri else 0,
        rows_quarantined=int(bad.sum()),
        rows_held=int(waiting.sum()),
        validated_uri=validated_uri,
        quarantine_uri=quarantine_uri,
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
