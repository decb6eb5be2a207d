"""Spec-v2 idioms in the generated files: every idiom in both renderings, last alive and cutoff per §3.12.

Everything here is read back from what ``generate`` wrote (FHIR NDJSON, OMOP CSV, expected/*),
not from the generator's internals: ``expected/idioms.csv`` says which patient carries which
idiom, and each idiom is looked for in that patient's resources and rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from leopard_etl.synth import generate
from leopard_etl.synth.idioms import IDIOMS

N, SEED = 160, 11
RUN_DAY = "2026-11-30"
SNOMED, LOINC, RXNORM = (
    "http://snomed.info/sct",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
)
ICD9, ICD10, OPS = (
    "http://hl7.org/fhir/sid/icd-9-cm",
    "http://hl7.org/fhir/sid/icd-10",
    "http://fhir.de/CodeSystem/bfarm/ops",
)
#: spec §2.1 / codes.md D: RxNorm clinical and branded drugs of the study drugs the files use
PRODUCTS = {"597195", "1736854", "583214", "1734340", "1919507", "1919512", "1919515", "1919516"}
PRODUCTS |= {"1728072", "1729418", "1860480", "1657750", "1657190", "1721581"}
DRUG_NAME = re.compile(
    r"\b(cisplatin|cisplatino|platinol|carboplatin|carboplatino|paraplatin|etoposide|pemetrexed|alimta|"
    r"paclitaxel|taxol|vinorelbine|vinorelbina|navelbine|docetaxel|taxotere|durvalumab|imfinzi|"
    r"pembrolizumab|keytruda|nivolumab|opdivo|osimertinib|tagrisso)\b",
    re.IGNORECASE,
)
NSCLC_SNOMED = {"254637007", "254626006", "254634000", "254629004", "422968005", "424132000", "425048006"}
NSCLC_SNOMED |= {"423121009"}
CHEMO_PROC = {"367336001", "99.25", "9925", "8-543"}

Resource = dict[str, Any]
Row = dict[str, str]


# ---- reading the files back ---------------------------------------------------------------------


def _patient_of(res: Resource) -> str | None:
    if res.get("resourceType") == "Patient":
        return str(res["id"])
    ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
    return ref.rsplit("/", 1)[-1] if "Patient/" in ref else None


def _fhir(folder: Path) -> tuple[dict[str, list[Resource]], dict[str, Resource]]:
    by_patient: dict[str, list[Resource]] = defaultdict(list)
    medications: dict[str, Resource] = {}
    raws = [p.read_bytes() for p in sorted(folder.glob("*.ndjson"))]
    raws.append(gzip.decompress((folder / "mixed.ndjson.gz").read_bytes()))
    for raw in raws:
        for line in raw.splitlines():
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                continue  # a deliberately malformed line (quarantined)
            if res.get("resourceType") == "Medication":
                medications[res["id"]] = res
            elif (pid := _patient_of(res)) is not None:
                by_patient[pid].append(res)
    return by_patient, medications


def _csv(path: Path) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


class Omop:
    def __init__(self, folder: Path) -> None:
        self.tables = {p.stem: _csv(p) for p in folder.glob("*.csv")}
        self.concept = {r["concept_id"]: r for r in self.tables["concept"]}
        self.ancestors = {
            (r["ancestor_concept_id"], r["descendant_concept_id"]) for r in self.tables["concept_ancestor"]
        }

    def rows(self, table: str, pid: str) -> list[Row]:
        return [r for r in self.tables.get(table, []) if r.get("person_id") == pid]

    def code(self, concept_id: str | None) -> tuple[str, str]:
        c = self.concept.get(concept_id or "")
        return (c["vocabulary_id"], c["concept_code"]) if c else ("", "")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("idioms")
    generate(N, SEED, base / "fhir", "fhir-ndjson")
    generate(N, SEED, base / "omop", "omop-csv")
    return base / "fhir", base / "omop"


@pytest.fixture(scope="module")
def data(files: tuple[Path, Path]) -> dict[str, Any]:
    fhir_dir, omop_dir = files
    resources, medications = _fhir(fhir_dir)
    expected = {r["patient_id"]: r for r in _csv(fhir_dir / "expected" / "patients.csv")}
    idioms = _csv(fhir_dir / "expected" / "idioms.csv")
    return {
        "resources": resources,
        "medications": medications,
        "omop": Omop(omop_dir),
        "expected": expected,
        "idioms": idioms,
        "cutoff": (fhir_dir / "expected" / "cutoff.txt").read_text().strip(),
    }


# ---- what a resource says -----------------------------------------------------------------------


#: spec §1 Aliases, as far as these files use them
ALIASES = {
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "urn:oid:2.16.840.1.113883.6.3": ICD10,
    "urn:oid:2.16.840.1.113883.6.103": ICD9,
    "urn:oid:2.16.840.1.113883.6.104": ICD9,
}


def _canonical(system: str) -> str:
    system = system.split("|", 1)[0]
    return SNOMED if system.startswith(SNOMED + "/") else ALIASES.get(system, system)


def _codings(node: Any, raw: bool = False) -> list[dict[str, Any]]:
    """Every coding anywhere in a resource (contained Medications included), its system canonical
    unless ``raw``."""
    if isinstance(node, dict):
        found = []
        if "system" in node and "code" in node:
            found = [node if raw else {**node, "system": _canonical(node["system"])}]
        return found + [c for v in node.values() for c in _codings(v, raw)]
    if isinstance(node, list):
        return [c for v in node for c in _codings(v, raw)]
    return []


def _has(rs: list[Resource], rtype: str, pred: Callable[[Resource], bool] = lambda r: True) -> bool:
    return any(r["resourceType"] == rtype and pred(r) for r in rs)


def _code_in(r: Resource, codes: set[str], system: str | None = None) -> bool:
    return any(
        c["code"] in codes and (system is None or c["system"] == system) for c in _codings(r.get("code"))
    )


def _medication(r: Resource, meds: dict[str, Resource]) -> dict[str, Any]:
    if "medicationCodeableConcept" in r:
        return {"code": r["medicationCodeableConcept"]}
    ref = r.get("medicationReference", {}).get("reference", "")
    if ref.startswith("#"):
        return next(c for c in r["contained"] if c["id"] == ref[1:])
    return meds[ref.rsplit("/", 1)[-1]]


def _is_nsclc(r: Resource) -> bool:
    codes = [c["code"] for c in _codings(r.get("code"))]
    return any(c in NSCLC_SNOMED or c.startswith(("C34", "162")) for c in codes)


def _lesion_code(r: Resource) -> bool:
    codes = [c["code"] for c in _codings(r.get("code"))]
    return any(c.startswith(("C77", "C78", "C79", "196", "197", "198")) or c == "128462008" for c in codes)


def _dated_by_encounter(r: Resource) -> bool:
    return "encounter" in r and not ({"onsetDateTime", "recordedDate", "performedDateTime"} & set(r))


def _stage_value(r: Resource) -> dict[str, Any]:
    return r.get("valueCodeableConcept") or {} if _code_in(r, {"21908-9"}, LOINC) else {}


# ---- each idiom, in FHIR and in OMOP ------------------------------------------------------------

FhirCheck = Callable[[list[Resource], dict[str, Any], str], bool]
OmopCheck = Callable[[Omop, str, dict[str, Any]], bool]


def _last_alive(d: dict[str, Any], pid: str) -> str:
    return str(d["expected"][pid]["last_alive_date"])


FHIR_CHECKS: dict[str, FhirCheck] = {
    "followup_activity": lambda rs, d, pid: (
        _has(rs, "Observation", lambda r: _code_in(r, {"89247-1"})) and _has(rs, "MedicationStatement")
    ),
    "encounter_only_followup": lambda rs, d, pid: _has(
        rs,
        "Encounter",
        lambda r: r["class"]["code"] == "IMP" and r["period"].get("end") == _last_alive(d, pid),
    ),
    "condition_recorded_later": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: "recordedDate" in r and r["recordedDate"] > r.get("onsetDateTime", "9")
    ),
    "after_death_records": lambda rs, d, pid: any(
        r.get("period", {}).get("start", r.get("effectiveDateTime", "")) > p["deceasedDateTime"]
        for r in rs
        for p in rs
        if p["resourceType"] == "Patient" and "deceasedDateTime" in p
    ),
    "excluded_activity": lambda rs, d, pid: (
        sum(
            r.get("status") in ("planned", "cancelled", "entered-in-error", "not-done", "not-taken")
            for r in rs
            if r["resourceType"]
            in (
                "Encounter",
                "Observation",
                "Immunization",
                "DiagnosticReport",
                "MedicationStatement",
                "ImagingStudy",
            )
        )
        >= 3
    ),
    "open_end_interval": lambda rs, d, pid: _has(
        rs, "Encounter", lambda r: r["period"].get("end") == "2099-12-31"
    ),
    "future_record": lambda rs, d, pid: _has(
        rs, "Observation", lambda r: r.get("effectiveDateTime", "") > RUN_DAY
    ),
    "statement_end_ignored": lambda rs, d, pid: _has(
        rs, "MedicationStatement", lambda r: r["effectivePeriod"].get("end", "") > _last_alive(d, pid)
    ),
    "nsclc_encounter_date": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: _dated_by_encounter(r) and _is_nsclc(r)
    ),
    "condition_encounter_date": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: _dated_by_encounter(r) and _lesion_code(r)
    ),
    "procedure_encounter_date": lambda rs, d, pid: _has(rs, "Procedure", _dated_by_encounter),
    "deceased_boolean": lambda rs, d, pid: _has(
        rs, "Patient", lambda r: r.get("deceasedBoolean") is True and "deceasedDateTime" not in r
    ),
    "unscreened_late_activity": lambda rs, d, pid: (
        pid not in d["expected"] and _has(rs, "Encounter", lambda r: r["period"]["start"] > d["cutoff"])
    ),
    "rxnorm_product": lambda rs, d, pid: any(
        c["system"] == RXNORM and c["code"] in PRODUCTS
        for r in rs
        if r["resourceType"].startswith("Medication")
        for c in _codings(_medication(r, d["medications"]))
    ),
    "medication_ingredient": lambda rs, d, pid: any(
        "ingredient" in m and "code" not in m
        for r in rs
        if r["resourceType"] in ("MedicationAdministration", "MedicationRequest")
        for m in [_medication(r, d["medications"])]
    ),
    "drug_name_text": lambda rs, d, pid: any(
        not any(c["system"] in (RXNORM, "http://www.whocc.no/atc") for c in _codings(m))
        and DRUG_NAME.search(orjson.dumps(m).decode())
        for r in rs
        if r["resourceType"] in ("MedicationAdministration", "MedicationRequest")
        for m in [_medication(r, d["medications"])]
    ),
    "icd9_diagnosis": lambda rs, d, pid: _has(
        rs,
        "Condition",
        lambda r: any(c["code"].startswith("162") for c in _codings(r["code"]) if ICD9 in c["system"]),
    ),
    "icd10_who": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: _code_in(r, {"C34.1", "C34.3", "C34.9"}, ICD10)
    ),
    "icd10_gm": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: any("icd-10-gm" in c["system"] for c in _codings(r["code"]))
    ),
    "system_oid": lambda rs, d, pid: any(
        c["system"].startswith("urn:oid:2.16.840.1.113883.6.") for r in rs for c in _codings(r, raw=True)
    ),
    "system_version": lambda rs, d, pid: any("|" in c["system"] for r in rs for c in _codings(r, raw=True)),
    "snomed_edition": lambda rs, d, pid: any(
        c["system"].startswith(SNOMED + "/") for r in rs for c in _codings(r, raw=True)
    ),
    "stage_snomed_qualifier": lambda rs, d, pid: _has(
        rs, "Observation", lambda r: _code_in({"code": _stage_value(r)}, {"261638004", "261639007"}, SNOMED)
    ),
    "stage_display_text": lambda rs, d, pid: _has(
        rs, "Observation", lambda r: bool(re.search(r"Stadi(o|um) I", orjson.dumps(_stage_value(r)).decode()))
    ),
    "stage_uicc": lambda rs, d, pid: _has(
        rs,
        "Observation",
        lambda r: any(c["system"] == "https://www.uicc.org/resources/tnm" for c in _codings(_stage_value(r))),
    ),
    "stage_summary": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: "summary" in (r.get("stage") or [{}])[0]
    ),
    "synthea_stage_condition": lambda rs, d, pid: _has(
        rs, "Condition", lambda r: _code_in(r, {"424132000", "425048006", "423121009"}, SNOMED)
    ),
    "rt_snomed_ebrt": lambda rs, d, pid: _has(
        rs, "Procedure", lambda r: _code_in(r, {"33195004", "441799006"})
    ),
    "rt_ops": lambda rs, d, pid: (
        _has(rs, "Procedure", lambda r: _code_in(r, {"8-522.d1"}, OPS))
        and _has(rs, "Procedure", lambda r: _code_in(r, {"8-529"}, OPS))
    ),
    "icd9_procedure": lambda rs, d, pid: _has(
        rs, "Procedure", lambda r: _code_in(r, {"92.24", "9224"}, ICD9)
    ),
    "chemo_procedure": lambda rs, d, pid: (
        _has(rs, "Procedure", lambda r: _code_in(r, CHEMO_PROC)) and d["expected"][pid]["crt_type"] != ""
    ),
    "chemo_procedure_with_drug": lambda rs, d, pid: (
        _has(rs, "Procedure", lambda r: _code_in(r, CHEMO_PROC))
        and d["expected"][pid]["exclusion_reason"] == "no_crt"
    ),
    "salvage_chemo_procedure": lambda rs, d, pid: _has(
        rs,
        "Procedure",
        lambda r: _code_in(r, CHEMO_PROC) and r["performedDateTime"] >= d["expected"][pid]["recurrence_date"],
    ),
    "lung_body_site_laterality": lambda rs, d, pid: any(
        c["code"] in ("3341006", "44029006") for r in rs for c in _codings(r.get("bodySite"))
    ),
}


def _concepts(o: Omop, rows: list[Row], column: str) -> set[tuple[str, str]]:
    return {o.code(r.get(column)) for r in rows}


def _omop_nsclc(o: Omop, r: Row) -> bool:
    _, code = o.code(r["condition_concept_id"])
    _, source = o.code(r["condition_source_concept_id"])
    codes = {code, source, r["condition_source_value"]}
    return any(c in NSCLC_SNOMED or c.startswith(("C34", "162")) for c in codes)


def _visit_starts(o: Omop, pid: str) -> dict[str, str]:
    return {v["visit_occurrence_id"]: v["visit_start_date"] for v in o.rows("visit_occurrence", pid)}


OMOP_CHECKS: dict[str, OmopCheck] = {
    "followup_activity": lambda o, pid, d: (
        ("LOINC", "89247-1")
        in _concepts(o, o.rows("measurement", pid) + o.rows("observation", pid), "measurement_concept_id")
        | _concepts(o, o.rows("observation", pid), "observation_concept_id")
        and ("RxNorm", "310798") in _concepts(o, o.rows("drug_exposure", pid), "drug_concept_id")
    ),
    "encounter_only_followup": lambda o, pid, d: (
        any(v["visit_end_date"] == _last_alive(d, pid) for v in o.rows("visit_occurrence", pid))
        and bool(o.rows("visit_detail", pid))
    ),
    "condition_recorded_later": lambda o, pid, d: any(
        _visit_starts(o, pid).get(r["visit_occurrence_id"], "") > r["condition_start_date"]
        for r in o.rows("condition_occurrence", pid)
    ),
    "after_death_records": lambda o, pid, d: any(
        v["visit_start_date"] > death["death_date"]
        for v in o.rows("visit_occurrence", pid)
        for death in o.rows("death", pid)
    ),
    "open_end_interval": lambda o, pid, d: any(
        v["visit_end_date"] == "2099-12-31" for v in o.rows("visit_occurrence", pid)
    ),
    "statement_end_ignored": lambda o, pid, d: any(
        r["drug_exposure_end_date"] > _last_alive(d, pid) for r in o.rows("drug_exposure", pid)
    ),
    "nsclc_encounter_date": lambda o, pid, d: any(
        r["visit_occurrence_id"] and _omop_nsclc(o, r) for r in o.rows("condition_occurrence", pid)
    ),
    "condition_encounter_date": lambda o, pid, d: any(
        r["visit_occurrence_id"] and r["condition_source_value"].startswith(pid)
        for r in o.rows("condition_occurrence", pid)
    ),
    "procedure_encounter_date": lambda o, pid, d: any(
        r["visit_occurrence_id"] for r in o.rows("procedure_occurrence", pid)
    ),
    "deceased_boolean": lambda o, pid, d: any(r["death_date"] == "" for r in o.rows("death", pid)),
    "unscreened_late_activity": lambda o, pid, d: any(
        v["visit_start_date"] > d["cutoff"] for v in o.rows("visit_occurrence", pid)
    ),
    "rxnorm_product": lambda o, pid, d: any(
        o.code(r["drug_concept_id"])[1] in PRODUCTS
        and any(a != r["drug_concept_id"] for a, dsc in o.ancestors if dsc == r["drug_concept_id"])
        for r in o.rows("drug_exposure", pid)
    ),
    "medication_ingredient": lambda o, pid, d: any(
        r["drug_concept_id"] == "0"
        and o.concept[r["drug_source_concept_id"]]["concept_class_id"] == "Ingredient"
        for r in o.rows("drug_exposure", pid)
        if r["drug_source_concept_id"]
    ),
    "drug_name_text": lambda o, pid, d: any(
        DRUG_NAME.search(r["drug_source_value"]) for r in o.rows("drug_exposure", pid)
    ),
    "icd9_diagnosis": lambda o, pid, d: any(
        r["condition_source_value"].startswith("162")
        or o.code(r["condition_source_concept_id"])[0] == "ICD9CM"
        for r in o.rows("condition_occurrence", pid)
    ),
    "icd10_who": lambda o, pid, d: (
        "ICD10" in {o.code(r["condition_source_concept_id"])[0] for r in o.rows("condition_occurrence", pid)}
    ),
    "icd10_gm": lambda o, pid, d: (
        "ICD10GM"
        in {o.code(r["condition_source_concept_id"])[0] for r in o.rows("condition_occurrence", pid)}
    ),
    "stage_snomed_qualifier": lambda o, pid, d: bool(
        {("SNOMED", "261638004"), ("SNOMED", "261639007")}
        & _concepts(o, o.rows("measurement", pid), "value_as_concept_id")
    ),
    "stage_display_text": lambda o, pid, d: any(
        re.match(r"Stadi(o|um) I", r["value_source_value"]) and not r["value_as_concept_id"]
        for r in o.rows("measurement", pid)
    ),
    "stage_uicc": lambda o, pid, d: any(
        re.match(r"^[cp][1-4][ABC]?$", r["value_source_value"]) for r in o.rows("measurement", pid)
    ),
    "stage_summary": lambda o, pid, d: any(
        o.code(m["measurement_concept_id"])[0] == "Cancer Modifier"
        and m["measurement_date"] == c["condition_start_date"]
        and _omop_nsclc(o, c)
        for m in o.rows("measurement", pid)
        for c in o.rows("condition_occurrence", pid)
    ),
    "synthea_stage_condition": lambda o, pid, d: bool(
        {("SNOMED", "424132000"), ("SNOMED", "425048006"), ("SNOMED", "423121009")}
        & _concepts(o, o.rows("condition_occurrence", pid), "condition_concept_id")
    ),
    "rt_snomed_ebrt": lambda o, pid, d: bool(
        {("SNOMED", "33195004"), ("SNOMED", "441799006")}
        & _concepts(o, o.rows("procedure_occurrence", pid), "procedure_concept_id")
    ),
    "rt_ops": lambda o, pid, d: (
        {"8-522.d1", "8-529"} <= {r["procedure_source_value"] for r in o.rows("procedure_occurrence", pid)}
    ),
    "icd9_procedure": lambda o, pid, d: (
        ("ICD9Proc", "92.24")
        in _concepts(o, o.rows("procedure_occurrence", pid), "procedure_source_concept_id")
    ),
    "chemo_procedure": lambda o, pid, d: _omop_chemo_proc(o, pid, ""),
    "chemo_procedure_with_drug": lambda o, pid, d: _omop_chemo_proc(o, pid, ""),
    "salvage_chemo_procedure": lambda o, pid, d: _omop_chemo_proc(
        o, pid, d["expected"][pid]["recurrence_date"]
    ),
    "lung_body_site_laterality": lambda o, pid, d: bool(
        {"35226292", "35225630"} & {r["measurement_concept_id"] for r in o.rows("measurement", pid)}
    ),
}


def _omop_chemo_proc(o: Omop, pid: str, since: str) -> bool:
    for r in o.rows("procedure_occurrence", pid):
        codes = {o.code(r["procedure_concept_id"])[1], o.code(r["procedure_source_concept_id"])[1]}
        if codes & CHEMO_PROC and r["procedure_date"] >= since:
            return True
    return False


def test_every_idiom_is_exercised_in_both_renderings(data: dict[str, Any]) -> None:
    used = {r["idiom"] for r in data["idioms"]}
    assert used == set(IDIOMS), f"not exercised in {N} patients: {set(IDIOMS) - used}"
    assert set(FHIR_CHECKS) == set(IDIOMS)
    fhir_only = {name for name, idiom in IDIOMS.items() if idiom.omop is None}
    assert fhir_only == {
        "excluded_activity",
        "future_record",
        "system_oid",
        "system_version",
        "snomed_edition",
    }
    assert set(OMOP_CHECKS) == set(IDIOMS) - fhir_only
    missing = []
    for row in data["idioms"]:
        pid, idiom = row["patient_id"], row["idiom"]
        if not FHIR_CHECKS[idiom](data["resources"][pid], data, pid):
            missing.append(f"FHIR {pid} {idiom}")
        if idiom in OMOP_CHECKS and not OMOP_CHECKS[idiom](data["omop"], pid, data):
            missing.append(f"OMOP {pid} {idiom}")
    assert not missing, missing


def test_fhir_only_idioms_leave_no_omop_trace(data: dict[str, Any]) -> None:
    """OMOP has no status: excluded and quarantined-by-date records are simply absent there."""
    future = [r["patient_id"] for r in data["idioms"] if r["idiom"] == "future_record"]
    omop: Omop = data["omop"]
    for pid in future:
        dates = [r["measurement_date"] for r in omop.rows("measurement", pid)]
        assert dates and max(dates) <= RUN_DAY


def test_share_of_idiom_patients(tmp_path: Path) -> None:
    generate(1000, 3, tmp_path, "fhir-ndjson")
    patients = {r["patient_id"] for r in _csv(tmp_path / "expected" / "idioms.csv")}
    assert 150 <= len(patients) <= 250


# ---- spec §3.12 from the FHIR files -------------------------------------------------------------

#: spec §1 table: statuses that exclude an activity record
EXCLUDED = {
    "Encounter": {"planned", "cancelled", "entered-in-error"},
    "Observation": {"cancelled", "entered-in-error"},
    "Condition": {"refuted", "entered-in-error"},
    "Procedure": {"not-done", "entered-in-error"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
    "MedicationRequest": {"cancelled", "entered-in-error", "draft"},
    "MedicationStatement": {"not-taken", "entered-in-error", "intended"},
    "DiagnosticReport": {"cancelled", "entered-in-error"},
    "Immunization": {"not-done", "entered-in-error"},
    "ImagingStudy": {"cancelled", "entered-in-error"},
}


def _day(value: str) -> str:
    value = value[:10]
    return {4: f"{value}-07-01", 7: f"{value}-15"}.get(len(value), value)


def _period(p: dict[str, str] | None) -> list[str]:
    return [_day(p[k]) for k in ("start", "end") if p and k in p]


def _record_dates(r: Resource, encounters: dict[str, Resource]) -> list[str]:
    """The dates one record contributes (spec §1 table); the first is the record's own date."""
    t = r["resourceType"]
    encounter = encounters.get(r.get("encounter", {}).get("reference", "").rsplit("/", 1)[-1], {})
    if t == "Encounter":
        return _period(r["period"])
    if t == "Observation":
        if "effectiveDateTime" in r or "effectivePeriod" in r:
            return (
                [_day(r["effectiveDateTime"])] if "effectiveDateTime" in r else _period(r["effectivePeriod"])
            )
        return [_day(r["issued"])] if "issued" in r else []
    if t == "Condition":
        own = [_day(r[k]) for k in ("onsetDateTime", "recordedDate") if k in r]
        return own or _period(encounter.get("period"))[:1]
    if t == "Procedure":
        if "performedDateTime" in r:
            return [_day(r["performedDateTime"])]
        return _period(r.get("performedPeriod")) or _period(encounter.get("period"))[:1]
    if t == "MedicationAdministration":
        return [_day(r["effectiveDateTime"])] if "effectiveDateTime" in r else _period(r["effectivePeriod"])
    if t == "MedicationRequest":
        return [_day(r["authoredOn"])]
    if t == "MedicationStatement":
        return (
            [_day(r["effectiveDateTime"])] if "effectiveDateTime" in r else _period(r["effectivePeriod"])[:1]
        )
    if t == "DiagnosticReport":
        if "effectiveDateTime" in r or "effectivePeriod" in r:
            return (
                [_day(r["effectiveDateTime"])]
                if "effectiveDateTime" in r
                else _period(r["effectivePeriod"])[:1]
            )
        return [_day(r["issued"])]
    if t == "Immunization":
        return [_day(r["occurrenceDateTime"])]
    if t == "ImagingStudy":
        return [_day(r["started"])]
    return []


