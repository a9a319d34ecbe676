import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ctpipe.datasets.lab_qc_generator import generate
from ctpipe.datasets.synthetic import GeneratorConfig
from ctpipe.key_index import KeyIndex
from ctpipe.lake import Lake
from ctpipe.records import Interval
from ctpipe.validation import QUARANTINE_REASONS, ValidationGateError, validate_partition

from ..conftest import ROOT
from .sources import DATASET, raw_partition, rule_violations

UTC = UTC
DAY = Interval(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
SPEC = DATASET.events


@pytest.fixture
def lake(tmp_path):
    return Lake(tmp_path / "lake")


def validate(lake, tmp_path, frame, max_bad_row_share=0.5, spec=SPEC):
    uri = raw_partition(lake, spec, DAY, frame)
    report = tmp_path / "reports" / spec.name / f"{DAY.key}.json"
    keys = KeyIndex.from_url(f"sqlite:///{tmp_path / 'keys.sqlite'}")
    try:
        return validate_partition(spec, uri, DAY, lake, tmp_path / "gx", report, max_bad_row_share, keys=keys)
    finally:
        keys.close()


def clean_samples(rows=40) -> pd.DataFrame:
    samples, _ = generate(GeneratorConfig(start=date(2026, 1, 1), days=1, rows_per_day=rows, bad_row_share=0))
    return samples


def quarantine_of(outcome) -> pd.DataFrame:
    return pq.read_table(outcome.quarantine_uri).to_pandas()


def test_each_bad_row_is_quarantined_with_the_expectations_it_broke(lake, tmp_path):
    frame = clean_samples()
    frame = frame.astype({"lab_id": object, "sample_type": object})
    rna = frame.index[(frame["sample_type"] == "RNA") & (frame.index > 8)][0]
    frame.loc[1, "lab_id"] = None
    frame.loc[2, "a260_280"] = 9.9
    frame.loc[3, "sample_type"] = "tissue"
    frame.loc[rna, "rin"] = None
    frame.loc[5, "volume_ul"] = -5.0
    frame.loc[5, "courier"] = "Drone Drop"
    frame.loc[7, "sample_id"] = frame.loc[6, "sample_id"]  # two different samples under one id
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)  # the same record delivered twice

    outcome = validate(lake, tmp_path, frame)

    quarantine = quarantine_of(outcome)
    by_id = quarantine.groupby("sample_id")[QUARANTINE_REASONS].apply(lambda r: sorted(x for v in r for x in v))
    ids = frame["sample_id"]
    assert by_id[ids[1]] == ["expect_column_values_to_not_be_null(lab_id)"]
    assert by_id[ids[2]] == ["expect_column_values_to_be_between(a260_280)"]
    assert by_id[ids[3]] == ["expect_column_values_to_be_in_set(sample_type)"]
    assert by_id[ids[rna]] == ['expect_column_values_to_not_be_null(rin) where sample_type == "RNA"']
    assert by_id[ids[5]] == [
        "expect_column_values_to_be_between(volume_ul)",
        "expect_column_values_to_be_in_set(courier)",
    ]
    assert by_id[ids[6]] == ["expect_column_values_to_be_unique(sample_id)"] * 2
    assert by_id[ids[0]] == ["duplicate_row"]  # the first delivery lands, the copy does not
    assert quarantine[QUARANTINE_REASONS].map(len).min() >= 1

    validated = pq.read_table(outcome.validated_uri).to_pandas()
    assert ids[0] in set(validated["sample_id"])
    assert outcome.status == "passed"
    assert outcome.rows_in == len(frame) == outcome.rows_passed + outcome.rows_quarantined
    assert outcome.rows_quarantined == 8 and len(validated) == outcome.rows_passed
    assert not rule_violations(validated, SPEC).any()


