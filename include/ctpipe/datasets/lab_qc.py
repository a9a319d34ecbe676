"""Laboratory sample quality control: the example dataset.

Labs submit samples (DNA, RNA, protein, plasma); each is measured on arrival
and later passes or fails quality control. The QC outcome arrives hours or days
after the sample, in its own table, so a model may only learn from outcomes
that were known at its cutoff.
"""

from __future__ import annotations

from datetime import timedelta

from ctpipe.datasets.spec import Aggregate, Column, DatasetSpec, Identifier, Reference, TableSpec

SAMPLE_TYPES = ("DNA", "RNA", "protein", "plasma")
ID = Identifier(max_length=64)
COURIERS = ("ColdChain Express", "BioFreight", "Standard Post", "Hand Delivery")
QC_OUTCOMES = ("passed", "failed")

LAB_SAMPLES = TableSpec(
    name="lab_samples",
    timestamp="submitted_at",
    key="sample_id",
    columns=(
        Column("sample_id", "string", "Sample identifier, unique per sample", identifier=ID),
        Column("lab_id", "string", "Submitting laboratory", identifier=ID),
        Column("submitted_at", "timestamp", "When the sample was submitted (UTC)"),
        Column("sample_type", "string", "Kind of material", allowed_values=SAMPLE_TYPES),
        Column("concentration_ng_ul", "float", "Concentration, ng/uL", min_value=0.0, max_value=200_000.0),
        Column("volume_ul", "float", "Volume, uL", min_value=0.0, max_value=5_000.0),
        Column(
            "a260_280", "float", "Absorbance ratio 260/280 nm (protein contamination)", min_value=0.3, max_value=3.0
        ),
        Column(
            "a260_230",
            "float",
            "Absorbance ratio 260/230 nm (salt, solvent contamination)",
            min_value=0.0,
            max_value=4.0,
        ),
        Column(
            "rin",
            "float",
            "RNA integrity number, RNA only",
            nullable=True,
            min_value=1.0,
            max_value=10.0,
            required_when='sample_type == "RNA"',
        ),
        Column(
            "storage_temp_c", "float", "Storage temperature before shipping, deg C", min_value=-196.0, max_value=30.0
        ),
        Column("transit_hours", "float", "Hours in transit", min_value=0.0, max_value=480.0),
        Column("courier", "string", "Courier that shipped the sample", allowed_values=COURIERS),
    ),
)

QC_RESULTS = TableSpec(
    name="qc_results",
    timestamp="reported_at",
    key="sample_id",
    columns=(
        Column("sample_id", "string", "The sample the outcome belongs to", identifier=ID),
        Column("lab_id", "string", "Submitting laboratory", identifier=ID),
        Column("reported_at", "timestamp", "When the outcome became known (UTC)"),
        Column("qc_outcome", "string", "QC outcome", allowed_values=QC_OUTCOMES),
    ),
    # An outcome belongs to a submitted sample of the same lab; it may arrive a few days before its sample does.
    parent=Reference("lab_samples", key="sample_id", same=("lab_id",), grace=timedelta(days=3)),
)

DAY = timedelta(days=1)

LAB_QC = DatasetSpec(
    name="lab_qc",
    description=__doc__.strip().splitlines()[0],
    entity="lab_id",
    events=LAB_SAMPLES,
    labels=QC_RESULTS,
    label="qc_outcome",
    positive_label="failed",
    features=(
        "sample_type",
        "concentration_ng_ul",
        "volume_ul",
        "a260_280",
        "a260_230",
        "rin",
        "storage_temp_c",
        "transit_hours",
        "courier",
    ),
    aggregates=(
        Aggregate("submissions_7d", "events", "count", 7 * DAY, description="Samples submitted in the last 7 days"),
        Aggregate("submissions_28d", "events", "count", 28 * DAY, description="Samples submitted in the last 28 days"),
        Aggregate("qc_results_28d", "labels", "count", 28 * DAY, description="QC outcomes known from the last 28 days"),
        Aggregate(
            "failure_rate_28d",
            "labels",
            "rate",
            28 * DAY,
            column="qc_outcome",
            value="failed",
            description="Share of failed QC among outcomes reported in the last 28 days",
        ),
        Aggregate(
            "mean_transit_hours_7d",
            "events",
            "mean",
            7 * DAY,
            column="transit_hours",
            description="Mean transit time of the last 7 days' samples",
        ),
        Aggregate(
            "mean_storage_temp_c_7d",
            "events",
            "mean",
            7 * DAY,
            column="storage_temp_c",
            description="Mean storage temperature of the last 7 days' samples",
        ),
    ),
    feature_view="lab_features",
    feature_service="lab_quality_v1",
    model_name="lab_qc_failure",
    generator="ctpipe.datasets.lab_qc_generator:generate",
)