def _valid(dates: list[str]) -> bool:
    try:
        return all(dt.date.fromisoformat(d) for d in dates)
    except ValueError:  # an unparseable date: the record is quarantined
        return False


def _status(r: Resource) -> str:
    if r["resourceType"] == "Condition":
        return str(_codings(r.get("verificationStatus"))[0]["code"])
    return str(r.get("status", ""))


def _activity(rs: list[Resource], cutoff: str, *, after_death: bool = False) -> list[str]:
    patient = next(r for r in rs if r["resourceType"] == "Patient")
    death = None if after_death else patient.get("deceasedDateTime")
    encounters = {r["id"]: r for r in rs if r["resourceType"] == "Encounter"}
    out: list[str] = []
    for r in rs:
        dates = _record_dates(r, encounters)
        if not dates or not _valid(dates) or _status(r) in EXCLUDED.get(r["resourceType"], ()):
            continue
        if dates[0] > RUN_DAY or (death and dates[0] > death):  # quarantined / after the death
            continue
        out += [d for d in dates if d <= cutoff]
    return out


def test_last_alive_and_cutoff_follow_spec_3_12_on_the_fhir_files(data: dict[str, Any]) -> None:
    cutoff = data["cutoff"]
    latest = latest_before_deaths = ""
    for pid, row in data["expected"].items():
        rs = data["resources"][pid]
        patient = next(r for r in rs if r["resourceType"] == "Patient")
        dated_death = patient.get("deceasedDateTime")
        latest = max([latest, *_activity(rs, RUN_DAY, after_death=True), dated_death or ""])
        latest_before_deaths = max([latest_before_deaths, *_activity(rs, RUN_DAY), dated_death or ""])
        alive = max(_activity(rs, cutoff))
        if dated_death and dated_death <= cutoff:
            assert (row["death"], row["last_alive_date"]) == ("true", dated_death), pid
        elif patient.get("deceasedBoolean"):
            assert (row["death"], row["last_alive_date"]) == ("true", alive), pid
        else:
            assert (row["death"], row["last_alive_date"]) == ("false", alive), pid
    # records after a death are activity records (they count here); the data never depends on it
    assert cutoff == latest == latest_before_deaths