def test_a_blank_padded_or_huge_identifier_never_becomes_a_key_or_an_entity(lake, tmp_path):
    frame = clean_samples().astype({"lab_id": object, "sample_id": object})
    frame.loc[1, "lab_id"] = ""
    frame.loc[2, "lab_id"] = " " + frame.loc[2, "lab_id"]
    frame.loc[3, "lab_id"] = "L" * 10_000_000  # 10 MB
    frame.loc[4, "sample_id"] = frame.loc[4, "sample_id"] + "\t"
    frame.loc[5, "lab_id"] = "LAB 007"  # inner space: no rule against it here, see the pattern below

    outcome = validate(lake, tmp_path, frame)

    reasons = dict(zip(quarantine_of(outcome)["sample_id"], quarantine_of(outcome)[QUARANTINE_REASONS], strict=True))
    ids = frame["sample_id"]
    assert list(reasons[ids[1]]) == ["expect_column_value_lengths_to_be_between(lab_id)"]
    assert list(reasons[ids[2]]) == ["expect_column_values_to_not_match_regex(lab_id)"]
    assert list(reasons[ids[3]]) == ["expect_column_value_lengths_to_be_between(lab_id)"]
    assert list(reasons[ids[4]]) == ["expect_column_values_to_not_match_regex(sample_id)"]
    assert outcome.rows_quarantined == 4 and outcome.rows_in == outcome.rows_passed + outcome.rows_quarantined
    validated = pq.read_table(outcome.validated_uri).to_pandas()
    assert not rule_violations(validated, SPEC).any() and rule_violations(frame, SPEC).sum() == 4

    # A dataset may also give an identifier a pattern.
    from dataclasses import replace

    from ctpipe.datasets.spec import Identifier

    strict = Identifier(max_length=64, pattern=r"LAB-\d{3}$")
    columns = tuple(replace(c, identifier=strict) if c.name == "lab_id" else c for c in SPEC.columns)
    patterned = replace(SPEC, columns=columns)
    outcome = validate(lake, tmp_path, frame.drop(index=[1, 2, 3, 4]), spec=patterned)
    [reason] = quarantine_of(outcome)[QUARANTINE_REASONS]
    assert list(reason) == ["expect_column_values_to_match_regex(lab_id)"]
    assert rule_violations(frame.drop(index=[1, 2, 3, 4]), patterned).sum() == 1


def test_a_row_stamped_outside_its_partitions_interval_is_quarantined(lake, tmp_path):
    """The gate checks each row's own timestamp, whatever put it in the partition: [start, end) exactly."""
    frame = clean_samples()
    frame.loc[1, "submitted_at"] = pd.Timestamp(DAY.start)  # the first instant belongs to the interval
    frame.loc[2, "submitted_at"] = pd.Timestamp(DAY.end)  # the end belongs to the next one
    frame.loc[3, "submitted_at"] = pd.Timestamp(DAY.start) - pd.Timedelta(microseconds=1)
    frame.loc[4, "submitted_at"] = pd.Timestamp("2026-03-01T00:00:00+00:00")

    outcome = validate(lake, tmp_path, frame)

    quarantine = quarantine_of(outcome)
    reasons = dict(zip(quarantine["sample_id"], quarantine[QUARANTINE_REASONS].map(list), strict=True))
    ids = frame["sample_id"]
    assert reasons == {ids[i]: ["outside_interval(submitted_at)"] for i in (2, 3, 4)}
    assert outcome.rows_in == len(frame) == outcome.rows_passed + outcome.rows_quarantined
    assert ids[1] in set(pq.read_table(outcome.validated_uri).to_pandas()["sample_id"])


def test_a_10_mb_value_stays_out_of_the_reports_and_data_docs_and_in_quarantine(lake, tmp_path):
    frame = clean_samples().astype({"lab_id": object, "courier": object})
    huge = "L" * 10_000_000
    frame.loc[3, "lab_id"] = huge
    frame.loc[4, "courier"] = "C" * 10_000_000

    outcome = validate(lake, tmp_path, frame)

    written = [p for p in (tmp_path / "gx").rglob("*") if p.is_file() and p.suffix in (".html", ".json")]
    written += [Path(outcome.report_uri)]
    assert written and max(p.stat().st_size for p in written) < 1_000_000, sorted(p.stat().st_size for p in written)
    quarantine = quarantine_of(outcome).set_index("sample_id")
    assert quarantine.at[frame.loc[3, "sample_id"], "lab_id"] == huge  # the original value, whole
    assert outcome.rows_quarantined == 2


