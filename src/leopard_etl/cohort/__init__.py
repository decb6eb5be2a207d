"""Spec §3 classification: cohort, courses, recurrence, lesions, pattern, field, salvage, outcome.

Pure rules over plain data; :func:`derive` is the vectorised driver producing every
derived table, and :func:`explain` tells how one patient was classified.
"""

from __future__ import annotations

from .attrition import STEPS, PatientResult, attrition_counts, classify_patient
from .courses import choose_rt_course, crt_type, durvalumab_course, is_stereotactic, merge_rt_courses
from .derive import Derivation, derive
from .diagnosis import diagnose, stage_of
from .explain import explain
from .field import field_relation, irradiated_field, patient_field
from .outcome import outcome
from .patients_csv import CSV_COLUMNS
from .recurrence import classify_pattern, merge_lesions, recurrence_record
from .salvage import salvage, salvage_category
from .timeline import Rec, Timeline, events_frame, iter_timelines, prepare

__all__ = [
    "CSV_COLUMNS",
    "STEPS",
    "Derivation",
    "PatientResult",
    "Rec",
    "Timeline",
    "attrition_counts",
    "choose_rt_course",
    "classify_patient",
    "classify_pattern",
    "crt_type",
    "derive",
    "diagnose",
    "durvalumab_course",
    "events_frame",
    "explain",
    "field_relation",
    "irradiated_field",
    "is_stereotactic",
    "iter_timelines",
    "merge_lesions",
    "merge_rt_courses",
    "outcome",
    "patient_field",
    "prepare",
    "recurrence_record",
    "salvage",
    "salvage_category",
    "stage_of",
]