def test_the_idioms_are_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "synthetic.md").read_text(encoding="utf-8")
    assert {name for name in IDIOMS if f"| `{name}` |" not in doc} == set()


def test_hand_checked_rows(data: dict[str, Any]) -> None:
    """Two patients read by hand: last alive from an Encounter's end; a death without date."""
    by_idiom: dict[str, list[str]] = defaultdict(list)
    for r in data["idioms"]:
        by_idiom[r["idiom"]].append(r["patient_id"])
    # encounter-only follow-up: the last contact is the end of an inpatient stay, nothing coded is later
    pid = by_idiom["encounter_only_followup"][0]
    rs, row = data["resources"][pid], data["expected"][pid]
    stays = [r for r in rs if r["resourceType"] == "Encounter" and r["class"]["code"] == "IMP"]
    last = max(stays, key=lambda r: r["period"]["end"])
    assert (
        row["death"] == "false" and row["last_alive_date"] == last["period"]["end"] > last["period"]["start"]
    )
    encounters = {r["id"]: r for r in rs if r["resourceType"] == "Encounter"}
    others = [
        d
        for r in rs
        if r["resourceType"] != "Encounter" and _status(r) not in EXCLUDED.get(r["resourceType"], ())
        for d in _record_dates(r, encounters)[:1]
    ]
    assert max(others) < row["last_alive_date"]
    # deceasedBoolean: death true, dated by the latest activity record; OMOP has the row without date
    pid = by_idiom["deceased_boolean"][0]
    rs, row = data["resources"][pid], data["expected"][pid]
    assert row["death"] == "true" and row["last_alive_date"] == max(_activity(rs, data["cutoff"]))
    assert [r["death_date"] for r in data["omop"].rows("death", pid)] == [""]
    if row["in_cohort"] == "true":
        days = (dt.date.fromisoformat(row["last_alive_date"]) - dt.date.fromisoformat(row["crt_start"])).days
        assert row["os_months"] == f"{days / 30.4375:.2f}"


def test_nothing_is_dated_after_the_day_of_the_run_but_the_deliberate_records(
    files: tuple[Path, Path],
) -> None:
    fhir_dir, omop_dir = files
    future = set()
    for path in [*fhir_dir.glob("*.ndjson"), omop_dir]:
        text = path.read_text() if path.is_file() else "".join(p.read_text() for p in path.glob("*.csv"))
        future |= {d for d in re.findall(r"\b(\d{4}-\d{2}-\d{2})", text) if d > RUN_DAY}
    text = gzip.decompress((fhir_dir / "mixed.ndjson.gz").read_bytes()).decode()
    future |= {d for d in re.findall(r"\b(\d{4}-\d{2}-\d{2})", text) if d > RUN_DAY}
    # the open stays' placeholder end, and the future_record Observations (decades later)
    assert "2099-12-31" in future
    assert all(d == "2099-12-31" or (d.startswith("20") and d > "2080") for d in future), sorted(future)