def test_the_gate_is_registered_once_and_again_only_when_its_suite_changes(lake, tmp_path):
    from dataclasses import replace

    frame = clean_samples()
    validate(lake, tmp_path, frame)
    stored = tmp_path / "gx" / "gx" / "expectations" / f"{SPEC.name}_suite.json"
    registered = stored.stat().st_mtime_ns
    validate(lake, tmp_path, frame)
    assert stored.stat().st_mtime_ns == registered  # the same code: nothing written again

    columns = tuple(replace(c, max_value=1.0) if c.name == "a260_280" else c for c in SPEC.columns)
    outcome = validate(lake, tmp_path, frame, max_bad_row_share=1.0, spec=replace(SPEC, columns=columns))
    assert stored.stat().st_mtime_ns > registered
    expected = int((frame["a260_280"] > 1.0).sum())
    assert outcome.failures["expect_column_values_to_be_between(a260_280)"] == expected > 0  # the new rule ran


def test_every_table_of_the_dataset_keeps_its_registered_gate_across_processes(lake, tmp_path):
    """The tables share one GX datasource: registering one must leave the other's asset, run after run."""
    samples, results = generate(GeneratorConfig(start=date(2026, 1, 1), days=1, rows_per_day=40, bad_row_share=0))
    script = (
        "import sys; from pathlib import Path\n"
        "from tests.unit.test_validation import validate, Lake, DATASET\n"
        "import pandas as pd\n"
        "tmp = Path(sys.argv[1])\n"
        "for spec in DATASET.tables:\n"
        "    frame = pd.read_parquet(tmp / f'{spec.name}.parquet')\n"
        "    print(spec.name, validate(Lake(tmp / 'lake'), tmp, frame, spec=spec).status)\n"
    )
    samples.to_parquet(tmp_path / f"{DATASET.events.name}.parquet")
    results.to_parquet(tmp_path / f"{DATASET.labels.name}.parquet")
    for _ in range(2):  # the second run finds both gates registered, in a process of its own
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.split() == ["lab_samples", "passed", "qc_results", "passed"]


def test_generated_bad_rows_are_exactly_the_quarantined_ones(lake, tmp_path):
    samples, _ = generate(GeneratorConfig(start=date(2026, 1, 1), days=1, rows_per_day=800, bad_row_share=0.05))
    outcome = validate(lake, tmp_path, samples)
    quarantine = quarantine_of(outcome)
    validated = pq.read_table(outcome.validated_uri).to_pandas()
    assert outcome.rows_quarantined == int(rule_violations(samples, SPEC).sum()) > 10
    assert len(quarantine) + len(validated) == len(samples)
    assert not rule_violations(validated, SPEC).any()
    report = pd.read_json(outcome.report_uri, typ="series")
    assert report["rows_quarantined"] == len(quarantine)


def test_too_many_bad_rows_fail_the_gate_and_quarantine_the_interval(lake, tmp_path):
    frame = clean_samples(40)
    frame.loc[:15, "a260_280"] = 9.9
    with pytest.raises(ValidationGateError) as error:
        validate(lake, tmp_path, frame, max_bad_row_share=0.2)
    message = str(error.value)
    assert "above the threshold of 20.0%" in message
    assert "expect_column_values_to_be_between(a260_280): 16" in message
    assert not lake.partition("validated", SPEC.name, DAY).exists()
    quarantine = pq.read_table(lake.partition("quarantine", SPEC.name, DAY)).to_pandas()
    assert len(quarantine) == len(frame)  # nothing lost: the clean rows wait in quarantine too
    assert quarantine[QUARANTINE_REASONS].map(lambda r: r[0].startswith("interval_rejected")).sum() == len(frame) - 16


def test_the_threshold_message_shows_the_digits_that_tell_share_and_threshold_apart(lake, tmp_path):
    frame = clean_samples(2000).head(2001)
    assert len(frame) == 2001
    frame.loc[:400, "a260_280"] = 9.9  # 401 of 2001 rows: 20.04%, just above 20%
    with pytest.raises(ValidationGateError) as error:
        validate(lake, tmp_path, frame, max_bad_row_share=0.2)
    assert "401 of 2001 rows (20.04%) are bad, above the threshold of 20.00%" in str(error.value)
    reasons = pq.read_table(lake.partition("quarantine", SPEC.name, DAY)).to_pandas()[QUARANTINE_REASONS]
    assert "interval_rejected: bad-row share 20.04% above 20.00%" in {r[0] for r in reasons}
    assert len(reasons) == len(frame)


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda f: f.rename(columns={"courier": "courier_name"}),
            ["missing column(s) ['courier']", "unexpected column(s) ['courier_name']"],
        ),
        (lambda f: f.drop(columns=["rin"]), ["missing column(s) ['rin']"]),
        (
            lambda f: f.astype({"volume_ul": str}),
            ["column 'volume_ul' retyped: expected float, the source declares string"],
        ),
    ],
    ids=["renamed", "missing", "retyped"],
)
def test_a_schema_change_fails_with_a_message_naming_it(lake, tmp_path, change, expected):
    frame = change(clean_samples(20))
    with pytest.raises(ValidationGateError, match="the source schema changed") as error:
        validate(lake, tmp_path, frame)
    for text in expected:
        assert text in str(error.value)
    quarantine = pq.read_table(lake.partition("quarantine", SPEC.name, DAY)).to_pandas()
    assert len(quarantine) == 20 and quarantine[QUARANTINE_REASONS].map(lambda r: "schema_changed" in r[0]).all()
    report = pd.read_json(tmp_path / "reports" / SPEC.name / f"{DAY.key}.json", typ="series")
    assert report["status"] == "schema_changed"


def test_an_empty_partition_passes_as_empty(lake, tmp_path):
    outcome = validate(lake, tmp_path, clean_samples(5).iloc[0:0])
    assert outcome.status == "empty" and outcome.rows_in == outcome.rows_passed == outcome.rows_quarantined == 0
    assert pq.read_table(outcome.validated_uri).num_rows == 0


def test_every_run_builds_data_docs(lake, tmp_path):
    outcome = validate(lake, tmp_path, clean_samples(10))
    page = outcome.data_docs_uri.removeprefix("file://")
    assert page.endswith(".html") and "lab_samples_suite" in page
    html = open(page).read()
    assert "a260_280" in html and "sample_id" in html  # the page renders this suite's expectations
    assert (tmp_path / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").exists()


def test_data_docs_templates_are_compiled_once_per_project(lake, tmp_path, monkeypatch):
    """GX renders each page with a new Jinja environment; compiled templates are kept in the project."""
    import jinja2

    from ctpipe.data_docs import BYTECODE_DIRECTORY

    validate(lake, tmp_path, clean_samples(10))
    compiled = list((tmp_path / "gx" / "gx" / BYTECODE_DIRECTORY).iterdir())
    assert len(compiled) > 10  # the page, index and their components' templates

    compiles = []
    original = jinja2.Environment.compile

    def counted(self, *args, **kwargs):
        compiles.append(args[1] if len(args) > 1 else kwargs.get("name"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    frame = clean_samples(10)
    frame.loc[0, "a260_280"] = 9.9  # a failed expectation too: its page shows more templates
    outcome = validate(lake, tmp_path, frame)
    assert compiles == []  # every template came from the cache, though every environment was new
    html = Path(outcome.data_docs_uri.removeprefix("file://")).read_text()
    assert "a260_280" in html and "sample_id" in html


def test_data_docs_index_the_newest_runs_and_keep_every_runs_page(lake, tmp_path, monkeypatch):
    """The index GX rebuilds on every run reads what it lists: listing the newest runs keeps its cost flat."""
    from datetime import timedelta

    import ctpipe.data_docs as data_docs

    monkeypatch.setattr(data_docs, "DATA_DOCS_INDEX_RUNS", 3)
    frame, pages = clean_samples(10), []
    keys = KeyIndex.from_url(f"sqlite:///{tmp_path / 'keys.sqlite'}")
    for day in range(5):
        interval = Interval(DAY.start + timedelta(days=day), DAY.end + timedelta(days=day))
        moved = frame.assign(
            submitted_at=frame["submitted_at"] + timedelta(days=day), sample_id=frame["sample_id"] + f"-{day}"
        )
        uri = raw_partition(lake, SPEC, interval, moved)
        outcome = validate_partition(
            SPEC, uri, interval, lake, tmp_path / "gx", tmp_path / f"{day}.json", 0.5, keys=keys
        )
        pages.append((interval, Path(outcome.data_docs_uri.removeprefix("file://"))))
    keys.close()
    index = (tmp_path / "gx" / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()
    assert all(page.exists() for _, page in pages)  # every run's page is kept
    listed = [f"{SPEC.name}_{interval.key}" in index for interval, _ in pages]
    assert listed == [False, False, True, True, True]


def test_revalidating_gives_the_same_partitions(lake, tmp_path):
    samples, _ = generate(GeneratorConfig(start=date(2026, 1, 1), days=1, rows_per_day=200, bad_row_share=0.05))
    first = validate(lake, tmp_path, samples)
    validated, quarantined = pq.read_table(first.validated_uri), pq.read_table(first.quarantine_uri)
    second = validate(lake, tmp_path, samples)
    assert pq.read_table(second.validated_uri).equals(validated)
    assert pq.read_table(second.quarantine_uri).equals(quarantined)


def gate_at(tmp_path, name, spec, frame, chunk_rows, max_bad_row_share=0.5):
    """Validate ``frame`` in a deployment of its own, reading ``chunk_rows`` rows at a time."""
    lake, keys = Lake(tmp_path / name / "lake"), KeyIndex.from_url(f"sqlite:///{tmp_path / name / 'keys.sqlite'}")
    uri = raw_partition(lake, spec, DAY, frame)
    try:
        outcome = validate_partition(
            spec,
            uri,
            DAY,
            lake,
            tmp_path / name / "gx",
            tmp_path / name / "report.json",
            max_bad_row_share,
            keys=keys,
            chunk_rows=chunk_rows,
        )
    except ValidationGateError as error:
        outcome = error.outcome
    finally:
        keys.close()
    return lake, outcome


def rows_of(lake, zone, spec):
    """A zone's partition as sorted rows, each row's reasons sorted: the same rows, whatever the order."""
    path = lake.partition(zone, spec.name, DAY)
    if not path.exists():
        return None
    frame = pq.read_table(path).to_pandas()
    if QUARANTINE_REASONS in frame:
        frame[QUARANTINE_REASONS] = frame[QUARANTINE_REASONS].map(lambda r: tuple(sorted(r)))
    return sorted(map(repr, frame.itertuples(index=False)))


@pytest.mark.parametrize("chunk_rows", [29, 64])
def test_the_gate_reads_an_interval_in_chunks_with_the_same_outcome_as_whole(tmp_path, chunk_rows):
    """Redeliveries and keys shared across chunks: every row lands where the whole-interval gate puts it."""
    samples, _ = generate(GeneratorConfig(start=date(2026, 1, 1), days=1, rows_per_day=300, bad_row_share=0.08))
    early = samples.iloc[[3, 4]]
    late = [
        early.iloc[[0]],  # an exact redelivery of row 3, chunks later
        early.iloc[[1]].assign(volume_ul=early["volume_ul"].iloc[1] + 1),  # another row with row 4's key
    ]
    frame = pd.concat([samples, *late], ignore_index=True)
    whole_lake, whole = gate_at(tmp_path, "whole", SPEC, frame, chunk_rows=100_000)
    chunked_lake, chunked = gate_at(tmp_path, "chunked", SPEC, frame, chunk_rows=chunk_rows)
    assert whole.status == chunked.status == "passed"
    for field in ("rows_in", "rows_passed", "rows_quarantined", "rows_held", "failures"):
        assert getattr(chunked, field) == getattr(whole, field), field
    for zone in ("validated", "quarantine", "held"):
        assert rows_of(chunked_lake, zone, SPEC) == rows_of(whole_lake, zone, SPEC), zone
    quarantined = pq.read_table(chunked.quarantine_uri, columns=["sample_id", QUARANTINE_REASONS]).to_pylist()
    reasons_of = defaultdict(list)
    for row in quarantined:
        reasons_of[row["sample_id"]] += row[QUARANTINE_REASONS]
    assert "duplicate_row" in reasons_of[early["sample_id"].iloc[0]]  # the redelivery; the first copy passes
    assert reasons_of[early["sample_id"].iloc[1]] == ["expect_column_values_to_be_unique(sample_id)"] * 2

    # One stored validation result per interval, adding up every chunk's rows, on one Data Docs page.
    results = sorted((tmp_path / "chunked" / "gx" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(results) == 1
    stored = pd.read_json(results[0], typ="series")
    counts = {
        r["expectation_config"]["type"] + str(r["expectation_config"]["kwargs"].get("column")): r["result"]
        for r in stored["results"]
    }
    unique = counts["expect_column_values_to_be_unique" + "sample_id"]
    assert unique["unexpected_count"] == whole.failures["expect_column_values_to_be_unique(sample_id)"] >= 2
    before_the_suite = [r for r in quarantined if "duplicate_row" in r[QUARANTINE_REASONS]]
    assert unique["element_count"] == len(frame) - len(before_the_suite)
    assert Path(chunked.data_docs_uri.removeprefix("file://")).exists()


def test_a_rejected_interval_read_in_chunks_is_quarantined_whole(tmp_path):
    frame = clean_samples(40)
    frame.loc[:15, "a260_280"] = 9.9
    whole_lake, whole = gate_at(tmp_path, "whole", SPEC, frame, chunk_rows=1000, max_bad_row_share=0.2)
    chunked_lake, chunked = gate_at(tmp_path, "chunked", SPEC, frame, chunk_rows=6, max_bad_row_share=0.2)
    assert whole.status == chunked.status == "failed_threshold"
    assert rows_of(chunked_lake, "quarantine", SPEC) == rows_of(whole_lake, "quarantine", SPEC)
    assert len(rows_of(chunked_lake, "quarantine", SPEC)) == len(frame)
    assert not chunked_lake.partition("validated", SPEC.name, DAY).exists()
    assert not list(chunked_lake.root.rglob(".*.tmp"))  # no temporary left behind


def test_validating_an_unchanged_partition_again_takes_the_suites_verdicts_from_its_record(lake, tmp_path, monkeypatch):
    """A labels task revisits the intervals holding rows back every day: GX runs once per raw partition."""
    import ctpipe.validation as validation

    samples, _ = generate(GeneratorConfig(start=date(2026, 1, 1), days=1, rows_per_day=300, bad_row_share=0.08))
    first = validate(lake, tmp_path, samples)
    uri = lake.partition("raw", SPEC.name, DAY)
    partitions = {zone: rows_of(lake, zone, SPEC) for zone in ("validated", "quarantine")}

    def again():
        keys = KeyIndex.from_url(f"sqlite:///{tmp_path / 'keys.sqlite'}")
        try:
            return validate_partition(SPEC, uri, DAY, lake, tmp_path / "gx", tmp_path / "again.json", 0.5, keys=keys)
        finally:
            keys.close()

    def no_gx(*args, **kwargs):
        raise AssertionError("GX ran again on a partition it had validated")

    with monkeypatch.context() as patched:
        patched.setattr(validation, "_checkpoint", no_gx)
        second = again()
    assert {zone: rows_of(lake, zone, SPEC) for zone in ("validated", "quarantine")} == partitions
    for field in ("status", "rows_passed", "rows_quarantined", "failures", "data_docs_uri"):
        assert getattr(second, field) == getattr(first, field), field

    # The partition extracted again (or the suite changed): GX runs again.
    raw_partition(lake, SPEC, DAY, samples)
    with monkeypatch.context() as patched:
        patched.setattr(validation, "_checkpoint", no_gx)
        with pytest.raises(AssertionError, match="GX ran again"):
            again()
    assert again().failures == first.failures
